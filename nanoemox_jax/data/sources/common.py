"""Shared reading helpers: clear errors naming file and field, CSV/JSON loading, media resolution."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def read_text(path: Path) -> str:
  """The file as UTF-8 text (a leading BOM dropped); unreadable or non-UTF-8 bytes are a SourceError naming the
  file and line."""
  try:
    data = path.read_bytes()
  except OSError as e:
    raise SourceError(f"{path}: cannot read: {e.strerror or e}") from None
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise SourceError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start + 1} of the file)") from None


def _unique_keys(path: Path) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
  def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
      key = next(k for i, (k, _) in enumerate(pairs) if any(k == k2 for k2, _ in pairs[:i]))
      raise SourceError(f"{path}: key {key!r} appears twice in one JSON object")
    return obj
  return build


def load_json(path: Path) -> Any:
  """A UTF-8 JSON file (a BOM allowed); bad bytes, bad JSON and a key given twice in an object are SourceErrors
  naming the file (and line)."""
  text = read_text(path)
  try:
    return json.loads(text, object_pairs_hook=_unique_keys(path))
  except json.JSONDecodeError as e:
    raise SourceError(f"{path}:{e.lineno}: not JSON ({e.msg} at column {e.colno})") from None
  except RecursionError:
    raise SourceError(f"{path}: not JSON (nested too deeply)") from None


Row = tuple[str, dict[str, str]]  # ("file:line", {column: cell})


def csv_rows(path: Path, required: Sequence[str], delimiter: str = ",", nonempty: Sequence[str] = ()) -> list[Row]:
  """CSV/TSV rows keyed by the header, each with "file:line" (its first line). A missing `required` column, a row
  with more or fewer cells than the header, the header row again, an empty (or blank) cell of a `nonempty`
  column, a NUL character and unreadable CSV (a quote left open, a cell over csv's 131,072-character limit) are
  SourceErrors naming the file, line and field. Blank lines are skipped."""
  text = read_text(path)
  reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
  out: list[Row] = []
  header: list[str] | None = None
  start = 1
  try:
    for cells in reader:
      where, start = f"{path}:{start}", reader.line_num + 1
      if not cells:
        continue
      if header is None:
        header = cells
        missing = [c for c in required if c not in header]
        if missing:
          raise SourceError(f"{where}: missing column(s) {missing} (header: {header})")
        continue
      if len(cells) != len(header):
        raise SourceError(f"{where}: {len(cells)} cells, the header has {len(header)} ({header})")
      if cells == header:
        raise SourceError(f"{where}: the header row again (files joined?)")
      row = dict(zip(header, cells))
      for column, cell in row.items():
        if "\x00" in cell:
          raise SourceError(f"{where}: field {column!r}: a NUL character")
      for column in nonempty:
        if not row[column].strip():
          raise SourceError(f"{where}: field {column!r}: empty")
      out.append((where, row))
  except csv.Error as e:
    raise SourceError(f"{path}:{start}: not readable CSV ({e})") from None
  if header is None:
    raise SourceError(f"{path}: empty file; expected a header with column(s) {list(required)}")
  return out


def read_rows(path: Path, required: Sequence[str], delimiter: str = ",") -> list[dict[str, str]]:
  """The rows of `csv_rows`, without their places."""
  return [row for _, row in csv_rows(path, required, delimiter)]


def need(obj: Mapping[str, Any], key: str, where: str) -> Any:
  """obj[key], or a SourceError naming `where` (file and item) and the field."""
  if not isinstance(obj, Mapping):
    raise SourceError(f"{where}: expected a JSON object, got {_json_type(obj)}")
  if key not in obj:
    raise SourceError(f"{where}: missing field {key!r}")
  return obj[key]


def text(obj: Mapping[str, Any], key: str, where: str, empty: bool = False) -> str:
  """obj[key] as a string (non-blank unless `empty`); anything else is a SourceError naming `where` and the
  field."""
  value = need(obj, key, where)
  if not isinstance(value, str):
    raise SourceError(f"{where}: field {key!r}: expected a string, got {_json_type(value)}")
  if not empty and not value.strip():
    raise SourceError(f"{where}: field {key!r}: empty")
  try:
    value.encode("utf-8")
  except UnicodeEncodeError:
    raise SourceError(f"{where}: field {key!r}: not valid Unicode (a lone surrogate escape)") from None
  return value


def _json_type(value: Any) -> str:
  return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
          dict: "object"}.get(type(value), type(value).__name__)


def as_list(obj: Any, where: str) -> list:
  if not isinstance(obj, list):
    raise SourceError(f"{where}: expected a JSON list, got {_json_type(obj)}")
  return obj


def media_candidates(stem: str, folders: Iterable[str], exts: Iterable[str]) -> list[str]:
  """Relative paths `folder/stem+ext` (folder '' = the root), folders outermost."""
  exts = tuple(exts)
  return [str(Path(folder) / f"{stem}{ext}") for folder in folders for ext in exts]


class Media:
  """Resolves relative media paths against a root and collects the missing ones; a reader also lists the rows it
  leaves out in `skipped` ("file:line: reason")."""

  def __init__(self, root: Path):
    self.root = root
    self.missing: list[str] = []
    self.skipped: list[str] = []

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


def to_float(value: Any, where: str) -> float:
  """A finite number from a cell or a JSON value; anything else (NaN, inf, text, a boolean) is a SourceError."""
  try:
    number = float(value) if not isinstance(value, bool) else math.nan
  except (TypeError, ValueError):
    raise SourceError(f"{where}: not a number: {value!r}") from None
  if not math.isfinite(number):
    raise SourceError(f"{where}: not a finite number: {value!r}")
  return number


class Ids:
  """Item names seen in one file: a repeat is a SourceError naming both places."""

  def __init__(self):
    self.first: dict[str, str] = {}

  def add(self, name: str, where: str, field: str) -> str:
    if name in self.first:
      raise SourceError(f"{where}: field {field!r}: item {name!r} again (first at {self.first[name]})")
    self.first[name] = where
    return name


def known_label(label: str, candidates: Sequence[str], where: str, skipped: list[str]) -> bool:
  """Whether `label` (case-insensitive) is one of `candidates` (any label when there are none); one that is not is
  listed in `skipped` as "where: reason" and its row left out (prepare counts and prints them)."""
  if not candidates or label.strip().lower() in candidates:
    return True
  skipped.append(f"{where}: label {label!r} is not one of {', '.join(candidates)}")
  return False


def valence_sentiment(value: float) -> str:
  """The authors' valence-to-sentiment rule: >0 positive, <0 negative, 0 neutral."""
  return "positive" if value > 0 else "negative" if value < 0 else "neutral"


def subtitles_from(path: Path, column: str) -> dict[str, str]:
  """name -> subtitle from a MER-style subtitle CSV (columns `name` and `column`); empty cells give '', a name
  twice is an error."""
  ids = Ids()
  return {ids.add(row["name"], where, "name"): row[column] for where, row in csv_rows(path, ("name", column),
                                                                                     nonempty=("name",))}
