"""Closed-set scoring: label extraction from answers, and the metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from nanoemox_jax.data import templates
from nanoemox_jax.evaluate.classification import chance, extract_label, scores

MINTREC = templates.CANDIDATES["mintrec"]
EMOTIONS = templates.CANDIDATES["mer"]  # neutral, angry, happy, sad, worried, surprise


@pytest.mark.parametrize("text, candidates, want", [
    (templates.mer_answer("ask for help", True), MINTREC, "ask for help"),
    ("The most likely label is agree.", MINTREC, "agree"),
    ("The most likely label is disagree.", MINTREC, None),  # "agree" inside "disagree" is no mention
    ("The most likely label is disagree.", ("agree", "disagree"), "disagree"),
    ("I disagree with her. The most likely label is oppose.", MINTREC, "oppose"),
    ("The most likely label is: Thank!", MINTREC, "thank"),
    ("the most likely label is complain", ("Complain", "Praise"), "Complain"),  # spelled as the candidates
    ("The most likely label is ask-for-help.", MINTREC, "ask for help"),
    (templates.mer_answer("happy", False), EMOTIONS, "happy"),
    ("The character's emotional state is HAPPY", EMOTIONS, "happy"),
    (templates.ov_answer(["excited", "happy", "sad"]), EMOTIONS, "happy"),  # OV: the first candidate named
    ("This angry man's emotional state is sad.", EMOTIONS, "sad"),  # "is" inside "This" is no answer
    ("It is hard to tell; the character's emotional state is worried.", EMOTIONS, "worried"),
    ("The character's emotional state is sad, and the speaker is angry.", EMOTIONS, "sad"),
    ("She sounds sad, but angry too.", ("angry", "sad"), "sad"),  # no "is": the earliest mention
    ("Please ask for help now.", ("ask", "ask for help"), "ask for help"),  # same start: the longest
    ("Surprise!", EMOTIONS, "surprise"),
    ("The emotional state is unclear.", EMOTIONS, None),
    ("", EMOTIONS, None),
    ("happy", (), None),
])
def test_extract_label(text, candidates, want):
  assert extract_label(text, candidates) == want


def sklearn_scores(predicted, truth, labels=None) -> dict[str, float]:
  y_pred = ["<unparsed>" if p is None else p for p in predicted]  # a class that no truth carries
  kw = {"labels": labels, "zero_division": 0}
  return {"accuracy": metrics.accuracy_score(truth, y_pred),
          "weighted_f1": metrics.f1_score(truth, y_pred, average="weighted", **kw),
          "weighted_precision": metrics.precision_score(truth, y_pred, average="weighted", **kw),
          "macro_f1": metrics.f1_score(truth, y_pred, average="macro", **kw),
          "macro_precision": metrics.precision_score(truth, y_pred, average="macro", **kw)}


@pytest.mark.parametrize("seed", range(12))
def test_scores_equal_sklearn(seed):
  rng = np.random.default_rng(seed)
  classes = list(EMOTIONS[:rng.integers(2, 7)])
  n = int(rng.integers(1, 60))
  truth = [str(c) for c in rng.choice(classes, n)]
  stray = ["disgust"] if seed % 3 == 0 else []  # a prediction outside the truth's classes
  predicted = [None if rng.random() < 0.15 else str(rng.choice(classes + stray)) if rng.random() < 0.6 else t
               for t in truth]
  want = sklearn_scores(predicted, truth)
  assert scores(predicted, truth) == pytest.approx(want, abs=1e-12)
  labels = list(EMOTIONS)  # the dataset's label set: stray and unparsed predictions left out of the averages
  assert scores(predicted, truth, labels) == pytest.approx(sklearn_scores(predicted, truth, labels), abs=1e-12)


def test_scores_edge_cases():
  perfect = scores(["sad", "happy"], ["sad", "happy"])
  assert perfect == dict.fromkeys(perfect, 1.0)
  unparsed = scores([None, None], ["sad", "happy"])
  assert unparsed == dict.fromkeys(unparsed, 0.0)
  with pytest.raises(ValueError, match="equally many"):
    scores(["sad"], ["sad", "happy"])
  with pytest.raises(ValueError, match="equally many"):
    scores([], [])


def test_chance_is_the_majority_share_and_at_least_uniform_guessing():
  assert chance(["a", "a", "b", "c"]) == 0.5
  assert chance(["a", "b", "c"]) == pytest.approx(1 / 3)
  rng = np.random.default_rng(0)
  for _ in range(20):
    truth = list(rng.choice(list("abcdef"), int(rng.integers(1, 30))))
    assert chance(truth) >= 1 / len(set(truth))
    assert chance(truth) == pytest.approx(max(scores([c] * len(truth), truth)["accuracy"] for c in set(truth)))
