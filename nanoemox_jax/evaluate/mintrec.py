"""MIntRec / MIntRec2.0 intent scores under two labelled protocols.

- paper (Nano-EmoX `evaluation/eval_merg_exp.py` `evaluate_mintrec_metrics`): the answer is compared with the
  label as a whole string; accuracy, weighted F1 and weighted precision as scikit-learn computes them on those
  strings (an answer that is no label is its own class, of weight 0).
- dataset authors (thuiar/MIntRec `utils/metrics.py`): accuracy and macro F1 / precision / recall over the
  dataset's intent classes; an answer that is no label counts as wrong and adds no class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.evaluate import classification

DATASETS = ("mintrec", "mintrec2")


def intent_scores(predicted: Sequence[str], truth: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
  """{"accuracy", "weighted_f1", "weighted_precision"} (paper) and {"macro_f1", "macro_precision",
  "macro_recall"} (dataset authors, averaged over `classes`) of exact-string predictions."""
  paper = classification.scores(predicted, truth)
  authors = classification.scores(predicted, truth, labels=classes)
  hits, support = Counter(t for p, t in zip(predicted, truth) if p == t), Counter(truth)
  recall = [hits[c] / support[c] if support[c] else 0.0 for c in classes]
  return {"accuracy": paper["accuracy"], "weighted_f1": paper["weighted_f1"],
          "weighted_precision": paper["weighted_precision"], "macro_f1": authors["macro_f1"],
          "macro_precision": authors["macro_precision"], "macro_recall": sum(recall) / len(classes)}


def score(dataset: str, records: Sequence[Record], predictions: Sequence[Prediction]) -> dict[str, Any]:
  """One intent dataset; `records` and `predictions` are aligned pairs. The answer is stripped of surrounding
  whitespace and compared exactly (case included) with the label."""
  truth = [r.labels[0] for r in records]
  candidates = list(dict.fromkeys(c for r in records for c in r.candidates)) or list(templates.CANDIDATES[dataset])
  spelling = {t.casefold(): t for t in truth}  # the candidate lists are lower case, the labels capitalised
  classes = [spelling.get(c.casefold(), c) for c in candidates]
  predicted = [p.answer.strip() for p in predictions]
  return {"main": "accuracy", "scores": intent_scores(predicted, truth, classes),
          "confusion": {"classes": classes + ["other"], "truth": truth,
                        "predicted": [p if p in classes else "other" for p in predicted]}}
