"""Closed-set scoring (MER, MIR, MSA): the label an answer names, accuracy / weighted and macro F1 / precision.

The answers follow the training templates ("The most likely label is X." for candidate questions and MIR,
"The character's emotional state is X." for MER off the training split, "X, Y, Z." for open vocabulary).
`scores` equals scikit-learn's `accuracy_score` and `f1_score` / `precision_score` (average='weighted' /
'macro', zero_division=0) with every unparsed answer mapped to one extra class that no truth carries.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence

_PUNCTUATION = re.compile(r"[^\w\s]+")
_AFTER_IS = re.compile(r"\bis\b([^.!?\n]*)", re.IGNORECASE)  # the rest of the sentence after a whole-word "is"


def _normalize(text: str) -> str:
  """Lowercase, punctuation replaced by spaces, whitespace collapsed to single spaces."""
  return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def _first_mention(text: str, candidates: Sequence[str]) -> str | None:
  """The candidate named earliest in `text` as whole words (the longest on a tie, then the first listed)."""
  text, best = _normalize(text), None
  for i, candidate in enumerate(candidates):
    key = _normalize(candidate)
    if key and (m := re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text)):
      hit = (m.start(), -len(key), i)
      best = hit if best is None else min(best, hit)
  return None if best is None else candidates[best[2]]


def extract_label(text: str, candidates: Sequence[str]) -> str | None:
  """The candidate (as spelled in `candidates`) that the answer `text` names, or None.

  Matching is case-insensitive, ignores punctuation and needs whole words ("agree" is not found in
  "disagree"). First the phrases after each "is" in order ("The most likely label is X."), the first naming a
  candidate wins; otherwise the whole text. Within a phrase or text: the earliest mention, the longest
  candidate on a tie ("ask for help" over "ask").
  """
  for m in _AFTER_IS.finditer(text):
    if (label := _first_mention(m.group(1), candidates)) is not None:
      return label
  return _first_mention(text, candidates)


def _safe_div(a: float, b: float) -> float:
  return a / b if b else 0.0


def scores(predicted: Sequence[str | None], truth: Sequence[str],
           labels: Sequence[str] | None = None) -> dict[str, float]:
  """accuracy, weighted_f1, weighted_precision, macro_f1, macro_precision of `predicted` against `truth`.

  None (an unparsed answer) is wrong and forms its own class. `labels`: the classes averaged over (default,
  as scikit-learn: every class in `truth` or `predicted`, the unparsed one included; pass the dataset's label
  set to leave out stray predictions). Weighted averages weight each class by its support in `truth`; a
  metric whose denominator is zero counts 0 (sklearn's zero_division=0).
  """
  if len(predicted) != len(truth) or not truth:
    raise ValueError(f"scores: need equally many predictions and truths, got {len(predicted)} and {len(truth)}")
  if any(t is None for t in truth):
    raise ValueError("scores: a truth label is None")
  classes = list(labels) if labels is not None else sorted(set(truth) | set(predicted), key=lambda c: (c is None, c))
  hits = collections.Counter(t for p, t in zip(predicted, truth) if p == t)
  made, support = collections.Counter(predicted), collections.Counter(truth)
  precision = [_safe_div(hits[c], made[c]) for c in classes]
  f1 = [_safe_div(2 * hits[c], made[c] + support[c]) for c in classes]
  weights = [support[c] for c in classes]
  weighted = lambda values: _safe_div(sum(w * v for w, v in zip(weights, values)), sum(weights))
  return {"accuracy": sum(hits.values()) / len(truth),
          "weighted_f1": weighted(f1), "weighted_precision": weighted(precision),
          "macro_f1": _safe_div(sum(f1), len(classes)), "macro_precision": _safe_div(sum(precision), len(classes))}


def chance(truth: Sequence[str]) -> float:
  """The chance accuracy on `truth`: always predicting its most frequent class. That share is never below
  1 / number of classes (guessing uniformly at random), so it is the larger of the two baselines."""
  if not truth:
    raise ValueError("chance: no truth labels")
  return max(collections.Counter(truth).values()) / len(truth)
