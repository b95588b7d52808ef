"""AvaMERG ERG scores against hand-computed cases, with the reference's quirks."""

from __future__ import annotations

import pytest

from nanoemox_jax.evaluate import avamerg


def _reply(emotion: str, text: str) -> str:
  return (f"<think>Firstly, the event scenario of this conversation is: moving house\nSecondly, the emotion of the "
          f"speaker is {emotion}\nThirdly, the emotion cause is x\nFourthly, the goal to response is y</think>\n {text}")


def test_speaker_emotion():
  assert avamerg.speaker_emotion(_reply("Anxious", "ok")) == "anxious"
  assert avamerg.speaker_emotion(_reply("heavy-hearted", "ok")) == "heavy"  # one word (\w+)
  # no <think>: first keyword entry found as a substring anywhere, in the table's order
  assert avamerg.speaker_emotion("I am so thankful for you.") == "grateful"
  assert avamerg.speaker_emotion("I made some tea.") == "angry"  # 'mad' inside 'made'
  assert avamerg.speaker_emotion("<think>no pattern, but happy</think> fine") == "joyful"
  assert avamerg.speaker_emotion("Nothing here.") == "unknown"


def test_distinct_n():
  responses = [avamerg.strip_think("<think>x</think>\n A b a B"), "Hello", avamerg.strip_think("<think>y</think>")]
  kept = [r for r in responses if r]
  # 'a b a b': 2 distinct / 4 unigrams, 2 distinct / 3 bigrams; 'hello': 1/1 unigram, no bigram (left out)
  assert avamerg.distinct_n(kept, 1) == pytest.approx((0.5 + 1.0) / 2)
  assert avamerg.distinct_n(kept, 2) == pytest.approx(2 / 3)
  assert avamerg.distinct_n([], 1) == 0.0


def test_erg_scores_by_hand():
  truth = ["anxious", "anxious", "sad", "sad", "weary"]
  replies = [_reply("anxious", "a b"), _reply("anxious", "a b"), _reply("furious", "a b"),
             _reply("nostalgic", "a b"), _reply("tired", "a b")]
  raw = avamerg.erg_scores(truth, replies, project_truth=False)
  # exact: 2 of 5; coarse: anxious/anxious (sad=sad) x2, sad/furious miss, sad/nostalgic hit, weary unmapped: miss
  assert raw["accuracy"] == pytest.approx(2 / 5) and raw["hit_rate"] == pytest.approx(3 / 5)
  projected = avamerg.erg_scores(truth, replies)
  # the reference's test truth: anxious -> sad, weary -> tired; then only 'tired' matches exactly; 'tired' has
  # no coarse class (a miss, not a crash); sad/anxious -> sad/sad hits
  assert projected["accuracy"] == pytest.approx(1 / 5) and projected["hit_rate"] == pytest.approx(3 / 5)
  assert projected["dist1"] == 1.0 and projected["dist2"] == 1.0
