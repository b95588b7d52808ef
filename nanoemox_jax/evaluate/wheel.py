"""Emotion-wheel label normalisation of MER-UniBench (packaged tables in `evaluate/data/`, see SOURCE.txt there).

A free-form emotion word goes to a wheel's level-1 class in three steps, as in AffectGPT / Nano-EmoX
`evaluation/wheel.py` (`func_backward_case3`, metric names `case3_wheel<k>_level1`):
  1. word -> base words: `format.csv` lists inflected forms of each base word (`abandonment` -> `abandoned`);
     a base word also maps to itself. A word not listed there maps to nothing.
  2. base word -> wheel words: `synonym.xlsx` holds eight synonym runs (`word_run<i>`, `synonym_run<i>`); each
     wheel word maps to itself and every listed synonym maps to the wheel word; the runs are merged.
  3. the alphabetically first wheel word that wheel k contains gives its level-1 class (level-2 and level-3
     words map to the level-1 word above them; a blank cell repeats the row above).
Words are compared lowercased and stripped. `neutral` is in no table, so it maps to nothing. The list cells of
format.csv and synonym.csv are read with the reference's list rule (`data.sources.mer_ov.split_labels`).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nanoemox_jax.data.sources.mer_ov import split_labels

DATA = Path(__file__).parent / "data"
WHEELS = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5")
RUNS = 8


def _rows(path: Path) -> list[dict[str, str]]:
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


def _wheel_level1(path: Path) -> dict[str, str]:
  """word -> level-1 word of one wheel table (reference `read_wheel_to_map` + `func_get_wheel_cluster`).

  Nested in first-seen order as the reference builds it, so a word listed under two level-1 words maps to the
  one seen last.
  """
  tree: dict[str, dict[str, list[str]]] = {}
  level = {"level1": "", "level2": "", "level3": ""}
  for row in _rows(path):
    for key in level:
      if row[key]:
        level[key] = row[key].lower().strip()
    tree.setdefault(level["level1"], {}).setdefault(level["level2"], []).append(level["level3"])
  mapping = {}
  for level1, children in tree.items():
    mapping[level1] = level1
    for level2, leaves in children.items():
      mapping[level2] = level1
      mapping.update((leaf, level1) for leaf in leaves)
  return mapping


@dataclass(frozen=True)
class Wheels:
  """The three mappings; `normalize` applies them."""
  base_words: dict[str, frozenset[str]]  # word form -> base words (format.csv)
  wheel_words: dict[str, frozenset[str]]  # base word -> wheel words (synonym runs merged)
  level1: dict[str, dict[str, str]]  # wheel name -> wheel word -> level-1 word

  def normalize(self, label: str, wheel: str) -> str | None:
    """The level-1 class of `label` on `wheel`, or None when it maps to nothing."""
    label = label.lower().strip()
    if label not in self.base_words:
      return None
    candidates = sorted(w for base in self.base_words[label] for w in self.wheel_words.get(base, ()))
    table = self.level1[wheel]
    return next((table[w] for w in candidates if w in table), None)

  def normalize_all(self, labels: Iterable[str], wheel: str) -> set[str]:
    """The set of level-1 classes of `labels` on `wheel`; labels mapping to nothing are dropped."""
    return {c for c in (self.normalize(label, wheel) for label in labels) if c is not None}


@functools.cache
def load(root: str | Path = DATA) -> Wheels:
  """Reads format.csv, synonym.csv and wheel1..5.csv from `root` (default: the packaged tables)."""
  root = Path(root)
  base: dict[str, set[str]] = {}
  for row in _rows(root / "format.csv"):
    for form in split_labels(row["format"]):
      base.setdefault(form, set()).add(row["name"])
    base.setdefault(row["name"], set()).add(row["name"])
  synonyms: dict[str, set[str]] = {}
  for row in _rows(root / "synonym.csv"):
    for run in range(1, RUNS + 1):
      word = row[f"word_run{run}"].strip().lower()
      synonyms.setdefault(word, set()).add(word)
      for synonym in split_labels(row[f"synonym_run{run}"]):
        synonyms.setdefault(synonym.strip().lower(), set()).add(word)
  return Wheels(base_words={k: frozenset(v) for k, v in base.items()},
                wheel_words={k: frozenset(v) for k, v in synonyms.items()},
                level1={name: _wheel_level1(root / f"{name}.csv") for name in WHEELS})
