"""Scores a set of predictions on the benchmarks the ground truth holds, per checkpoint, and selects checkpoints.

Benchmarks (families) and their datasets: merunibench (mer2023, mer2024, meld, iemocap, mosi, mosei, sims,
simsv2, ovmerd), mintrec (mintrec, mintrec2), avamerg, emer; a single dataset name selects that dataset.
Predictions are matched to manifest records by (dataset, id) (SIMS and SIMSv2 share ids); records without a
prediction are counted as `missing` and left out (the reference scores the names both sides have). A dataset
none of whose records has a prediction is kept unscored (`main` None, `n` 0), so the other datasets still score.

Checkpoint selection, both labelled in every report:
- fixed: one checkpoint for every dataset (the one named, else the last in natural order, as the authors'
  inference defaults to the last epoch);
- best: per dataset, the checkpoint with the highest main score (the first one on a tie), as Nano-EmoX
  `evaluation-scoreonly.py` (`main_zeroshot_scores`) picks the best epoch of a range per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import InputError, Prediction
from nanoemox_jax.evaluate import avamerg, emer, mer_unibench, mintrec
from nanoemox_jax.evaluate.judge import Judge
from nanoemox_jax.evaluate.wheel import Wheels

FAMILIES = {"merunibench": mer_unibench.DATASETS, "mintrec": mintrec.DATASETS, "avamerg": avamerg.DATASETS,
            "emer": emer.DATASETS}
# The record task that each dataset's benchmark items carry.
TASK = {**{d: "mer" for d in mer_unibench.EMOTION}, **{d: "msa" for d in mer_unibench.SENTIMENT},
        **{d: "ovmer" for d in mer_unibench.OPEN_VOCABULARY}, **{d: "mir" for d in mintrec.DATASETS},
        "avamerg": "erg", "emer": "eri"}
PROTOCOLS = ("fixed", "best")


def family_of(dataset: str) -> str:
  return next(name for name, datasets in FAMILIES.items() if dataset in datasets)


def datasets_for(benchmark: str) -> tuple[str, ...]:
  if benchmark in FAMILIES:
    return FAMILIES[benchmark]
  if benchmark in TASK:
    return (benchmark,)
  raise InputError(f"--benchmark {benchmark!r}: unknown; known: {', '.join(sorted(FAMILIES))} or a dataset of "
                   f"{', '.join(sorted(TASK))}")


def scored(result: Mapping[str, Any]) -> bool:
  """Whether a dataset result has scores (False: none of its records had a prediction)."""
  return result["main"] is not None


def main_score(result: Mapping[str, Any]) -> float | None:
  """The result's main score, None when it is unscored."""
  return result["scores"][result["main"]] if scored(result) else None


def benchmark_records(records: Sequence[Record], benchmark: str) -> dict[str, list[Record]]:
  """dataset -> its records that the benchmark scores (the dataset's benchmark task), for the datasets present."""
  groups = {d: [r for r in records if r.dataset == d and r.task == TASK[d]] for d in datasets_for(benchmark)}
  return {d: rs for d, rs in groups.items() if rs}


def score_dataset(dataset: str, records: Sequence[Record], predictions: Mapping[tuple[str, str], Prediction],
                  judge: Judge | None, wheels: Wheels) -> dict[str, Any]:
  """{"main", "scores", "n", "missing", ...} of one dataset's records against one checkpoint's predictions keyed
  by (dataset, id); {"main": None, "scores": {}, "n": 0, "missing": len(records)} when none has a prediction."""
  pairs = [(r, predictions[r.dataset, r.id]) for r in records if (r.dataset, r.id) in predictions]
  if not pairs:
    return {"main": None, "scores": {}, "n": 0, "missing": len(records)}
  recs, preds = (list(x) for x in zip(*pairs))
  family = family_of(dataset)
  if family == "merunibench":
    result = mer_unibench.score(dataset, recs, preds, judge, wheels)
  elif family == "mintrec":
    result = mintrec.score(dataset, recs, preds)
  elif family == "avamerg":
    result = avamerg.score(dataset, recs, preds)
  else:
    result = emer.score(dataset, recs, preds, judge)
  return {**result, "n": len(pairs), "missing": len(records) - len(pairs)}


def score_all(groups: Mapping[str, Sequence[Record]], by_checkpoint: Mapping[str, Sequence[Prediction]],
              judge: Judge | None, wheels: Wheels) -> dict[str, dict[str, dict[str, Any]]]:
  """checkpoint -> dataset -> result, for the datasets of `groups` (`benchmark_records`)."""
  per_checkpoint = {}
  for ckpt, preds in by_checkpoint.items():
    keyed = {(p.dataset, p.id): p for p in preds}
    per_checkpoint[ckpt] = {d: score_dataset(d, rs, keyed, judge, wheels) for d, rs in groups.items()}
  return per_checkpoint


def select(per_checkpoint: Mapping[str, Mapping[str, Mapping[str, Any]]], protocol: str,
           checkpoint: str | None = None) -> dict[str, dict[str, Any]]:
  """dataset -> the chosen result, with its "checkpoint" added. `per_checkpoint` in natural checkpoint order."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol {protocol!r} is not one of {PROTOCOLS}")
  names = list(per_checkpoint)
  if protocol == "fixed":
    name = checkpoint if checkpoint is not None else names[-1]
    if name not in per_checkpoint:
      raise InputError(f"--checkpoint {name!r}: not among the predictions' checkpoints {names}")
    return {d: {**r, "checkpoint": name} for d, r in per_checkpoint[name].items()}
  chosen = {}
  for d in per_checkpoint[names[0]]:
    ranked = [n for n in names if scored(per_checkpoint[n][d])] or names[-1:]  # unscored everywhere: the last
    best = max(ranked, key=lambda n: (main_score(per_checkpoint[n][d]), -names.index(n)))
    chosen[d] = {**per_checkpoint[best][d], "checkpoint": best}
  return chosen


def average(selected: Mapping[str, Mapping[str, Any]], benchmark: str) -> dict[str, Any] | None:
  """MER-UniBench's table average: the mean main score over its datasets present ({"value", "datasets"})."""
  present = [d for d in mer_unibench.DATASETS if d in selected and scored(selected[d])]
  if benchmark != "merunibench" or not present:
    return None
  return {"value": sum(main_score(selected[d]) for d in present) / len(present), "datasets": present}


def gate_means(predictions: Sequence[Prediction]) -> dict[str, dict[str, float]]:
  """task -> gate name -> mean fusion-gate weight over the predictions that carry gates (Fig. 6c)."""
  sums: dict[str, dict[str, list[float]]] = {}
  for p in predictions:
    for name, value in (p.gates or {}).items():
      sums.setdefault(p.task, {}).setdefault(name, []).append(value)
  return {task: {name: sum(v) / len(v) for name, v in gates.items()} for task, gates in sums.items()}
