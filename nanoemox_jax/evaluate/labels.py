"""The ground truth that `python -m nanoemox_jax.evaluate` scores: a manifest JSONL (`nanoemox_jax.data.manifest`)
read strictly, every problem an `InputError` naming the file, line and field.

A line is one record: "id", "task", "dataset", "split" and "target" required; "labels", "candidates", "subtitle",
"history", "video", "audio" and "meta" optional; no other field. (dataset, id) is unique in the file. A record
that a benchmark scores (a dataset of `suite.TASK` with its task) carries what its scorer reads: MER, MIR and ERG
at least one label; MSA a numeric meta.valence, else a first label positive / negative / neutral.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanoemox_jax.data.manifest import SPLITS, TASKS, Record
from nanoemox_jax.data.predictions import InputError, check_object, is_number, json_lines, json_type
from nanoemox_jax.evaluate.mer_unibench import SENTIMENT_VALUES
from nanoemox_jax.evaluate.suite import TASK

# A record line's fields: name -> (kind, required); see `predictions.check_object`.
SCHEMA = {"id": ("a non-empty string", True), "task": ("a string", True),
          "dataset": ("a non-empty string", True), "split": ("a string", True), "target": ("a string", True),
          "labels": ("an array of strings", False), "candidates": ("an array of strings", False),
          "subtitle": ("a string", False), "history": ("an array of {role, text} objects", False),
          "video": ("a string or null", False), "audio": ("a string or null", False), "meta": ("an object", False)}


def read(path: str | Path) -> list[Record]:
  """The records of a labels file, in file order."""
  records: list[Record] = []
  seen: dict[tuple[str, str], str] = {}  # (dataset, id) -> where first
  for lineno, obj in json_lines(path, "labels"):
    where = f"{path}:{lineno}"
    check_object(obj, SCHEMA, where)
    for name, allowed in (("task", TASKS), ("split", SPLITS)):
      if obj[name] not in allowed:
        raise InputError(f"{where}: field {name!r}: {obj[name]!r} is not one of {', '.join(allowed)}")
    _check_scorable(obj, where)
    key = (obj["dataset"], obj["id"])
    if key in seen:
      raise InputError(f"{where}: field 'id': a second record for {key[0]} id {key[1]!r} (the first at {seen[key]})")
    seen[key] = where
    records.append(Record.from_json(obj))
  return records


def _check_scorable(obj: dict[str, Any], where: str) -> None:
  """A scored record's scorer inputs (see the module docstring)."""
  task, labels = obj["task"], obj.get("labels", [])
  if TASK.get(obj["dataset"]) != task:
    return
  if task in ("mer", "mir", "erg") and not labels:
    raise InputError(f"{where}: field 'labels': a {obj['dataset']} {task} record needs at least one label")
  if task == "msa":
    meta = obj.get("meta", {})
    if "valence" in meta:
      if not is_number(meta["valence"]):
        raise InputError(f"{where}: field 'meta': expected a number as valence, got {json_type(meta['valence'])}")
    elif not labels or labels[0] not in SENTIMENT_VALUES:
      raise InputError(f"{where}: field 'meta': a {obj['dataset']} record needs meta.valence (a number) or a "
                       f"first label of {', '.join(SENTIMENT_VALUES)}")
