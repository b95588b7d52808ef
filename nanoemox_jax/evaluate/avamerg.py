"""AvaMERG empathic response generation: speaker-emotion accuracy, coarse hit rate, Dist-1 / Dist-2.

Reference: Nano-EmoX `evaluation/eval_merg_exp.py` (`extract_emotion_from_response`, `calculate_emotion_accuracy`,
`calculate_hitrate`, `evaluate_dist_n`) with the test ground truth of `datasets/datasets/avamerg_dataset.py`
(`get_test_name2gt`, which passes the annotated speaker emotion through `ed_emotion_projection` once).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction

DATASETS = ("avamerg",)

# The test ground truth's one-step projection (reference `ed_emotion_projection`).
TRUTH_PROJECTION = {
    "conflicted": "anxious", "vulnerability": "afraid", "helplessness": "afraid", "sadness": "sad",
    "pensive": "sentimental", "frustration": "annoyed", "weary": "tired", "anxiety": "anxious",
    "reflective": "sentimental", "upset": "disappointed", "worried": "anxious", "fear": "afraid",
    "frustrated": "sad", "fatigue": "tired", "lost": "jealous", "disappointment": "disappointed",
    "nostalgia": "nostalgic", "exhaustion": "tired", "uneasy": "anxious", "loneliness": "lonely",
    "fragile": "afraid", "confused": "jealous", "vulnerable": "afraid", "thoughtful": "sentimental",
    "stressed": "anxious", "concerned": "anxious", "tiredness": "tired", "burdened": "anxious",
    "melancholy": "sad", "overwhelmed": "anxious", "worry": "anxious", "heavy-hearted": "sad",
    "melancholic": "sad", "nervous": "anxious", "fearful": "afraid", "stress": "anxious", "confusion": "anxious",
    "inadequacy": "ashamed", "regret": "guilty", "helpless": "afraid", "concern": "anxious", "exhausted": "tired",
    "overwhelm": "anxious", "tired": "tired", "disappointed": "sad", "surprised": "surprised", "excited": "happy",
    "angry": "angry", "proud": "happy", "annoyed": "angry", "grateful": "happy", "lonely": "sad", "afraid": "fear",
    "terrified": "fear", "guilty": "sad", "impressed": "surprised", "disgusted": "disgusted", "hopeful": "happy",
    "confident": "happy", "furious": "angry", "anxious": "sad", "anticipating": "happy", "joyful": "happy",
    "nostalgic": "sad", "prepared": "happy", "jealous": "contempt", "content": "happy", "devastated": "surprised",
    "embarrassed": "sad", "caring": "happy", "sentimental": "sad", "trusting": "happy", "ashamed": "sad",
    "apprehensive": "fear", "faithful": "happy",
}

# The 8-class coarse map of the hit rate (reference `emotion_projection_map_empathe_mead`; its literal lists
# 'embarrassed' twice, and the later entry, 'disgusted', is the one Python keeps).
COARSE = {
    "neutral": "neutral", "happy": "happy", "surprised": "surprised", "angry": "angry", "fear": "fear",
    "sad": "sad", "disgusted": "disgusted", "contempt": "contempt",
    "joyful": "happy", "prepared": "happy", "content": "happy", "caring": "happy", "trusting": "happy",
    "faithful": "happy", "confident": "happy", "hopeful": "happy", "grateful": "happy", "proud": "happy",
    "excited": "happy", "anticipating": "happy",
    "lonely": "sad", "guilty": "sad", "anxious": "sad", "nostalgic": "sad", "disappointed": "sad",
    "sentimental": "sad", "ashamed": "sad", "devastated": "sad",
    "impressed": "surprised", "furious": "angry", "annoyed": "angry",
    "afraid": "fear", "terrified": "fear", "apprehensive": "fear",
    "embarrassed": "disgusted", "jealous": "contempt",
}

# Fallback keyword search, in this order (reference `emotion_keywords` of `extract_emotion_from_response`).
KEYWORDS = {
    "angry": ("angry", "anger", "furious", "mad", "irate", "enraged"),
    "annoyed": ("annoyed", "annoyance", "irritated", "irritation", "vexed", "bothered"),
    "caring": ("caring", "compassionate", "empathetic", "kind", "sympathetic", "concern"),
    "content": ("content", "contentment", "satisfied", "pleased", "peaceful", "fulfilled"),
    "disappointed": ("disappointed", "disappointment", "letdown", "discouraged", "disheartened"),
    "excited": ("excited", "excitement", "enthusiastic", "thrilled", "eager", "animated"),
    "faithful": ("faithful", "loyal", "devoted", "dedicated", "steadfast", "fidelity"),
    "frustrated": ("frustrated", "frustration", "exasperated", "aggravated", "irked"),
    "grateful": ("grateful", "gratitude", "thankful", "appreciative", "obliged"),
    "guilty": ("guilty", "guilt", "remorseful", "ashamed", "contrite", "regretful"),
    "hopeful": ("hopeful", "hope", "optimistic", "encouraged", "buoyant", "expectant", "anticipating"),
    "joyful": ("joyful", "joy", "happy", "delighted", "cheerful", "gleeful"),
    "lonely": ("lonely", "loneliness", "lonesome", "isolated", "forlorn", "desolate"),
    "loneliness": ("lonely", "loneliness", "lonesome", "isolated", "forlorn", "desolate"),
    "nostalgic": ("nostalgic", "nostalgia", "sentimental", "wistful", "yearning"),
    "overwhelmed": ("overwhelmed", "overwhelm", "swamped", "burdened", "overloaded"),
    "sad": ("sad", "sadness", "sorrowful", "melancholy", "grief", "depressed"),
    "sadness": ("sad", "sadness", "sorrowful", "melancholy", "grief", "depressed"),
    "surprised": ("surprised", "surprise", "amazed", "astonished", "shocked", "stunned"),
    "terrified": ("terrified", "terror", "frightened", "afraid", "scared", "petrified"),
    "trusting": ("trusting", "trust", "confident", "relying", "believing", "assured", "prepared"),
    "worried": ("worried", "worry", "anxious", "nervous", "concerned", "uneasy", "apprehensive"),
    "anxious": ("anxious", "anxiety", "worried", "nervous", "concerned", "uneasy"),
}
UNKNOWN = "unknown"
_SPEAKER = re.compile(r"the emotion of the speaker is\s+(\w+)")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def speaker_emotion(response: str) -> str:
  """The speaker emotion a response states: the word after "the emotion of the speaker is" inside a closed
  <think> block (lowercased); otherwise the first KEYWORDS entry one of whose keywords occurs anywhere in the
  lowercased response (substring match); otherwise 'unknown'."""
  start, end = response.find("<think>"), response.find("</think>")
  if start != -1 and end != -1 and (m := _SPEAKER.search(response[start + len("<think>"):end].lower())):
    return m.group(1)
  lower = response.lower()
  return next((emotion for emotion, words in KEYWORDS.items() if any(w in lower for w in words)), UNKNOWN)


def strip_think(response: str) -> str:
  """The response with every closed <think>...</think> block removed, stripped."""
  return _THINK.sub("", response).strip()


def distinct_n(responses: Sequence[str], n: int) -> float:
  """Dist-n averaged per response: distinct n-grams / n-grams of the lowercased, whitespace-split text; a
  response with no n-gram is left out of the average; 0.0 when none is left."""
  ratios = []
  for response in responses:
    tokens = response.strip().lower().split()
    grams = Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    if grams:
      ratios.append(len(grams) / sum(grams.values()))
  return sum(ratios) / len(ratios) if ratios else 0.0


def erg_scores(truth: Sequence[str], responses: Sequence[str], project_truth: bool = True) -> dict[str, float]:
  """{"accuracy", "hit_rate", "dist1", "dist2"} (fractions). accuracy: the extracted emotion equals the truth
  (after TRUTH_PROJECTION when `project_truth`, as the reference's test reader does); hit_rate: both sides
  fall in the same COARSE class (a label COARSE lacks is a miss); Dist over the responses without <think>
  (empty ones dropped)."""
  if len(truth) != len(responses) or not truth:
    raise ValueError(f"need equally many truths and responses (at least one), got {len(truth)} and {len(responses)}")
  gold = [TRUTH_PROJECTION.get(t, t) if project_truth else t for t in truth]
  said = [speaker_emotion(r) for r in responses]
  hits = sum(g in COARSE and s in COARSE and COARSE[g] == COARSE[s] for g, s in zip(gold, said))
  replies = [r for r in map(strip_think, responses) if r]
  return {"accuracy": sum(g == s for g, s in zip(gold, said)) / len(gold), "hit_rate": hits / len(gold),
          "dist1": distinct_n(replies, 1), "dist2": distinct_n(replies, 2)}


def score(dataset: str, records: Sequence[Record], predictions: Sequence[Prediction]) -> dict[str, Any]:
  """The ERG records of AvaMERG; `records` and `predictions` are aligned pairs, the full decoded text scored."""
  return {"main": "accuracy", "scores": erg_scores([r.labels[0] for r in records], [p.text for p in predictions])}
