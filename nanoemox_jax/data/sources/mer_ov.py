"""MER-Caption+ and OV-MERD in the MER2025 track-2/3 CSV release.

Folder files (Nano-EmoX `datasets/datasets/mercaptionplus_dataset.py`, `ovmerd_dataset.py`; zeroQiaoba/MERTools
`MER2025/MER2025_Track23/config.py`): `track2_train_<x>.csv` (`name, openset`: a list such as
`['a', 'b']` or `a, b`, read by the reference's rule `split_labels`, empty meaning neutral),
`track3_train_<x>.csv` (`name, reason`) and `subtitle_chieng.csv` (`name, chinese, english`; the English column
is used). Media: `video/<name>.mp4` (or `video/video/`), `audio/<name>.wav`.

MER-Caption+ gives an OV-MER record per item and an ERI record (`<name>#eri`) where a reason exists
(the authors' `hybird` label type draws between the two). OV-MERD, a benchmark, gives OV-MER records
and keeps the reason in `meta`. A row needs a name, named once per file; any label list is taken (empty: neutral).
"""

from __future__ import annotations

import re
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import Ids, Media, SourceError, csv_rows, subtitles_from

_LIST_SPLIT = re.compile("[,'\"]")


def split_labels(text: str) -> list[str]:
  """A label list read as the reference reads it: zeroQiaoba/MERTools `MER2025/MER2025_Track23/toolkit/utils/
  functions.py` `string_to_list`, which AffectGPT's OV-MER readers (`ovmerd_dataset.py`,
  `mercaptionplus_dataset.py`) and its metric (`my_affectgpt/evaluation/wheel.py`) call.

  Nothing is stripped first; a leading `[` and a trailing `]` are dropped each on its own; the rest is split at
  every comma and every single or double quote; the pieces are stripped and the empty ones dropped. So
  `[], ["confused"]` -> [']', '[', 'confused'], `"it's", sad` -> ['it', 's', 'sad'], and a full-width comma
  does not split. A lone `[` gives [] (the reference raises IndexError on it).
  """
  body = text[1:] if text.startswith("[") else text
  body = body[:-1] if body.endswith("]") else body
  return [piece.strip() for piece in _LIST_SPLIT.split(body) if piece.strip()]


def parse_openset(text: str) -> tuple[str, ...]:
  """An `openset` cell's labels (`split_labels`); an empty list is ('neutral',), as the reference readers do."""
  return tuple(split_labels(text)) or ("neutral",)


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
    ids = Ids()
    reasons = {ids.add(r["name"], where, "name"): r["reason"]
               for where, r in csv_rows(reason_path, ("name", "reason"), nonempty=("name",))}
  subtitles = subtitles_from(subtitle_path, "english") if subtitle_path.is_file() else {}
  records, ids = [], Ids()
  for where, row in csv_rows(ov_path, ("name", "openset"), nonempty=("name",)):
    name = ids.add(row["name"], where, "name")
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
