"""EMER ground truth (`gt-eng.csv`: `names, emotions, subtitles, reasons`), in zeroQiaoba/AffectGPT
`EMER/dataset-v1/` and Nano-EmoX `data/EMER/`; read by their `datasets/datasets/emer.py`. Each row is
an ERI evaluation record (the reason is the reference description). Media: `video/<name>.mp4`,
`audio/<name>.wav` (MER2023 samples). A row needs a name (once), an emotion and a reason.
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import VIDEO_EXTS, Ids, Media, csv_rows, media_candidates, pick_file


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  path, ids = pick_file(src, split, {"test": "gt-eng.csv"}), Ids()
  return [Record(id=ids.add(row["names"], where, "names"), task="eri", dataset=dataset, split=split,
                 target=row["reasons"], labels=(row["emotions"],), subtitle=row["subtitles"],
                 video=media.find(media_candidates(row["names"], ("video", ""), VIDEO_EXTS)),
                 audio=media.find([f"audio/{row['names']}.wav"], required=False))
          for where, row in csv_rows(path, ("names", "emotions", "subtitles", "reasons"),
                                     nonempty=("names", "emotions", "reasons"))]
