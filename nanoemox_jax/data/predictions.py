"""Predictions: one model answer per manifest record, stored as JSONL (`preds.jsonl`).

`python -m nanoemox_jax.infer --manifest ... --out preds.jsonl` appends them; `python -m nanoemox_jax.evaluate`
reads them. One JSON object per line: {"id", "task", "dataset", "text" (the whole decoded answer), "answer" (ERG:
the reply without the <think> block; otherwise the same as text), "think" (ERG: the <think> content, else null),
"gates" ({name: weight} of the fusion gate, or null), "checkpoint"}. On reading, "answer", "think", "gates" and
"checkpoint" are optional; several files (or one file holding several checkpoints) give a checkpoint range, and a
line without a checkpoint takes its file's stem.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoemox_jax.data.manifest import TASKS


@dataclass(frozen=True)
class Prediction:
  """One record's answer (JSON-serialisable through `to_json` / `from_json`). gates: fusion expert name ->
  weight, None without gated fusion or when the fusion token was masked (video or audio missing); checkpoint:
  the model that answered."""
  id: str
  task: str
  dataset: str
  text: str
  answer: str
  think: str | None = None
  gates: Mapping[str, float] | None = None
  checkpoint: str = ""

  @classmethod
  def from_text(cls, id: str, task: str, dataset: str, text: str, gates: Mapping[str, float] | None = None,
                checkpoint: str = "") -> Prediction:
    """The prediction of a decoded answer `text`: ERG's `<think>` block split off (`split_think`)."""
    think, answer = split_think(text) if task == "erg" else (None, text)
    return cls(id, task, dataset, text, answer, think, gates, checkpoint)

  def to_json(self) -> dict[str, Any]:
    return {"id": self.id, "task": self.task, "dataset": self.dataset, "text": self.text, "answer": self.answer,
            "think": self.think, "gates": None if self.gates is None else dict(self.gates),
            "checkpoint": self.checkpoint}

  @classmethod
  def from_json(cls, obj: Mapping[str, Any], default_checkpoint: str = "") -> Prediction:
    """The line's prediction; a missing answer is the text, a missing or empty checkpoint `default_checkpoint`."""
    missing = [k for k in ("id", "task", "dataset", "text") if k not in obj]
    if missing:
      raise KeyError(f"prediction {obj.get('id', '?')!r} lacks field(s) {missing}")
    if obj["task"] not in TASKS:
      raise ValueError(f"prediction {obj['id']!r}: task {obj['task']!r} is not one of {TASKS}")
    answer, gates = obj.get("answer"), obj.get("gates")
    return cls(id=obj["id"], task=obj["task"], dataset=obj["dataset"], text=obj["text"],
               answer=obj["text"] if answer is None else answer, think=obj.get("think"),
               gates=None if gates is None else {k: float(v) for k, v in gates.items()},
               checkpoint=str(obj.get("checkpoint") or default_checkpoint))


def split_think(text: str) -> tuple[str | None, str]:
  """(think, reply) of an ERG answer `<think>chain of empathy</think> reply`: (None, text) without a `<think>`
  block; an unclosed block (cut by max_new_tokens) is all think and leaves an empty reply."""
  head, opened, rest = text.partition("<think>")
  if not opened:
    return None, text
  think, closed, reply = rest.partition("</think>")
  return think.strip(), f"{head} {reply}".strip() if closed else head.strip()


def append_jsonl(predictions: Iterable[Prediction], path: str | Path) -> None:
  """Appends one JSON line per prediction (UTF-8, non-ASCII kept) and syncs the file to disk, so that a killed
  run keeps every batch appended before."""
  with open(path, "a", encoding="utf-8") as f:
    f.writelines(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in predictions)
    f.flush()
    os.fsync(f.fileno())


def expand(patterns: Iterable[str]) -> list[Path]:
  """Files named by `patterns` (paths or globs), in order, each once; a pattern matching nothing is an error."""
  paths: dict[Path, None] = {}
  for pattern in patterns:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not matches or not all(Path(m).is_file() for m in matches):
      raise FileNotFoundError(f"no predictions file matches {pattern!r}")
    paths.update((Path(m), None) for m in matches)
  return list(paths)


def read_checkpoints(patterns: Iterable[str]) -> dict[str, list[Prediction]]:
  """checkpoint -> its predictions from the files of `patterns` (see `expand`), checkpoints in natural order
  (`ckpt_9` before `ckpt_10`). Within one checkpoint an id may appear once per task."""
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
          raise ValueError(f"{path}:{lineno}: duplicate prediction for id {p.id!r} ({p.task}, "
                           f"checkpoint {p.checkpoint!r})")
        seen.add((p.checkpoint, p.task, p.id))
        by_checkpoint.setdefault(p.checkpoint, []).append(p)
  return {k: by_checkpoint[k] for k in sorted(by_checkpoint, key=natural_key)}


def natural_key(name: str) -> list[Any]:
  """Sort key comparing digit runs as numbers."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
