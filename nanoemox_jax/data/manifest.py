"""Manifest records: one training or evaluation item, whatever dataset it came from, stored as JSONL.

A record holds what the prompt builder (`templates.py`) and the media loader need: the task, the
subtitle and dialogue history, the target answer, the gold label(s) and candidate labels, and the
media paths. `video`/`audio` of None mean the dataset has no such file (audio may then come from the
video's own track); a path may point to a file that is missing (prepare lists those).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# mer: closed-set emotion; ovmer: open-vocabulary emotion; msa: sentiment; eri: emotion reasoning;
# mir: intent; erg: empathic reply; erg_emotion: AvaMERG's auxiliary speaker-emotion item.
TASKS = ("mer", "ovmer", "msa", "eri", "mir", "erg", "erg_emotion")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Turn:
  """One dialogue-history turn."""
  role: str
  text: str


@dataclass(frozen=True)
class Record:
  """One manifest item (JSON-serialisable through `to_json` / `from_json`)."""
  id: str
  task: str
  dataset: str
  split: str
  target: str
  labels: tuple[str, ...] = ()
  candidates: tuple[str, ...] = ()
  subtitle: str = ""
  history: tuple[Turn, ...] = ()
  video: str | None = None
  audio: str | None = None
  meta: Mapping[str, Any] = field(default_factory=dict)

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"record {self.id!r}: task {self.task!r} is not one of {TASKS}")
    if self.split not in SPLITS:
      raise ValueError(f"record {self.id!r}: split {self.split!r} is not one of {SPLITS}")

  def to_json(self) -> dict[str, Any]:
    return {"id": self.id, "task": self.task, "dataset": self.dataset, "split": self.split,
            "target": self.target, "labels": list(self.labels), "candidates": list(self.candidates),
            "subtitle": self.subtitle, "history": [{"role": t.role, "text": t.text} for t in self.history],
            "video": self.video, "audio": self.audio, "meta": dict(self.meta)}

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> Record:
    missing = [k for k in ("id", "task", "dataset", "split", "target") if k not in obj]
    if missing:
      raise KeyError(f"manifest record {obj.get('id', '?')!r} lacks field(s) {missing}")
    return cls(id=obj["id"], task=obj["task"], dataset=obj["dataset"], split=obj["split"],
               target=obj["target"], labels=tuple(obj.get("labels", ())),
               candidates=tuple(obj.get("candidates", ())), subtitle=obj.get("subtitle", ""),
               history=tuple(Turn(t["role"], t["text"]) for t in obj.get("history", ())),
               video=obj.get("video"), audio=obj.get("audio"), meta=dict(obj.get("meta", {})))


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
  """Writes one JSON object per line (UTF-8, non-ASCII kept); returns the count."""
  n = 0
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
      n += 1
  return n


def read_jsonl(path: str | Path) -> list[Record]:
  records = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(Record.from_json(json.loads(line)))
        except (ValueError, KeyError) as e:
          raise ValueError(f"{path}:{lineno}: {e}") from None
  return records
