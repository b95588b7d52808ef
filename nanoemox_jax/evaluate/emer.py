"""EMER emotion reason inference: clue overlap and label overlap, each a 1-10 score from the judge.

Reference: Nano-EmoX `eval_ovmerd.py` (as AffectGPT `evaluation.py`): clue overlap scores the predicted
description against the reference description in one call; label overlap first asks for the emotion words of
each description, then scores the overlap of the two summaries. The score is the first number of the reply
(0 when there is none); each metric is the mean over samples. The reference judge ran at temperature 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.evaluate.judge import (
  Judge,
  clue_overlap_prompt,
  emotion_summary_prompt,
  label_overlap_prompt,
  parse_score,
)

DATASETS = ("emer",)
SAMPLING = {"temperature": 0.0, "top_p": None}  # the reference's OpenAI call: temperature 0, nothing else set


def overlap_scores(references: Sequence[str], descriptions: Sequence[str], judge: Judge) -> dict[str, Any]:
  """{"clue_overlap", "label_overlap"} (means, 1-10 scale) and the per-sample scores."""
  if len(references) != len(descriptions) or not references:
    raise ValueError(f"need equally many references and descriptions (at least one), got {len(references)} and "
                     f"{len(descriptions)}")
  clue = [parse_score(r) for r in judge.complete(
      [clue_overlap_prompt(g, p) for g, p in zip(references, descriptions)], **SAMPLING)]
  summaries = judge.complete([emotion_summary_prompt(d) for d in [*references, *descriptions]], **SAMPLING)
  truth_summary, predicted_summary = summaries[:len(references)], summaries[len(references):]
  label = [parse_score(r) for r in judge.complete(
      [label_overlap_prompt(g, p) for g, p in zip(truth_summary, predicted_summary)], **SAMPLING)]
  return {"clue_overlap": sum(clue) / len(clue), "label_overlap": sum(label) / len(label),
          "per_sample": {"clue_overlap": clue, "label_overlap": label}}


def score(dataset: str, records: Sequence[Record], predictions: Sequence[Prediction], judge: Judge | None
          ) -> dict[str, Any]:
  """EMER; the record's target is the reference description, the prediction's answer the predicted one."""
  if judge is None:
    raise ValueError("EMER is scored by an LLM judge only; pass --judge CONFIG")
  s = overlap_scores([r.target for r in records], [p.answer for p in predictions], judge)
  return {"main": "clue_overlap", "scale": 10, "scores": {k: s[k] for k in ("clue_overlap", "label_overlap")}}
