"""AvaMERG conversations (`train.json`, test `v_test_v5_0.json`), as read by Nano-EmoX
`datasets/datasets/avamerg_dataset.py`.

A list of `{"conversation_id", "speaker_profile": {"ID", ...}, "listener_profile", "topic",
"turns": [{"turn_id", "context", "dialogue_history": [{"index", "role", "utterance"}], "response",
"chain_of_empathy": {"speaker_emotion", "event_scenario", "emotion_cause", "goal_to_response"}}]}`.
A turn's last history entry is the current user input, the earlier ones the history; the target is
the chain of empathy plus the reply. The speaker clip of turn t is `dia<conversation>utt<2t>_<speaker ID>`.

Training gives every turn as an ERG record plus the auxiliary speaker-emotion record
(`<id>#erg_emotion`); the test split gives the last turn of each conversation (their inference code).
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record, Turn
from nanoemox_jax.data.sources.common import Media, SourceError, as_list, load_json, need, pick_file

CHAIN = ("speaker_emotion", "event_scenario", "emotion_cause", "goal_to_response")


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  path = pick_file(src, split, {"train": "train.json", "test": "v_test_v5_0.json"})
  records = []
  for i, conv in enumerate(as_list(load_json(path), str(path))):
    where = f"{path} conversation {i}"
    cid = need(conv, "conversation_id", where)
    speaker = need(need(conv, "speaker_profile", where), "ID", f"{where} speaker_profile")
    turns = as_list(need(conv, "turns", where), f"{where} turns")
    if not turns:
      raise SourceError(f"{where}: field 'turns' is empty")
    for j, turn in enumerate(turns if split == "train" else turns[-1:]):
      records += _turn_records(dataset, split, media, f"{where} turn {j}", conv, cid, speaker, turn)
  return records


def _turn_records(dataset: str, split: str, media: Media, where: str, conv: dict, cid: str, speaker: str,
                  turn: dict) -> list[Record]:
  turn_id = need(turn, "turn_id", where)
  try:
    name = f"dia{cid}utt{2 * int(turn_id)}_{speaker}"
  except (TypeError, ValueError):
    raise SourceError(f"{where}: field 'turn_id' is not an integer: {turn_id!r}") from None
  dialogue = as_list(need(turn, "dialogue_history", where), f"{where} dialogue_history")
  history = tuple(Turn(need(u, "role", f"{where} dialogue_history"), need(u, "utterance", f"{where} dialogue_history"))
                  for u in dialogue)
  chain_obj = need(turn, "chain_of_empathy", where)
  chain = {k: need(chain_obj, k, f"{where} chain_of_empathy") for k in CHAIN}
  response = need(turn, "response", where)
  context = need(turn, "context", where)
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
