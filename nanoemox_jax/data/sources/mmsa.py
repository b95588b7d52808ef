"""CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2 sentiment labels in their CSV form.

MOSI / MOSEI / SIMS: the `label.csv` that thuiar/MMSA distributes (read by its `data/DataPre.py`:
`video_id, clip_id, text, label, annotation, mode`, clips at `Raw/<video_id>/<clip_id>.mp4`).
SIMS v2: the release's `meta.csv` (`video_id, clip_id, text, label, mode`; MERTools
`MER2024/toolkit/preprocess/simsv2.py`). MER-UniBench (and Nano-EmoX's readers) take MOSI/MOSEI
labels from pickles (`CMUMOSI_features_raw_2way.pkl` -> `label.npz`); those are never loaded, the
MMSA CSV gives the same per-clip valence. Item names follow MER-UniBench: `<video_id>_<clip_id>`
(SIMS pads the clip to 4 digits). Valence maps to sentiment by sign; `mode` train/valid/test is the
split (dev = valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import Media, pick_file, read_rows, to_float, valence_sentiment


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
  records = []
  for row in read_rows(path, ("video_id", "clip_id", "text", "label", "mode")):
    if row["mode"] != MODES[split]:
      continue
    video_id, clip_id = row["video_id"], row["clip_id"]
    name = f"{video_id}_{clip_id.zfill(s.clip_digits)}"
    valence = to_float(row["label"], f"{path} row {name!r} field 'label'")
    sentiment = valence_sentiment(valence)
    records.append(Record(
        id=name, task="msa", dataset=dataset, split=split, target=templates.sentiment_answer(sentiment),
        labels=(sentiment,), subtitle=row["text"],
        video=media.find([f"Raw/{video_id}/{clip_id}.mp4", f"{s.unibench_video}/{name}.mp4", f"{name}.mp4"]),
        audio=media.find([f"audio/{name}.wav", f"subaudio/{name}.wav"], required=False),
        meta={"valence": valence}))
  return records
