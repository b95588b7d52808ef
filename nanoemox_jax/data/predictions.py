"""Predictions: one model answer per manifest record, stored as JSONL (`preds.jsonl`).

`python -m nanoemox_jax.infer --manifest ... --out preds.jsonl` appends them; `python -m nanoemox_jax.evaluate`
reads them. One JSON object per line: {"id", "task", "dataset", "text" (the whole decoded answer), "answer" (ERG:
the reply without the <think> block; otherwise the same as text), "think" (ERG: the <think> content, else null),
"gates" ({name: weight} of the fusion gate, or null), "checkpoint"}. On reading, "answer", "think", "gates" and
"checkpoint" are optional, as are a judge's outputs already at hand, "openset" (its label list for the answer) and
"sentiment" (its positive / negative / neutral for that list), which `evaluate` then uses instead of asking a
judge; any other field is an error. AffectGPT's / Nano-EmoX's published `.npz` outputs are read too
(`data/published.py`); several files (or one file holding several
checkpoints) give a checkpoint range, and a line without a checkpoint takes its file's stem. A record is named by
its (dataset, id): ids need only be unique within a dataset (SIMS and SIMSv2 share theirs).

`InputError` and the JSONL helpers (`json_lines`, `check_object`) are shared by the CLIs that read user files.
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoemox_jax.data.manifest import SPLITS, TASKS, Record


class InputError(ValueError):
  """A user's input is unusable; the message names the file (with the line and field where there is one). The
  CLIs print it as one line and exit 2."""


def json_type(value: Any) -> str:
  """The JSON name of a decoded value's type."""
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "boolean"
  if isinstance(value, (int, float)):
    return "number"
  return {str: "string", list: "array"}.get(type(value), "object")


def is_number(value: Any) -> bool:
  """Whether a decoded JSON value is a finite number (booleans, NaN and Infinity are not)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Field kinds of `check_object`: name -> test.
KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "a non-empty string": lambda v: isinstance(v, str) and bool(v),
    "a string or null": lambda v: v is None or isinstance(v, str),
    "an array of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "an object": lambda v: isinstance(v, dict),
    "an object of numbers or null": lambda v: v is None or (isinstance(v, dict) and all(map(is_number, v.values()))),
    "an array of {role, text} objects": lambda v: isinstance(v, list) and all(
        isinstance(t, dict) and set(t) == {"role", "text"} and all(isinstance(x, str) for x in t.values()) for t in v),
}


def check_object(obj: dict[str, Any], schema: Mapping[str, tuple[str, bool]], where: str) -> None:
  """Every field of `obj` is in `schema` (name -> (kind of KINDS, required)), every required one is there and
  each has its kind; otherwise an InputError `where: field 'name': ...` (the first problem only)."""
  for name in obj:
    if name not in schema:
      raise InputError(f"{where}: field {name!r}: unknown field (known: {', '.join(schema)})")
  for name, (kind, required) in schema.items():
    if name not in obj:
      if required:
        raise InputError(f"{where}: field {name!r}: missing")
    elif not KINDS[kind](obj[name]):
      raise InputError(f"{where}: field {name!r}: expected {kind}, got {json_type(obj[name])}")


def json_lines(path: str | Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, object) of each non-blank line of a JSONL file (a leading UTF-8 BOM and CRLF line ends are
  fine). A file that cannot be read or holds no line, and a line that is not UTF-8 or not one JSON object, are
  InputErrors naming the file (and line); `what` names the file's role in them ("predictions", "labels")."""
  try:
    data = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf")
  except OSError as e:
    raise InputError(f"{path}: cannot read the {what} file: {e.strerror or e}") from None
  empty = True
  for lineno, raw in enumerate(data.split(b"\n"), 1):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise InputError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start + 1} of the line)") from None
    if not line.strip():
      continue
    empty = False
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise InputError(f"{path}:{lineno}: not JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
      raise InputError(f"{path}:{lineno}: not JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
      raise InputError(f"{path}:{lineno}: expected a JSON object, got {json_type(obj)}")
    yield lineno, obj
  if empty:
    raise InputError(f"{path}: empty {what} file (no JSON line)")


# A prediction line's fields: name -> (kind, required).
SCHEMA = {"id": ("a non-empty string", True), "task": ("a string", True),
          "dataset": ("a non-empty string", True), "text": ("a string", True),
          "answer": ("a string or null", False), "think": ("a string or null", False),
          "gates": ("an object of numbers or null", False), "checkpoint": ("a string or null", False),
          "openset": ("a string or null", False), "sentiment": ("a string or null", False)}


@dataclass(frozen=True)
class Prediction:
  """One record's answer (JSON-serialisable through `to_json` / `from_json`). gates: fusion expert name ->
  weight, None without gated fusion or when the fusion token was masked (video or audio missing); checkpoint:
  the model that answered; openset / sentiment: a judge's replies already on disk (None: not given)."""
  id: str
  task: str
  dataset: str
  text: str
  answer: str
  think: str | None = None
  gates: Mapping[str, float] | None = None
  checkpoint: str = ""
  openset: str | None = None
  sentiment: str | None = None

  @classmethod
  def from_text(cls, id: str, task: str, dataset: str, text: str, gates: Mapping[str, float] | None = None,
                checkpoint: str = "") -> Prediction:
    """The prediction of a decoded answer `text`: ERG's `<think>` block split off (`split_think`)."""
    think, answer = split_think(text) if task == "erg" else (None, text)
    return cls(id, task, dataset, text, answer, think, gates, checkpoint)

  def to_json(self) -> dict[str, Any]:
    return {"id": self.id, "task": self.task, "dataset": self.dataset, "text": self.text, "answer": self.answer,
            "think": self.think, "gates": None if self.gates is None else dict(self.gates),
            "checkpoint": self.checkpoint,
            **{k: v for k, v in (("openset", self.openset), ("sentiment", self.sentiment)) if v is not None}}

  @classmethod
  def from_json(cls, obj: dict[str, Any], default_checkpoint: str = "", where: str = "prediction") -> Prediction:
    """The line's prediction; a missing answer is the text, a missing or empty checkpoint `default_checkpoint`.
    A field of the wrong kind, a missing or unknown field and an unknown task are InputErrors naming `where`."""
    check_object(obj, SCHEMA, where)
    if obj["task"] not in TASKS:
      raise InputError(f"{where}: field 'task': {obj['task']!r} is not one of {', '.join(TASKS)}")
    answer, gates = obj.get("answer"), obj.get("gates")
    return cls(id=obj["id"], task=obj["task"], dataset=obj["dataset"], text=obj["text"],
               answer=obj["text"] if answer is None else answer, think=obj.get("think"),
               gates=None if gates is None else {k: float(v) for k, v in gates.items()},
               checkpoint=obj.get("checkpoint") or default_checkpoint, openset=obj.get("openset"),
               sentiment=obj.get("sentiment"))


def split_think(text: str) -> tuple[str | None, str]:
  """(think, reply) of an ERG answer `<think>chain of empathy</think> reply`: (None, text) without a `<think>`
  block; an unclosed block (cut by max_new_tokens) is all think and leaves an empty reply."""
  head, opened, rest = text.partition("<think>")
  if not opened:
    return None, text
  think, closed, reply = rest.partition("</think>")
  return think.strip(), f"{head} {reply}".strip() if closed else head.strip()


def append_jsonl(predictions: Iterable[Prediction], path: str | Path) -> None:
  """Appends one JSON line per prediction (UTF-8, non-ASCII kept) and syncs the file to disk, so that a killed
  run keeps every batch appended before."""
  with open(path, "a", encoding="utf-8") as f:
    f.writelines(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in predictions)
    f.flush()
    os.fsync(f.fileno())


def expand(patterns: Iterable[str]) -> list[Path]:
  """Files named by `patterns` (paths or globs), in order, each once; a pattern matching nothing, or a folder,
  is an InputError."""
  paths: dict[Path, None] = {}
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches:
      raise InputError(f"{pattern}: no predictions file matches this pattern")
    for match in matches:
      if Path(match).is_dir():
        raise InputError(f"{match}: a folder, not a predictions file")
    paths.update((Path(m), None) for m in matches)
  return list(paths)


def read_checkpoints(patterns: Iterable[str], datasets: Collection[str] | None = None,
                     read_npz: Callable[[list[Path]], list[tuple[str, Prediction]]] | None = None
                     ) -> dict[str, list[Prediction]]:
  """checkpoint -> its predictions from the files of `patterns` (see `expand`; `.npz` files, published outputs,
  go to `read_npz` all at once, e.g. `data.published.read`, which gives (where, prediction) pairs), checkpoints in
  natural order (`ckpt_9` before `ckpt_10`).
  Within one checkpoint a (dataset, id) may appear once; with `datasets`, a prediction of another dataset is an
  error. Every problem is an InputError naming the file, line and field."""
  by_checkpoint: dict[str, list[Prediction]] = {}
  seen: dict[tuple[str, str, str], str] = {}  # (checkpoint, dataset, id) -> where first
  paths = expand(patterns)
  npz = [path for path in paths if path.suffix == ".npz"]
  if npz and read_npz is None:
    raise InputError(f"{npz[0]}: .npz predictions are read by `python -m nanoemox_jax.evaluate` only")
  lines = itertools.chain(
      ((f"{path}:{n}", Prediction.from_json(obj, path.stem, f"{path}:{n}"))
       for path in paths if path.suffix != ".npz" for n, obj in json_lines(path, "predictions")),
      read_npz(npz) if npz else ())
  for where, p in lines:
    if datasets is not None and p.dataset not in datasets:
      raise InputError(f"{where}: field 'dataset': unknown dataset {p.dataset!r} (known: "
                       f"{', '.join(sorted(datasets))})")
    key = (p.checkpoint, p.dataset, p.id)
    if key in seen:
      raise InputError(f"{where}: field 'id': a second prediction for {p.dataset} id {p.id!r} of checkpoint "
                       f"{p.checkpoint!r} (the first at {seen[key]})")
    seen[key] = where
    by_checkpoint.setdefault(p.checkpoint, []).append(p)
  return {k: by_checkpoint[k] for k in sorted(by_checkpoint, key=natural_key)}


def natural_key(name: str) -> list[Any]:
  """Sort key comparing digit runs as numbers."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# A manifest record line's fields (`manifest.Record.to_json`): name -> (kind, required).
RECORD_SCHEMA = {"id": ("a non-empty string", True), "task": ("a string", True),
                 "dataset": ("a non-empty string", True), "split": ("a string", True), "target": ("a string", True),
                 "labels": ("an array of strings", False), "candidates": ("an array of strings", False),
                 "subtitle": ("a string", False), "history": ("an array of {role, text} objects", False),
                 "video": ("a string or null", False), "audio": ("a string or null", False),
                 "meta": ("an object", False)}


def read_records(path: str | Path, what: str = "manifest",
                 check: Callable[[dict[str, Any], str], None] | None = None) -> list[Record]:
  """The records of a manifest JSONL read strictly, in file order: every field of `RECORD_SCHEMA` of its kind, a
  known task and split, (dataset, id) unique, and `check(obj, "file:line")` if given; every problem an InputError
  naming the file, line and field (`what` names the file's role)."""
  records: list[Record] = []
  seen: dict[tuple[str, str], str] = {}  # (dataset, id) -> where first
  for lineno, obj in json_lines(path, what):
    where = f"{path}:{lineno}"
    check_object(obj, RECORD_SCHEMA, where)
    for name, allowed in (("task", TASKS), ("split", SPLITS)):
      if obj[name] not in allowed:
        raise InputError(f"{where}: field {name!r}: {obj[name]!r} is not one of {', '.join(allowed)}")
    if check is not None:
      check(obj, where)
    key = (obj["dataset"], obj["id"])
    if key in seen:
      raise InputError(f"{where}: field 'id': a second record for {key[0]} id {key[1]!r} (the first at {seen[key]})")
    seen[key] = where
    records.append(Record.from_json(obj))
  return records
