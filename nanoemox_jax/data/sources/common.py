"""Shared reading helpers: clear errors naming file and field, CSV/JSON loading, media resolution."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

VIDEO_EXTS = (".mp4", ".avi")


class SourceError(Exception):
  """Bad input: the message names the file and the field."""


def pick_file(src: Path, split: str, names: Mapping[str, str]) -> Path:
  """`src` itself when it is a file, else `src / names[split]` (which must exist)."""
  if not src.exists():
    raise SourceError(f"{src}: no such file or folder")
  if src.is_file():
    return src
  if split not in names:
    raise SourceError(f"{src}: no default annotation file for split {split!r}; pass the file itself "
                      f"(known: {dict(names)})")
  path = src / names[split]
  if not path.is_file():
    raise SourceError(f"{path}: annotation file for split {split!r} not found")
  return path


def load_json(path: Path) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SourceError(f"{path}: not a valid UTF-8 JSON file ({e})") from None


def read_rows(path: Path, required: Sequence[str], delimiter: str = ",") -> list[dict[str, str]]:
  """CSV/TSV rows as dicts keyed by the header (short rows padded with ''); every `required` column
  must be present."""
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      reader = csv.DictReader(f, delimiter=delimiter, restval="")
      header = reader.fieldnames or []
      missing = [c for c in required if c not in header]
      if missing:
        raise SourceError(f"{path}: missing column(s) {missing} (header: {header})")
      return list(reader)
  except UnicodeDecodeError as e:
    raise SourceError(f"{path}: not UTF-8 text ({e})") from None


def need(obj: Mapping[str, Any], key: str, where: str) -> Any:
  """obj[key], or a SourceError naming `where` (file and item) and the field."""
  if not isinstance(obj, Mapping) or key not in obj:
    raise SourceError(f"{where}: missing field {key!r}")
  return obj[key]


def as_list(obj: Any, where: str) -> list:
  if not isinstance(obj, list):
    raise SourceError(f"{where}: expected a JSON list, got {type(obj).__name__}")
  return obj


def media_candidates(stem: str, folders: Iterable[str], exts: Iterable[str]) -> list[str]:
  """Relative paths `folder/stem+ext` (folder '' = the root), folders outermost."""
  exts = tuple(exts)
  return [str(Path(folder) / f"{stem}{ext}") for folder in folders for ext in exts]


class Media:
  """Resolves relative media paths against a root and collects the missing ones."""

  def __init__(self, root: Path):
    self.root = root
    self.missing: list[str] = []

  def find(self, candidates: Sequence[str], required: bool = True) -> str | None:
    """The first candidate that exists under the root; else the first candidate (listed as
    missing) when `required`, or None."""
    for c in candidates:
      if (self.root / c).is_file():
        return str(self.root / c)
    if not required:
      return None
    path = str(self.root / candidates[0])
    self.missing.append(path)
    return path


def unique_ids(names: Iterable[str]) -> list[str]:
  """Keeps names, suffixing repeats with `#2`, `#3`, ... so no item is dropped."""
  seen: dict[str, int] = {}
  out = []
  for name in names:
    seen[name] = seen.get(name, 0) + 1
    out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
  return out


def to_float(value: str, where: str) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    raise SourceError(f"{where}: not a number: {value!r}") from None


def valence_sentiment(value: float) -> str:
  """The authors' valence-to-sentiment rule: >0 positive, <0 negative, 0 neutral."""
  return "positive" if value > 0 else "negative" if value < 0 else "neutral"


def subtitles_from(path: Path, column: str) -> dict[str, str]:
  """name -> subtitle from a MER-style subtitle CSV (columns `name` and `column`); empty cells give ''."""
  return {row["name"]: row[column] or "" for row in read_rows(path, ("name", column))}
