"""MER-UniBench scores: emotion hit rate, OV-MER F score and MSA weighted F1, as AffectGPT / Nano-EmoX compute them.

Inputs are label lists per sample (the open-set labels a judge extracted from the answer, or the answer's own
list with `--judge none`) and the ground truth of the manifest. References: Nano-EmoX `evaluation/wheel.py`
(`calculate_openset_onehot_hitrate`, `calculate_openset_overlap_rate`), `evaluation/ew_metric.py`
(`hitrate_metric_calculation`, `wheel_metric_calculation`) and `evaluation-scoreonly.py`
(`calculate_dimension_zeroshot`, the dataset groups and the table's average).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.data.sources.mer_ov import split_labels
from nanoemox_jax.evaluate import classification
from nanoemox_jax.evaluate.judge import (
  Judge,
  clean_reply,
  openset_prompt,
  sentiment_prompt,
)
from nanoemox_jax.evaluate.wheel import WHEELS, Wheels

# The paper's table columns (MER-UniBench), by kind of score.
EMOTION = ("mer2023", "mer2024", "meld", "iemocap")  # hit rate
SENTIMENT = ("mosi", "mosei", "sims", "simsv2")  # weighted F1 after binarisation
OPEN_VOCABULARY = ("ovmerd",)  # F score
DATASETS = EMOTION + SENTIMENT + OPEN_VOCABULARY
SENTIMENT_VALUES = {"positive": 1.0, "negative": -1.0, "neutral": 0.0}
_ANSWER_PREFIX = re.compile(r"^.*?\b(?:is|are)\b\s*:?\s*", re.IGNORECASE | re.DOTALL)


def answer_labels(answer: str) -> list[str]:
  """The label list an answer states, read without a judge: "The character's emotional state is a, b, c." ->
  ['a', 'b', 'c'] (text up to the first "is"/"are" and a final period dropped; a leading "and " removed)."""
  text = _ANSWER_PREFIX.sub("", answer.strip(), count=1).strip().rstrip(".").strip()
  return [re.sub(r"^and\s+", "", item) for item in split_labels(text)]


def _mean(values: Sequence[float], what: str) -> float:
  if not values:
    raise ValueError(f"{what}: no sample left to score")
  return sum(values) / len(values)


def hit_rate(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], wheels: Wheels) -> dict:
  """Mean over the five wheels of the share of samples whose predicted classes contain the true class.

  Per wheel both sides are normalised to level-1 classes; a sample whose truth maps to nothing (`neutral`, or a
  word in no table) is skipped on that wheel. Returns {"hit_rate", "per_wheel", "counted"} (counted: samples
  kept per wheel). Reference: `calculate_openset_onehot_hitrate` averaged by `hitrate_metric_calculation`.
  """
  _check(truth, predicted)
  per_wheel, counted = [], []
  for wheel in WHEELS:
    hits = []
    for gt, pred in zip(truth, predicted):
      gt_classes = wheels.normalize_all(gt, wheel)
      if gt_classes:
        hits.append(len(gt_classes & wheels.normalize_all(pred, wheel)))
    per_wheel.append(_mean(hits, f"hit rate on {wheel}"))
    counted.append(len(hits))
  return {"hit_rate": sum(per_wheel) / len(per_wheel), "per_wheel": per_wheel, "counted": counted}


def ov_scores(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], wheels: Wheels) -> dict:
  """OV-MER precision, recall and F, each the mean over the five wheels.

  Per wheel: sample precision |gt & pred| / |pred| and recall |gt & pred| / |gt| on level-1 classes (both 0 when
  the prediction maps to nothing; samples whose truth maps to nothing skipped), averaged over samples; F from
  those two means (0 when both are 0). Reference: `calculate_openset_overlap_rate`, `wheel_metric_calculation`.
  """
  _check(truth, predicted)
  rows = []
  for wheel in WHEELS:
    precision, recall = [], []
    for gt, pred in zip(truth, predicted):
      gt_classes = wheels.normalize_all(gt, wheel)
      if not gt_classes:
        continue
      pred_classes = wheels.normalize_all(pred, wheel)
      common = len(gt_classes & pred_classes)
      precision.append(common / len(pred_classes) if pred_classes else 0.0)
      recall.append(common / len(gt_classes))
    p, r = _mean(precision, f"OV precision on {wheel}"), _mean(recall, f"OV recall on {wheel}")
    rows.append((2 * p * r / (p + r) if p + r else 0.0, p, r))
  f, p, r = (sum(col) / len(rows) for col in zip(*rows))
  return {"f1": f, "precision": p, "recall": r, "per_wheel_f1": [row[0] for row in rows]}


def sentiment_value(reply: str) -> float:
  """A judge's sentiment reply -> +1 / -1 / 0: exactly 'positive' / 'negative' / 'neutral', anything else 0
  (reference `calculate_dimension_zeroshot`)."""
  return SENTIMENT_VALUES.get(reply, 0.0)


def sentiment_scores(valence: Sequence[float], predicted: Sequence[float]) -> dict:
  """MSA weighted F1 and accuracy after binarisation: samples with valence 0 dropped; truth = valence > 0,
  prediction = value > 0 (neutral and unparseable predictions are negative). Weighted F1 as scikit-learn's
  `f1_score(average='weighted')`. Returns {"weighted_f1", "accuracy", "counted"}."""
  _check(valence, predicted)
  kept = [(v > 0, p > 0) for v, p in zip(valence, predicted) if v != 0]
  if not kept:
    raise ValueError("sentiment scores: every ground-truth valence is 0")
  truth_bin = ["positive" if t else "negative" for t, _ in kept]
  pred_bin = ["positive" if p else "negative" for _, p in kept]
  s = classification.scores(pred_bin, truth_bin)
  return {"weighted_f1": s["weighted_f1"], "accuracy": s["accuracy"], "counted": len(kept)}


def _check(a: Sequence, b: Sequence) -> None:
  if len(a) != len(b):
    raise ValueError(f"need as many predictions as truths, got {len(b)} and {len(a)}")


def predicted_labels(predictions: Sequence[Prediction], judge: Judge | None) -> tuple[list[list[str]], list[str]]:
  """(label lists, judge replies) for answers: a judge's reply already on disk (`Prediction.openset`, as the
  reference reuses an existing `-openset.npz`), else the judge's open-set extraction (reference
  `extract_openset_batchcalling`), or with no judge the answers' own lists (`answer_labels`; replies empty)."""
  replies = [p.openset for p in predictions]
  ask = [i for i, r in enumerate(replies) if r is None]
  if judge is None:
    labels = [split_labels(r) if r is not None else answer_labels(p.text) for p, r in zip(predictions, replies)]
    return labels, [r or "" for r in replies]
  for i, reply in zip(ask, judge.complete([openset_prompt(predictions[i].text) for i in ask])):
    replies[i] = clean_reply(reply)
  return [split_labels(r) for r in replies], replies


def sentiments(predictions: Sequence[Prediction], labels: Sequence[Sequence[str]], replies: Sequence[str],
               judge: Judge | None) -> list[str]:
  """Each answer's sentiment word: a judge's reply on disk (`Prediction.sentiment`, used as it is, as the reference
  reads `-openset-sentiment.npz`), else the judge's reply for the open-set labels, or with no judge the label list
  when it is a single word (any case)."""
  out = [p.sentiment for p in predictions]
  ask = [i for i, s in enumerate(out) if s is None]
  if judge is None:
    return [s if s is not None else labels[i][0].lower() if len(labels[i]) == 1 else "" for i, s in enumerate(out)]
  for i, reply in zip(ask, judge.complete([sentiment_prompt(replies[i]) for i in ask])):
    out[i] = clean_reply(reply)
  return out


def _valence(record: Record) -> float:
  if "valence" in record.meta:
    return float(record.meta["valence"])
  return SENTIMENT_VALUES[record.labels[0]]


def _confusion_class(labels: Sequence[str], candidates: Sequence[str], wheels: Wheels) -> str:
  """For the confusion plot only: the first predicted label that is a candidate, or whose wheel-1 class is a
  candidate's; 'other' when none is."""
  by_class = {}
  for c in candidates:
    by_class.setdefault(wheels.normalize(c, WHEELS[0]), c)
  for label in labels:
    if label.lower().strip() in candidates:
      return label.lower().strip()
    if (cls := wheels.normalize(label, WHEELS[0])) is not None and cls in by_class:
      return by_class[cls]
  return "other"


def score(dataset: str, records: Sequence[Record], predictions: Sequence[Prediction], judge: Judge | None,
          wheels: Wheels) -> dict[str, Any]:
  """One MER-UniBench dataset: {"main", "scores", ...}; `records` and `predictions` are aligned pairs. Judge replies
  the predictions carry are used as they are (`predicted_labels`, `sentiments`)."""
  labels, replies = predicted_labels(predictions, judge)
  if dataset in SENTIMENT:
    words = sentiments(predictions, labels, replies, judge)
    s = sentiment_scores([_valence(r) for r in records], [sentiment_value(x) for x in words])
    return {"main": "weighted_f1", "scores": {"weighted_f1": s["weighted_f1"], "accuracy": s["accuracy"]},
            "counted": s["counted"]}
  truth = [list(r.labels) for r in records]
  if dataset in OPEN_VOCABULARY:
    s = ov_scores(truth, labels, wheels)
    return {"main": "f1", "scores": {k: s[k] for k in ("f1", "precision", "recall")},
            "per_wheel": s["per_wheel_f1"]}
  s = hit_rate(truth, labels, wheels)
  candidates = list(dict.fromkeys(c.lower() for r in records for c in (r.candidates or r.labels)))
  return {"main": "hit_rate", "scores": {"hit_rate": s["hit_rate"]}, "per_wheel": s["per_wheel"],
          "counted": s["counted"],
          "confusion": {"classes": candidates + ["other"], "truth": [r.labels[0].lower() for r in records],
                        "predicted": [_confusion_class(ls, candidates, wheels) for ls in labels]}}
