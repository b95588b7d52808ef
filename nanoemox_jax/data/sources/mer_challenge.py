"""MER2023 / MER2024 label CSVs (`name, discrete[, valence]`), the challenges' own release format.

zeroQiaoba/MERTools `MER2024/toolkit/preprocess/mer2023.py` reads `train-label.csv` and
`test{1,2,3}-label.csv`; `mer2024.py` reads `label-disdim.csv` (train). MER-UniBench evaluates
MER2023 on test1 and MER2024 on its test1; Nano-EmoX's readers load the same labels from the pickled
`label-6way.npz`, which is never read here: pass the CSV (or a folder holding the default file).
Subtitles come from MER-UniBench's transcription CSV when present (English for MER2023, Chinese
`transcription_merge.csv` for MER2024, as the authors' readers do). Media: `video/<name>.mp4|.avi`
(or the release's split folder), `audio/<name>.wav`. A row needs a name (once per file) and a label; a label outside the six classes leaves the row out
(prepare counts it); a valence must be a finite number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import (VIDEO_EXTS, Ids, Media, csv_rows, known_label, media_candidates,
                                              pick_file, subtitles_from, to_float)


@dataclass(frozen=True)
class Settings:
  files: dict[str, str]  # split -> label CSV inside the dataset folder
  subtitles: tuple[str, str]  # (file, column)


SETTINGS = {
    "mer2023": Settings({"train": "train-label.csv", "test": "test1-label.csv"},
                        ("transcription-engchi-polish.csv", "english")),
    "mer2024": Settings({"train": "label-disdim.csv"}, ("transcription_merge.csv", "chinese")),
}
RELEASE_FOLDERS = {"train": "train", "test": "test1"}


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  s = SETTINGS[dataset]
  path = pick_file(src, split, s.files)
  subtitle_path = path.parent / s.subtitles[0]
  subtitles = subtitles_from(subtitle_path, s.subtitles[1]) if subtitle_path.is_file() else {}
  folders = ("video", RELEASE_FOLDERS.get(split, split), "")
  records, ids = [], Ids()
  for where, row in csv_rows(path, ("name", "discrete"), nonempty=("name", "discrete")):
    name, label = ids.add(row["name"], where, "name"), row["discrete"]
    meta = {}
    if row.get("valence"):
      meta["valence"] = to_float(row["valence"], f"{where}: field 'valence'")
    if not known_label(label, templates.CANDIDATES["mer"], where, media.skipped):
      continue
    records.append(Record(id=name, task="mer", dataset=dataset, split=split,
                          target=templates.mer_answer(label, split == "train"), labels=(label,),
                          candidates=templates.CANDIDATES["mer"], subtitle=subtitles.get(name, ""),
                          video=media.find(media_candidates(name, folders, VIDEO_EXTS)),
                          audio=media.find([f"audio/{name}.wav"], required=False), meta=meta))
  return records
