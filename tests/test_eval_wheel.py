"""Emotion-wheel normalisation: the reference's three-step mapping on hand-made tables, and the packaged tables."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nanoemox_jax.data.sources import mer_ov
from nanoemox_jax.evaluate import mer_unibench, wheel
from nanoemox_jax.evaluate.wheel_tables import convert

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "emotion_wheel"


def _write(path: Path, rows: list[list[str]]) -> None:
  with open(path, "w", encoding="utf-8", newline="") as f:
    csv.writer(f).writerows(rows)


def make_tables(root: Path) -> Path:
  """Tiny tables. Forms: happiness->happy, sadness->sad, anger->angry, and 'fear' listed as a form of 'fearless'
  (as the real format.csv does). Synonyms: glad->happy, courageous/fearless->brave, fear->scared. Wheel 1: Joy{Happy{Glad, Cheerful}}, Sorrow{Down{Sad}},
  Bold{Brave{Courageous}}, Fright{Scared{Fearful}}, Rage{Angry{Furious}}; 'glad' again under Sorrow (listed later,
  so it wins). Wheels 2-5 are wheel 1 without Rage (angry maps to nothing there)."""
  _write(root / "format.csv", [["name", "format"], ["happy", "happiness,happily"], ["sad", "sadness"],
                               ["fear", ""], ["fearless", "fear"], ["angry", "anger"], ["brave", ""], ["glad", ""],
                               ["scared", ""], ["lonely", ""]])
  runs = [[f"word_run{i}", f"synonym_run{i}"] for i in range(1, 9)]
  header = [c for pair in runs for c in pair]
  rows = [("Happy", "glad"), ("brave", "courageous, fearless"), ("scared", "fear"), ("sad", ""), ("angry", ""),
          ("glad", "")]
  # run 1 holds the synonyms; runs 2-8 repeat the word alone (lowercased)
  _write(root / "synonym.csv", [header] + [[w, s] + [w.lower(), ""] * 7 for w, s in rows])
  wheel1 = [["level1", "level2", "level3"], ["Joy", "Happy", "Glad"], ["", "", "Cheerful"], ["Sorrow", "Down", "Sad"],
            ["", "", "Glad"], ["Bold", "Brave", "Courageous"], ["Fright", "Scared", "Fearful"]]
  _write(root / "wheel1.csv", wheel1 + [["Rage", "Angry", "Furious"]])
  for k in range(2, 6):
    _write(root / f"wheel{k}.csv", wheel1)
  return root


@pytest.fixture
def tables(tmp_path):
  wheel.load.cache_clear()
  return wheel.load(make_tables(tmp_path))


def test_tables_answers_and_the_ov_reader_share_one_list_rule():
  # the reference's string_to_list (cases in tests/test_sources.py), imported from the OV-MER reader
  assert wheel.split_labels is mer_ov.split_labels is mer_unibench.split_labels
  assert wheel.split_labels("[happy, 'sad', \"angry\"]") == ["happy", "sad", "angry"]
  assert wheel.split_labels("happy,  ,sad ") == ["happy", "sad"]
  assert wheel.split_labels("[]") == [] and wheel.split_labels("  ") == []
  # '[], ["confused"]': the quote splits the label off its bracket (it was kept as '["confused' before); without
  # quotes the reference keeps '[confused'
  assert mer_unibench.answer_labels('The emotional state is [], ["confused"].') == ["]", "[", "confused"]
  assert mer_unibench.answer_labels("The emotional state is [], [confused].") == ["]", "[confused"]


def test_three_step_mapping(tables):
  # happiness -> happy (form) -> {happy} (self) -> Joy on wheel 1
  assert tables.normalize("Happiness ", "wheel1") == "joy"
  # glad is listed under Joy then under Sorrow: the later row wins, as in the reference's dict build
  assert tables.normalize("glad", "wheel1") == "sorrow"
  # happy is a wheel word of its own (synonyms point to a word, not from it)
  assert tables.normalize("happy", "wheel1") == "joy"
  # sadness -> sad -> Down's level 1
  assert tables.normalize("sadness", "wheel3") == "sorrow"
  # fear -> bases {fear, fearless} -> wheel words {scared, brave}; sorted, 'brave' comes first -> Bold
  assert tables.normalize("fear", "wheel1") == "bold"
  # fearless -> base {fearless} -> wheel words {brave} -> Bold; scared -> itself -> Fright
  assert tables.normalize("fearless", "wheel1") == "bold"
  assert tables.normalize("scared", "wheel4") == "fright"
  # angry exists only on wheel 1; neutral and unknown words map to nothing
  assert tables.normalize("anger", "wheel1") == "rage"
  assert tables.normalize("anger", "wheel2") is None
  assert tables.normalize("neutral", "wheel1") is None
  assert tables.normalize("xyzzy", "wheel1") is None
  # lonely is a base word with no synonym row: maps to nothing (the reference would raise KeyError here)
  assert tables.normalize("lonely", "wheel1") is None
  assert tables.normalize_all(["sad", "neutral", "sadness", "anger"], "wheel1") == {"sorrow", "rage"}


@pytest.fixture
def packaged():
  wheel.load.cache_clear()
  return wheel.load()


def test_packaged_tables(packaged):
  # the reference's own comments: 1,255 synonym-expanded labels, 7,386 word forms
  assert len(packaged.wheel_words) == 1255 and len(packaged.base_words) == 7386
  assert [packaged.normalize("neutral", w) for w in wheel.WHEELS] == [None] * 5
  assert [packaged.normalize("sadness", w) for w in wheel.WHEELS] == ["sad"] * 5
  assert [packaged.normalize("anger", w) for w in wheel.WHEELS] == ["mad", "angry", "mad", "anger", "mad"]
  # the 'fearless' form of 'fear' sends fear to 'courageous' (-> happy) on wheel 2
  assert packaged.normalize("fear", "wheel2") == "happy"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared emotion-wheel xlsx files absent")
def test_packaged_tables_match_the_authors_xlsx(tmp_path):
  for path in convert(SHARED, tmp_path):
    assert path.read_bytes() == (wheel.DATA / path.name).read_bytes(), path.name
