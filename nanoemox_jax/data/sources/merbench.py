"""MER-UniBench's own label files: MERBench's `label.npz` / `label-6way.npz` / `label_4way.npz`.

The format of zeroQiaoba/MERTools `MERBench/dataset/<x>-process/` as AffectGPT reads it for MER-UniBench
(`my_affectgpt/datasets/datasets/{mer2023,mer2024,meld,iemocap,cmumosi,cmumosei,sims,simsv2}.py`,
`get_test_name2gt`): pickled dicts `{"<split>_corpus": {name: {"emo": ..., "val": ...}}}` (read by
`data.npz`, no arbitrary pickle). Item names are the file's (MELD's carry the split: `test_dia0_utt0`), which is
what AffectGPT's published outputs are keyed by.

- MER2023 / MER2024 (`label-6way.npz`): test = `test1_corpus`, `emo` the label itself;
- MELD (`label.npz`): `emo` an index into anger, joy, sadness, neutral, disgust, fear, surprise;
- IEMOCAP (`label_4way.npz`): one `whole_corpus`; Session 5 (name[4] == '5') is the test split as in the
  reference's `split_indexes_using_session`; `emo` an index into happy, sad, neutral, anger;
- MOSI / MOSEI / SIMS / SIMSv2 (`label.npz`): `val` the valence, sentiment by its sign.
dev is `val_corpus`. Subtitles come from the folder's `transcription-engchi-polish.csv` (`name, chinese, english`;
the English column, MER2024 the Chinese one of `transcription_merge.csv`, as AffectGPT's readers) when present;
media from the folders of AffectGPT's `config.py` (`PATH_TO_RAW_VIDEO`, `PATH_TO_RAW_AUDIO`). A valence must be
a finite number, an index in range; a MER label outside the six classes leaves its item out (prepare counts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoemox_jax.data import npz, templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import (VIDEO_EXTS, Media, SourceError, known_label, media_candidates,
                                              pick_file, subtitles_from, to_float, valence_sentiment)

MELD_EMOTIONS = ("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise")
IEMOCAP_EMOTIONS = ("happy", "sad", "neutral", "anger")
TRANSCRIPTION = ("transcription-engchi-polish.csv", "english")


@dataclass(frozen=True)
class Settings:
  file: str  # label file in the dataset folder
  corpora: dict[str, str]  # split -> member ("whole_corpus": split by session)
  video: str  # clip folder
  audio: str  # audio folder
  emotions: tuple[str, ...] | None = None  # index -> label; None: `emo` is the label (MER) or unused (MSA)
  subtitles: tuple[str, str] = TRANSCRIPTION  # (file, column)


_SPLITS = {"train": "train_corpus", "dev": "val_corpus", "test": "test_corpus"}
_MER = {"train": "train_corpus", "test": "test1_corpus"}
SETTINGS = {
    "mer2023": Settings("label-6way.npz", _MER, "video", "audio"),
    "mer2024": Settings("label-6way.npz", _MER, "video", "audio", subtitles=("transcription_merge.csv", "chinese")),
    "meld": Settings("label.npz", _SPLITS, "subvideo", "subaudio", MELD_EMOTIONS),
    "iemocap": Settings("label_4way.npz", {"train": "whole_corpus", "test": "whole_corpus"}, "subvideo-tgt",
                        "subaudio", IEMOCAP_EMOTIONS),
    "mosi": Settings("label.npz", _SPLITS, "subvideo", "subaudio"),
    "mosei": Settings("label.npz", _SPLITS, "subvideo_new", "subaudio"),
    "sims": Settings("label.npz", _SPLITS, "video", "audio"),
    "simsv2": Settings("label.npz", _SPLITS, "video_new", "audio"),
}
SENTIMENT = ("mosi", "mosei", "sims", "simsv2")


def is_label_file(dataset: str, src: Path) -> bool:
  """Whether `src` is (or is a folder holding) the dataset's MERBench label file."""
  if dataset not in SETTINGS:
    return False
  return src.suffix == ".npz" if src.is_file() else (src / SETTINGS[dataset].file).is_file()


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  s = SETTINGS[dataset]
  path = pick_file(src, split, {k: s.file for k in s.corpora})
  try:
    members = npz.load(path)
  except npz.NpzError as e:
    raise SourceError(str(e)) from None
  corpus = members.get(s.corpora[split])
  if not isinstance(corpus, dict):
    raise SourceError(f"{path}: no member {s.corpora[split]!r} holding a dict (members: {sorted(members)})")
  subtitle_path = path.parent / s.subtitles[0]
  subtitles = subtitles_from(subtitle_path, s.subtitles[1]) if subtitle_path.is_file() else {}
  records = []
  for name, item in corpus.items():
    if s.corpora[split] == "whole_corpus" and (split == "test") != (str(name)[4:5] == "5"):
      continue
    where = f"{path} {s.corpora[split]} item {name!r}"
    if not str(name).strip():
      raise SourceError(f"{where}: an empty item name")
    common: dict[str, Any] = dict(
        id=str(name), dataset=dataset, split=split, subtitle=subtitles.get(name, ""),
        video=media.find(media_candidates(str(name), (s.video, ""), VIDEO_EXTS)),
        audio=media.find([f"{s.audio}/{name}.wav"], required=False))
    if dataset in SENTIMENT:
      valence = to_float(_field(item, "val", (int, float), where), f"{where}: field 'val'")
      sentiment = valence_sentiment(valence)
      records.append(Record(task="msa", target=templates.sentiment_answer(sentiment), labels=(sentiment,),
                            meta={"valence": float(valence)}, **common))
      continue
    label = _label(_field(item, "emo", (int, str), where), s.emotions, where)
    if not known_label(label, s.emotions or templates.CANDIDATES["mer"], where, media.skipped):
      continue
    records.append(Record(task="mer", target=templates.mer_answer(label, split == "train"), labels=(label,),
                          candidates=s.emotions or templates.CANDIDATES["mer"], **common))
  return records


def _field(item: Any, key: str, kinds: tuple[type, ...], where: str) -> Any:
  if not isinstance(item, dict) or key not in item:
    raise SourceError(f"{where}: missing field {key!r}")
  value = item[key]
  if isinstance(value, bool) or not isinstance(value, kinds):
    raise SourceError(f"{where}: field {key!r}: unexpected value {value!r}")
  return value


def _label(emo: int | str, emotions: tuple[str, ...] | None, where: str) -> str:
  if emotions is None:
    if not isinstance(emo, str) or not emo.strip():
      raise SourceError(f"{where}: field 'emo': expected a label, got {emo!r}")
    return emo
  if not isinstance(emo, int) or not 0 <= emo < len(emotions):
    raise SourceError(f"{where}: field 'emo': expected an index below {len(emotions)}, got {emo!r}")
  return emotions[emo]
