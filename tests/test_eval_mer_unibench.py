"""MER-UniBench metrics against hand-computed values (tiny wheel tables) and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.evaluate import mer_unibench as mu
from nanoemox_jax.evaluate import wheel
from tests.test_eval_wheel import make_tables


@pytest.fixture
def tables(tmp_path):
  return wheel.load(make_tables(tmp_path))


def test_answer_labels():
  assert mu.answer_labels("The character's emotional state is happy, sad, and angry.") == ["happy", "sad", "angry"]
  assert mu.answer_labels("happy, sad") == ["happy", "sad"]
  assert mu.answer_labels("The most likely label is [worried].") == ["worried"]
  assert mu.answer_labels("") == []


def test_hit_rate_by_hand(tables):
  truth = [["happy"], ["sad"], ["neutral"], ["anger"]]
  pred = [["happiness", "sad"], ["happy"], ["happy"], ["angry"]]
  s = mu.hit_rate(truth, pred, tables)
  # wheel 1: hits 1, 0, (neutral skipped), 1 -> 2/3; wheels 2-5 have no 'angry' -> that sample skipped too -> 1/2
  assert s["counted"] == [3, 2, 2, 2, 2]
  assert s["per_wheel"] == pytest.approx([2 / 3, 0.5, 0.5, 0.5, 0.5])
  assert s["hit_rate"] == pytest.approx((2 / 3 + 4 * 0.5) / 5)


def test_hit_rate_needs_a_countable_sample(tables):
  with pytest.raises(ValueError, match="no sample left"):
    mu.hit_rate([["neutral"]], [["happy"]], tables)


def test_ov_scores_by_hand(tables):
  truth = [["happy", "sad"], ["neutral"], ["fear"], ["anger", "sad"]]
  pred = [["happiness"], ["sad"], [], ["sad", "happy", "angry"]]
  s = mu.ov_scores(truth, pred, tables)
  # wheel 1: P = (1 + 0 + 2/3) / 3, R = (1/2 + 0 + 1) / 3; wheels 2-5 (no rage): P = (1 + 0 + 1/2) / 3, R = 1/2
  p1, r1 = (1 + 0 + 2 / 3) / 3, (0.5 + 0 + 1) / 3
  p2, r2 = (1 + 0 + 0.5) / 3, 0.5
  f1, f2 = 2 * p1 * r1 / (p1 + r1), 2 * p2 * r2 / (p2 + r2)
  assert s["per_wheel_f1"] == pytest.approx([f1] + [f2] * 4)
  assert s["f1"] == pytest.approx((f1 + 4 * f2) / 5)  # the mean of per-wheel F, not F of the mean P and R
  assert s["precision"] == pytest.approx((p1 + 4 * p2) / 5) and s["recall"] == pytest.approx((r1 + 4 * r2) / 5)


def test_ov_scores_zero_when_nothing_maps(tables):
  assert mu.ov_scores([["sad"]], [["xyzzy"]], tables)["f1"] == 0.0


def test_sentiment_scores_match_sklearn():
  rng = np.random.default_rng(0)
  valence = np.round(rng.uniform(-3, 3, 200), 1)
  valence[::7] = 0.0
  replies = rng.choice(["positive", "negative", "neutral", "Positive", "mixed"], 200)
  s = mu.sentiment_scores(valence.tolist(), [mu.sentiment_value(r) for r in replies])
  # the reference pipeline, literally: map replies, drop zero truths, binarise with > 0, sklearn weighted F1
  preds = np.array([{"positive": 1, "negative": -1}.get(r, 0) for r in replies])
  keep = valence != 0
  assert s["counted"] == keep.sum()
  assert s["weighted_f1"] == pytest.approx(f1_score(valence[keep] > 0, preds[keep] > 0, average="weighted"))
  assert s["accuracy"] == pytest.approx(accuracy_score(valence[keep] > 0, preds[keep] > 0))


def _pair(i: int, dataset: str, task: str, labels: tuple[str, ...], answer: str, **meta):
  record = Record(id=f"s{i}", task=task, dataset=dataset, split="test", target="", labels=labels,
                  candidates=("happy", "sad", "neutral", "anger"), meta=meta)
  return record, Prediction(id=f"s{i}", task=task, dataset=dataset, text=answer, answer=answer)


def test_score_without_judge(tables):
  pairs = [_pair(0, "iemocap", "mer", ("happy",), "The character's emotional state is joy? no, happiness."),
           _pair(1, "iemocap", "mer", ("sad",), "The character's emotional state is glad."),
           _pair(2, "iemocap", "mer", ("neutral",), "The character's emotional state is calm.")]
  records, preds = zip(*pairs)
  out = mu.score("iemocap", records, preds, None, tables)
  # sample 0's list is ['joy? no', 'happiness'] -> {joy}: hit; sample 1: glad -> sorrow = sad's class: hit
  assert out["main"] == "hit_rate" and out["scores"]["hit_rate"] == pytest.approx(1.0)
  assert out["confusion"]["predicted"] == ["happy", "sad", "other"]
  pairs = [_pair(0, "mosi", "msa", ("positive",), "The character's sentiment state is positive.", valence=1.2),
           _pair(1, "mosi", "msa", ("negative",), "The character's sentiment state is neutral.", valence=-0.4),
           _pair(2, "mosi", "msa", ("neutral",), "happy", valence=0.0)]
  records, preds = zip(*pairs)
  out = mu.score("mosi", records, preds, None, tables)
  assert out["counted"] == 2 and out["scores"]["accuracy"] == 1.0 and out["scores"]["weighted_f1"] == 1.0
