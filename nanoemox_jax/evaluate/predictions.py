"""The predictions file that `python -m nanoemox_jax.infer --manifest ... --out preds.jsonl` writes.

One JSON object per line: {"id", "task", "dataset", "text" (the whole decoded answer), "answer" (ERG: the reply
without the <think> block; otherwise the same as text), "think" (ERG: the <think> content, else null),
"gates" ({name: weight} of the fusion gate, optional), "checkpoint" (optional)}. Several files (or one file
holding several checkpoints) give a checkpoint range; a line without a checkpoint takes its file's stem.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoemox_jax.data.manifest import TASKS


@dataclass(frozen=True)
class Prediction:
  id: str
  task: str
  dataset: str
  text: str
  answer: str
  think: str | None = None
  gates: Mapping[str, float] | None = None
  checkpoint: str = ""

  @classmethod
  def from_json(cls, obj: Mapping[str, Any], default_checkpoint: str) -> Prediction:
    missing = [k for k in ("id", "task", "dataset", "text") if k not in obj]
    if missing:
      raise KeyError(f"prediction {obj.get('id', '?')!r} lacks field(s) {missing}")
    if obj["task"] not in TASKS:
      raise ValueError(f"prediction {obj['id']!r}: task {obj['task']!r} is not one of {TASKS}")
    answer = obj.get("answer")
    return cls(id=obj["id"], task=obj["task"], dataset=obj["dataset"], text=obj["text"],
               answer=obj["text"] if answer is None else answer, think=obj.get("think"),
               gates={k: float(v) for k, v in obj["gates"].items()} if obj.get("gates") else None,
               checkpoint=str(obj.get("checkpoint") or default_checkpoint))


def expand(patterns: Iterable[str]) -> list[Path]:
  """Files named by `patterns` (paths or globs), in order, each once; a pattern matching nothing is an error."""
  paths: dict[Path, None] = {}
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches or not all(Path(m).is_file() for m in matches):
      raise FileNotFoundError(f"no predictions file matches {pattern!r}")
    paths.update((Path(m), None) for m in matches)
  return list(paths)


def read(patterns: Iterable[str]) -> dict[str, list[Prediction]]:
  """checkpoint -> its predictions, checkpoints in natural order (`ckpt_9` before `ckpt_10`). Within one
  checkpoint an id may appear once per task."""
  by_checkpoint: dict[str, list[Prediction]] = {}
  seen: set[tuple[str, str, str]] = set()
  for path in expand(patterns):
    with open(path, encoding="utf-8") as f:
      for lineno, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          p = Prediction.from_json(json.loads(line), path.stem)
        except (ValueError, KeyError) as e:
          raise ValueError(f"{path}:{lineno}: {e}") from None
        if (p.checkpoint, p.task, p.id) in seen:
          raise ValueError(f"{path}:{lineno}: duplicate prediction for id {p.id!r} ({p.task}, checkpoint {p.checkpoint!r})")
        seen.add((p.checkpoint, p.task, p.id))
        by_checkpoint.setdefault(p.checkpoint, []).append(p)
  return {k: by_checkpoint[k] for k in sorted(by_checkpoint, key=natural_key)}


def natural_key(name: str) -> list[Any]:
  """Sort key comparing digit runs as numbers."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
