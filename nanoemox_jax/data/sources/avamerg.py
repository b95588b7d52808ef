"""AvaMERG conversations (`train.json`, test `v_test_v5_0.json`), as read by Nano-EmoX
`datasets/datasets/avamerg_dataset.py`.

A list of `{"conversation_id", "speaker_profile": {"ID", ...}, "listener_profile", "topic",
"turns": [{"turn_id", "context", "dialogue_history": [{"index", "role", "utterance"}], "response",
"chain_of_empathy": {"speaker_emotion", "event_scenario", "emotion_cause", "goal_to_response"}}]}`.
A turn's last history entry is the current user input, the earlier ones the history; the target is
the chain of empathy plus the reply. The speaker clip of turn t is `dia<conversation>utt<2t>_<speaker ID>`.

Training gives every turn as an ERG record plus the auxiliary speaker-emotion record
(`<id>#erg_emotion`); the test split gives the last turn of each conversation (their inference code). Every field read must have its JSON type (the chain, response and emotion non-empty); a clip
name made twice is an error.
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record, Turn
from nanoemox_jax.data.sources.common import Ids, Media, SourceError, as_list, load_json, need, pick_file, text

CHAIN = ("speaker_emotion", "event_scenario", "emotion_cause", "goal_to_response")


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  path = pick_file(src, split, {"train": "train.json", "test": "v_test_v5_0.json"})
  records, ids = [], Ids()
  for i, conv in enumerate(as_list(load_json(path), str(path))):
    where = f"{path} conversation {i}"
    cid = _name_part(need(conv, "conversation_id", where), where, "conversation_id")
    speaker = _name_part(need(need(conv, "speaker_profile", where), "ID", f"{where} speaker_profile"),
                         f"{where} speaker_profile", "ID")
    turns = as_list(need(conv, "turns", where), f"{where} turns")
    if not turns:
      raise SourceError(f"{where}: field 'turns' is empty")
    for j, turn in enumerate(turns if split == "train" else turns[-1:]):
      part = _turn_records(dataset, split, media, f"{where} turn {j}", conv, cid, speaker, turn)
      ids.add(part[0].id, f"{where} turn {j}", "conversation_id")
      records += part
  return records


def _name_part(value: object, where: str, field: str) -> str:
  """A conversation or speaker id (a string or an integer) as it goes into clip names."""
  if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
    raise SourceError(f"{where}: field {field!r}: expected a non-empty string or an integer, got {value!r}")
  return str(value)


def _turn_records(dataset: str, split: str, media: Media, where: str, conv: dict, cid: str, speaker: str,
                  turn: dict) -> list[Record]:
  turn_id = need(turn, "turn_id", where)
  if isinstance(turn_id, bool) or not isinstance(turn_id, (int, str)) or not str(turn_id).strip().isdigit():
    raise SourceError(f"{where}: field 'turn_id' is not an integer: {turn_id!r}")
  name = f"dia{cid}utt{2 * int(turn_id)}_{speaker}"
  dialogue = as_list(need(turn, "dialogue_history", where), f"{where} dialogue_history")
  history = tuple(Turn(text(u, "role", f"{where} dialogue_history[{k}]"),
                       text(u, "utterance", f"{where} dialogue_history[{k}]", empty=True))
                  for k, u in enumerate(dialogue))
  chain_obj = need(turn, "chain_of_empathy", where)
  chain = {k: text(chain_obj, k, f"{where} chain_of_empathy") for k in CHAIN}
  response = text(turn, "response", where)
  context = text(turn, "context", where, empty=True)
  common = dict(dataset=dataset, split=split, labels=(chain["speaker_emotion"],),
                subtitle=history[-1].text if history else "", history=history[:-1],
                video=media.find([f"video/{name}.mp4", f"test_video/{name}.mp4", f"{name}.mp4"]),
                audio=media.find([f"audio/{name}.wav", f"test_audio/{name}.wav"], required=False))
  meta = {"context": context, "conversation_id": cid, "turn_id": turn_id, "topic": conv.get("topic", ""),
          "chain_of_empathy": chain, "response": response}
  records = [Record(id=name, task="erg", target=templates.erg_answer(chain, response), meta=meta, **common)]
  if split == "train":
    records.append(Record(id=f"{name}#erg_emotion", task="erg_emotion",
                          target=templates.erg_emotion_answer(chain["speaker_emotion"]), meta=meta, **common))
  return records
