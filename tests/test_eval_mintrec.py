"""MIntRec scores: the paper's exact-match protocol and the dataset authors' macro protocol, against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.evaluate import mintrec


def test_intent_scores_match_sklearn():
  rng = np.random.default_rng(1)
  classes = list(templates.CANDIDATES["mintrec"])
  truth = rng.choice(classes[:12], 300).tolist()  # some classes never occur in truth
  predicted = [t if rng.random() < 0.5 else rng.choice(classes + ["The most likely label is praise.", "Praise"])
               for t in truth]
  s = mintrec.intent_scores(predicted, truth, classes)
  assert s["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
  assert s["weighted_f1"] == pytest.approx(f1_score(truth, predicted, average="weighted"))
  assert s["weighted_precision"] == pytest.approx(precision_score(truth, predicted, average="weighted",
                                                                  zero_division=0))
  for key, fn in (("macro_f1", f1_score), ("macro_precision", precision_score), ("macro_recall", recall_score)):
    assert s[key] == pytest.approx(fn(truth, predicted, labels=classes, average="macro", zero_division=0)), key


def test_score_exact_match():
  labels = ["complain", "ask for help", "thank"]
  answers = [" complain\n", "ask for help.", "Thank"]  # only the first is an exact match after stripping
  records = [Record(id=str(i), task="mir", dataset="mintrec", split="test", target=l, labels=(l,),
                    candidates=templates.CANDIDATES["mintrec"]) for i, l in enumerate(labels)]
  preds = [Prediction(id=str(i), task="mir", dataset="mintrec", text=a, answer=a) for i, a in enumerate(answers)]
  out = mintrec.score("mintrec", records, preds)
  assert out["scores"]["accuracy"] == pytest.approx(1 / 3)
  assert out["confusion"]["predicted"] == ["complain", "other", "other"]


def test_macro_classes_take_the_labels_spelling():
  """MIntRec's labels are capitalised ("Complain") while its candidate lists are lower case: the macro
  protocol's classes follow the labels, so a correct answer counts in both protocols."""
  labels = ["Complain", "Thank", "Thank", "Greet"]
  answers = ["Complain", "Thank", "Greet", "Greet"]
  records = [Record(id=str(i), task="mir", dataset="mintrec", split="test", target=l, labels=(l,),
                    candidates=templates.CANDIDATES["mintrec"]) for i, l in enumerate(labels)]
  preds = [Prediction(id=str(i), task="mir", dataset="mintrec", text=a, answer=a) for i, a in enumerate(answers)]
  s = mintrec.score("mintrec", records, preds)["scores"]
  classes = [c.capitalize() if c.capitalize() in labels else c for c in templates.CANDIDATES["mintrec"]]
  assert s["accuracy"] == pytest.approx(0.75)
  assert s["macro_f1"] == pytest.approx(f1_score(labels, answers, labels=classes, average="macro", zero_division=0))
  assert s["macro_f1"] > 0
