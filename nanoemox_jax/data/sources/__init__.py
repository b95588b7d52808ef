"""Dataset readers: one module per annotation format, each turning files into manifest records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nanoemox_jax.data.manifest import SPLITS, Record
from nanoemox_jax.data.sources import (avamerg, conversation, emer, iemocap, intent, meld, mer_challenge, mer_ov,
                                       merbench, merr, mmsa)
from nanoemox_jax.data.sources.common import Media, SourceError


@dataclass(frozen=True)
class Source:
  read: Callable[[str, Path, str, Media], list[Record]]  # (dataset, src, split, media) -> records
  default_split: str


SOURCES = {
    # P2E training data
    "cremad": Source(conversation.read, "train"),
    "m3ed": Source(conversation.read, "train"),
    "caer": Source(conversation.read, "train"),
    "ferv39k": Source(conversation.read, "train"),
    "mintrec": Source(intent.read, "train"),
    "mintrec2": Source(intent.read, "train"),
    "mercaptionplus": Source(mer_ov.read, "train"),
    "merr_fine": Source(merr.read, "train"),
    "avamerg": Source(avamerg.read, "train"),
    # benchmarks
    "mer2023": Source(mer_challenge.read, "test"),
    "mer2024": Source(mer_challenge.read, "test"),
    "meld": Source(meld.read, "test"),
    "iemocap": Source(iemocap.read, "test"),
    "mosi": Source(mmsa.read, "test"),
    "mosei": Source(mmsa.read, "test"),
    "sims": Source(mmsa.read, "test"),
    "simsv2": Source(mmsa.read, "test"),
    "ovmerd": Source(mer_ov.read, "test"),
    "emer": Source(emer.read, "test"),
}


def read_source(dataset: str, src: str | Path, split: str | None = None, media_root: str | Path | None = None,
                skipped: list[str] | None = None) -> tuple[list[Record], list[str]]:
  """(records, missing media paths). `src` is an annotation file or the dataset folder; media are
  looked up under `media_root` (default: that folder, or the file's folder). A MER-UniBench dataset's MERBench
  label file (`.npz`, or a folder holding it) goes to `merbench.read`, its release files to the reader above.
  Rows left out (a label outside the dataset's candidates) are appended to `skipped` as "file:line: reason"."""
  if dataset not in SOURCES:
    raise SourceError(f"unknown dataset {dataset!r}; known: {sorted(SOURCES)}")
  source, src = SOURCES[dataset], Path(src)
  split = split or source.default_split
  if split not in SPLITS:
    raise SourceError(f"split {split!r} is not one of {SPLITS}")
  media = Media(Path(media_root) if media_root else (src if src.is_dir() else src.parent))
  read = merbench.read if merbench.is_label_file(dataset, src) else source.read
  records = read(dataset, src, split, media)
  if skipped is not None:
    skipped += media.skipped
  return records, media.missing
