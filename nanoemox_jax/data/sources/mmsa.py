"""CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2 sentiment labels in their CSV form.

MOSI / MOSEI / SIMS: the `label.csv` that thuiar/MMSA distributes (read by its `data/DataPre.py`:
`video_id, clip_id, text, label, annotation, mode`, clips at `Raw/<video_id>/<clip_id>.mp4`).
SIMS v2: the release's `meta.csv` (`video_id, clip_id, text, label, mode`; MERTools
`MER2024/toolkit/preprocess/simsv2.py`). MER-UniBench (and Nano-EmoX's readers) take MOSI/MOSEI
labels from pickles (`CMUMOSI_features_raw_2way.pkl` -> `label.npz`); those are never loaded, the
MMSA CSV gives the same per-clip valence. Item names follow MER-UniBench: `<video_id>_<clip_id>`
(SIMS pads the clip to 4 digits). Valence maps to sentiment by sign; `mode` train/valid/test is the
split (dev = valid). Every row is checked, whatever its mode: a finite valence, a known mode, an item named once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import (Ids, Media, SourceError, csv_rows, pick_file, to_float,
                                              valence_sentiment)


@dataclass(frozen=True)
class Settings:
  file: str  # label CSV inside the dataset folder
  unibench_video: str  # MER-UniBench's clip folder
  clip_digits: int = 0  # zero-pad the clip id in the item name


SETTINGS = {
    "mosi": Settings("label.csv", "subvideo"),
    "mosei": Settings("label.csv", "subvideo_new"),
    "sims": Settings("label.csv", "video", clip_digits=4),
    "simsv2": Settings("meta.csv", "video_new"),
}
MODES = {"train": "train", "dev": "valid", "test": "test"}


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  s = SETTINGS[dataset]
  path = pick_file(src, split, {k: s.file for k in MODES})
  records, ids = [], Ids()
  for where, row in csv_rows(path, ("video_id", "clip_id", "text", "label", "mode"),
                             nonempty=("video_id", "clip_id", "label")):
    if row["mode"] not in MODES.values():
      raise SourceError(f"{where}: field 'mode': {row['mode']!r} is not one of {', '.join(MODES.values())}")
    video_id, clip_id = row["video_id"], row["clip_id"]
    name = ids.add(f"{video_id}_{clip_id.zfill(s.clip_digits)}", where, "clip_id")
    valence = to_float(row["label"], f"{where}: field 'label'")
    if row["mode"] != MODES[split]:
      continue
    sentiment = valence_sentiment(valence)
    records.append(Record(
        id=name, task="msa", dataset=dataset, split=split, target=templates.sentiment_answer(sentiment),
        labels=(sentiment,), subtitle=row["text"],
        video=media.find([f"Raw/{video_id}/{clip_id}.mp4", f"{s.unibench_video}/{name}.mp4", f"{name}.mp4"]),
        audio=media.find([f"audio/{name}.wav", f"subaudio/{name}.wav"], required=False),
        meta={"valence": valence}))
  return records
