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

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import InputError, is_number, json_type, read_records
from nanoemox_jax.evaluate.mer_unibench import SENTIMENT_VALUES
from nanoemox_jax.evaluate.suite import TASK

def read(path: str | Path) -> list[Record]:
  """The records of a labels file, in file order (`predictions.read_records` with the scorer checks)."""
  return read_records(path, "labels", _check_scorable)


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
        raise InputError(f"{where}: field 'meta': expected a finite number as valence, got "
                         f"{json_type(meta['valence'])} {meta['valence']!r}")
    elif not labels or labels[0] not in SENTIMENT_VALUES:
      raise InputError(f"{where}: field 'meta': a {obj['dataset']} record needs meta.valence (a number) or a "
                       f"first label of {', '.join(SENTIMENT_VALUES)}")
