"""MER-Caption+ and OV-MERD in the MER2025 track-2/3 CSV release.

Folder files (Nano-EmoX `datasets/datasets/mercaptionplus_dataset.py`, `ovmerd_dataset.py`; zeroQiaoba/MERTools
`MER2025/MER2025_Track23/config.py`): `track2_train_<x>.csv` (`name, openset`: a list written as
`[a, b]` or `a, b`, empty meaning neutral), `track3_train_<x>.csv` (`name, reason`) and
`subtitle_chieng.csv` (`name, chinese, english`; the English column is used). Media: `video/<name>.mp4`
(or `video/video/`), `audio/<name>.wav`.

MER-Caption+ gives an OV-MER record per item and an ERI record (`<name>#eri`) where a reason exists
(the authors' `hybird` label type draws between the two). OV-MERD, a benchmark, gives OV-MER records
and keeps the reason in `meta`.
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import Media, SourceError, read_rows, subtitles_from

def parse_openset(text: str) -> tuple[str, ...]:
  """The authors' `string_to_list`: strip brackets, split on commas, strip quotes; empty -> neutral."""
  text = text.strip()
  if text.startswith("[") and text.endswith("]"):
    text = text[1:-1]
  items = [item.strip().strip("'\"") for item in text.split(",")]
  return tuple(item for item in items if item) or ("neutral",)


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  if not src.exists():
    raise SourceError(f"{src}: no such file or folder")
  folder = src if src.is_dir() else src.parent
  ov_path = src if src.is_file() else folder / f"track2_train_{dataset}.csv"
  if not ov_path.is_file():
    raise SourceError(f"{ov_path}: OV label file not found")
  reason_path = folder / f"track3_train_{dataset}.csv"
  subtitle_path = folder / "subtitle_chieng.csv"
  reasons = {}
  if reason_path.is_file():
    reasons = {r["name"]: r["reason"] for r in read_rows(reason_path, ("name", "reason"))}
  subtitles = subtitles_from(subtitle_path, "english") if subtitle_path.is_file() else {}
  records = []
  for row in read_rows(ov_path, ("name", "openset")):
    name = row["name"]
    labels = parse_openset(row["openset"])
    common = dict(dataset=dataset, split=split, subtitle=subtitles.get(name, ""),
                  video=media.find([f"video/{name}.mp4", f"video/video/{name}.mp4", f"{name}.mp4"]),
                  audio=media.find([f"audio/{name}.wav"], required=False))
    meta = {"reason": reasons[name]} if dataset == "ovmerd" and name in reasons else {}
    records.append(Record(id=name, task="ovmer", target=templates.ov_answer(labels), labels=labels, meta=meta,
                          **common))
    if dataset == "mercaptionplus" and reasons.get(name):
      records.append(Record(id=f"{name}#eri", task="eri", target=reasons[name], labels=labels, **common))
  return records
