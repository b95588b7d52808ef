"""Broken annotation files through `python -m nanoemox_jax.data.prepare`, for every reader family of
`nanoemox_jax/data/sources/` (the corpus is made here, at test time, by damaging small files written in each
upstream format).

Every case has one of three outcomes, named in its parametrisation:
- ERROR: exit 2 and exactly one stderr line `error: <file>[:line | item ...]: ...` naming the file, the line (CSV/
  TSV/TXT) or item (JSON/npz) and the field;
- SKIP: the documented per-row skip: a label outside the dataset's candidates leaves its row out; prepare exits 0,
  counts it (`skipped_rows` in the summary, which lists it) and warns on stderr;
- OK: documented acceptance (a BOM, CRLF, blank lines, an extra column, a Windows path, an empty openset = neutral,
  a repeated media name of the authors' JSON kept as `name#2`, missing media listed, ...): exit 0, the record count
  given.
Never a traceback. In-process calls of `prepare.main` (capsys), plus one real `python -m` run per family.
Cases per family: see `test_case_counts` (at least 30 each).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nanoemox_jax.data.prepare import main as prepare
from tests.test_eval_cli_errors import (LABELS, PREDICTIONS, _args, _fails, _line, _prediction, _record, _write,
                                        good)  # noqa: F401 (the fixture)
from tests.test_eval_cli_errors import _run as _run_evaluate

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
  """damage(folder) edits the good files in `folder` and returns the --src to pass (None: the main file). expect:
  ("error", file name, fragment) | ("skip", records, skipped) | ("ok", records)."""
  name: str
  damage: Callable[[Path], Path | None]
  expect: tuple


@dataclass
class Family:
  dataset: str
  main: str  # the damaged file, relative to the folder
  write: Callable[[Path], None]  # writes the good files
  records: int  # records of the good files
  split: str | None = None
  cases: list[Case] = field(default_factory=list)
  name: str = ""  # the family's name in the parametrisation (default: the dataset)

  def __post_init__(self):
    self.name = self.name or self.dataset


def _edit(name: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
  def damage(folder: Path) -> None:
    path = folder / name
    path.write_bytes(fn(path.read_bytes()))
  return damage


def _replace(name: str, old: str, new: str | bytes, count: int = 1) -> Callable[[Path], None]:
  def fn(data: bytes) -> bytes:
    assert old.encode() in data, old
    return data.replace(old.encode(), new if isinstance(new, bytes) else new.encode(), count)
  return _edit(name, fn)


def _put(name: str, content: str | bytes) -> Callable[[Path], None]:
  return _edit(name, lambda _: content if isinstance(content, bytes) else content.encode())


def _write_rows(path: Path, rows: list[list[str]], delimiter: str = ",") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.StringIO()
  csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
  path.write_text(buf.getvalue(), encoding="utf-8")


def _error(file: str, fragment: str) -> tuple:
  return ("error", file, fragment)


# ------------------------------------------------------------------------------------------ CSV / TSV families

@dataclass(frozen=True)
class Table:
  """A CSV/TSV family: header + 3 rows; `id` the column of the item name (the error's field), `label` its label
  column and kind: "candidates" (unknown -> skip), "any" (non-empty, anything), "openset" (empty = neutral),
  "number" (a finite valence)."""
  dataset: str
  file: str
  rows: tuple[tuple[str, ...], ...]
  id: str
  label: str
  kind: str
  unknown: str  # a label outside the candidates
  split: str | None = None
  delimiter: str = ","
  number: str | None = None  # a numeric column that must be finite
  text: str | None = None  # a free-text column (may hold a quoted newline)


TABLES = [
    Table("mer2023", "test1-label.csv", (("name", "discrete", "valence"), ("sample_00000001", "happy", "1.5"),
                                         ("sample_00000002", "sad", "-2"), ("sample_00000003", "worried", "0")),
          "name", "discrete", "candidates", "joyful", number="valence"),
    Table("meld", "test_sent_emo.csv",
          (("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"),
           ("1", "Oh my God, he's lost it.", "Phoebe", "sadness", "negative", "0", "0"),
           ("2", "What?", "Monica", "surprise", "negative", "0", "1"),
           ("3", "Or! Or, we could go to the bank.", "Ross", "neutral", "neutral", "1", "0")),
          "Utterance_ID", "Emotion", "candidates", "happy", text="Utterance"),
    Table("sims", "label.csv", (("video_id", "clip_id", "text", "label", "annotation", "mode"),
                                ("video_0001", "1", "还行", "0.6", "Positive", "test"),
                                ("video_0001", "2", "不好", "-0.8", "Negative", "test"),
                                ("video_0002", "1", "一般", "0.0", "Neutral", "test")),
          "clip_id", "label", "number", "positive", number="label", text="text"),
    Table("emer", "gt-eng.csv", (("names", "emotions", "subtitles", "reasons"),
                                 ("sample_00000648", "angry", "Don't talk to me.", "He roared, so he is angry."),
                                 ("sample_00000680", "happy", "Thank you.", "She smiled, so she is happy."),
                                 ("sample_00000700", "sad", "", "He sighed, so he is sad.")),
          "names", "emotions", "any", "bewildered", text="reasons"),
    Table("ovmerd", "track2_train_ovmerd.csv", (("name", "openset"), ("sample_00000007", "['worried', 'tense']"),
                                                ("sample_00000008", "sad, tired"), ("sample_00000009", "[]")),
          "name", "openset", "openset", "flabbergasted", text="openset"),
    Table("mintrec", "test.tsv", (("season", "episode", "clip", "text", "label"),
                                  ("S05", "E15", "248", "that's a really good point.", "Praise"),
                                  ("S05", "E18", "305", "you know, who's a walking glockenspiel.", "Joke"),
                                  ("S04", "E01", "12", "sorry about that", "Apologise")),
          "clip", "label", "candidates", "Ponder", split="test", delimiter="\t", text="text"),
]


def _table_cases(t: Table) -> list[Case]:
  header, rows = list(t.rows[0]), [list(r) for r in t.rows[1:]]
  d, f, n = t.delimiter, t.file, len(rows)
  other = "," if d == "\t" else ";"
  i_id, i_label = header.index(t.id), header.index(t.label)

  def rows_put(fn: Callable[[list[list[str]]], list[list[str]]]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
      _write_rows(folder / f, fn([list(header)] + [list(r) for r in rows]), d)
    return damage

  def cell(row: int, col: int, value: str) -> Callable[[Path], None]:
    def fn(table: list[list[str]]) -> list[list[str]]:
      table[row][col] = value
      return table
    return rows_put(fn)

  text = "".join(d.join(r) + "\n" for r in [header] + rows)
  label_empty = {"openset": ("ok", n), "number": _error(f, f":3: field {t.label!r}: empty")}.get(
      t.kind, _error(f, f":3: field {t.label!r}: empty"))
  label_unknown = {"candidates": ("skip", n - 1, 1), "number": _error(f, f":3: field {t.label!r}: not a number")}.get(
      t.kind, ("ok", n))
  cases = [
      Case("empty file", _put(f, b""), _error(f, ": empty file; expected a header")),
      Case("only blank lines", _put(f, "\n\n  \n".replace("  ", "")), _error(f, ": empty file")),
      Case("header only", _put(f, d.join(header) + "\n"), _error(f, f": no {t.dataset} records")),
      Case("not UTF-8 (Latin-1 byte)", _replace(f, rows[1][i_label], rows[1][i_label].encode() + b"\xe9"),
           _error(f, ":3: not UTF-8 text")),
      Case("UTF-16 file", _edit(f, lambda b: b.decode().encode("utf-16")), _error(f, ":1: not UTF-8 text")),
      Case("binary garbage", _put(f, bytes(range(256)) * 3), _error(f, ":2: not UTF-8 text")),
      Case("UTF-8 BOM", _edit(f, lambda b: b"\xef\xbb\xbf" + b), ("ok", n)),
      Case("CRLF line ends", _edit(f, lambda b: b.replace(b"\n", b"\r\n")), ("ok", n)),
      Case("CR line ends", _edit(f, lambda b: b.replace(b"\n", b"\r")), ("ok", n)),
      Case("blank lines between rows", _edit(f, lambda b: b.replace(b"\n", b"\n\n")), ("ok", n)),
      Case("wrong delimiter", _put(f, text.replace(d, other)),
           _error(f, ":1: missing column(s)")),
      Case("id column renamed", cell(0, i_id, t.id.upper() + "_"), _error(f, ":1: missing column(s)")),
      Case("space after the delimiter in the header", _put(f, text.replace(d, d + " ", len(header) - 1)),
           _error(f, ":1: missing column(s)")),
      Case("short row", rows_put(lambda tb: tb[:2] + [tb[2][:-1]] + tb[3:]),
           _error(f, f":3: {len(header) - 1} cells, the header has {len(header)}")),
      Case("extra cell in a row", rows_put(lambda tb: tb[:2] + [tb[2] + ["x"]] + tb[3:]),
           _error(f, f":3: {len(header) + 1} cells, the header has {len(header)}")),
      Case("extra column everywhere", rows_put(lambda tb: [r + ["extra"] for r in tb]), ("ok", n)),
      Case("columns in another order", rows_put(lambda tb: [r[::-1] for r in tb]), ("ok", n)),
      Case("empty id", cell(2, i_id, ""), _error(f, f":3: field {t.id!r}: empty")),
      Case("blank id", cell(2, i_id, "   "), _error(f, f":3: field {t.id!r}: empty")),
      Case("empty label", cell(2, i_label, ""), label_empty),
      Case("unknown label", cell(2, i_label, t.unknown), label_unknown),
      Case("duplicate id", rows_put(lambda tb: tb + [tb[1]]), _error(f, f":5: field {t.id!r}: item ")),
      Case("header row again (files joined)", rows_put(lambda tb: tb + [tb[0]]), _error(f, ":5: the header row again")),
      Case("NUL byte", _replace(f, rows[1][i_label], rows[1][i_label] + "\x00"),
           _error(f, f":3: field {t.label!r}: a NUL character")),
      Case("huge cell (200,000 characters)", cell(1, len(header) - 1, "x" * 200_000),
           _error(f, ":2: not readable CSV (field larger than field limit")),
      Case("truncated in the last row", _edit(f, lambda b: b[:b.rstrip().rfind(d.encode())]), _error(f, ":4: ")),
      Case("quote left open", _edit(f, lambda b: b.replace(rows[0][i_id].encode(), b'"' + rows[0][i_id].encode())),
           _error(f, ":2: not readable CSV (")),
      Case("a JSON file instead", _put(f, json.dumps([dict(zip(header, r)) for r in rows])),
           _error(f, ":1: missing column(s)")),
      Case("src missing", lambda folder: folder / "gone" / f, ("error", "gone", ": no such file or folder")),
      Case("folder without the file", lambda folder: (folder / "empty").mkdir() or folder / "empty",
           ("error", "empty", "not found")),
      Case("media missing (listed)", lambda folder: None, ("ok", n)),
  ]
  if t.text:
    cases.append(Case("quoted newline inside a cell", cell(1, header.index(t.text), "['line one',\n'two']"), ("ok", n)))
  if t.number:
    i_num = header.index(t.number)
    cases += [Case(f"{t.number} NaN", cell(1, i_num, "nan"), _error(f, f":2: field {t.number!r}: not a finite number")),
              Case(f"{t.number} inf", cell(1, i_num, "-inf"), _error(f, f":2: field {t.number!r}: not a finite")),
              Case(f"{t.number} text", cell(1, i_num, "high"), _error(f, f":2: field {t.number!r}: not a number"))]
  if t.kind == "candidates":
    cases += [Case("label in capitals", cell(1, i_label, rows[0][i_label].upper()), ("ok", n)),
              Case("every label unknown", rows_put(lambda tb: [tb[0]] + [r[:i_label] + [t.unknown] + r[i_label + 1:]
                                                                         for r in tb[1:]]),
                   _error(f, f": no {t.dataset} records for split {t.split or 'default'} (3 rows left out"))]
  return cases


def _table_family(t: Table) -> Family:
  def write(folder: Path) -> None:
    _write_rows(folder / t.file, [list(r) for r in t.rows], t.delimiter)
  return Family(t.dataset, t.file, write, len(t.rows) - 1, t.split, _table_cases(t))


def _family_extras() -> dict[str, list[Case]]:
  """Cases of one table family only."""
  return {
      "sims": [Case("unknown mode", _replace("label.csv", ",test\n", ",tset\n"),
                    _error("label.csv", ":2: field 'mode': 'tset' is not one of train, valid, test")),
               Case("rows of another mode are still checked", _replace("label.csv", "-0.8,Negative,test",
                                                                       "nan,Negative,train"),
                    _error("label.csv", ":3: field 'label': not a finite number"))],
      "ovmerd": [
          Case("reason file: not UTF-8", lambda p: (p / "track3_train_ovmerd.csv").write_bytes(b"name,reason\nx,\xff\n"),
               _error("track3_train_ovmerd.csv", ":2: not UTF-8")),
          Case("reason file: duplicate name", lambda p: _write_rows(p / "track3_train_ovmerd.csv", [
              ["name", "reason"], ["sample_00000007", "a"], ["sample_00000007", "b"]]),
               _error("track3_train_ovmerd.csv", ":3: field 'name': item 'sample_00000007' again")),
          Case("subtitle file: missing column", lambda p: _write_rows(p / "subtitle_chieng.csv", [
              ["name", "chinese"], ["sample_00000007", "好"]]), _error("subtitle_chieng.csv", ":1: missing column")),
          Case("subtitle file: short row", lambda p: _write_rows(p / "subtitle_chieng.csv", [
              ["name", "chinese", "english"], ["sample_00000007", "好"]]),
               _error("subtitle_chieng.csv", ":2: 2 cells, the header has 3")),
          Case("openset with a stray bracket", _replace("track2_train_ovmerd.csv", "sad, tired", "[sad, tired"),
               ("ok", 3)),
      ],
      "mintrec": [
          Case("MIntRec2.0 TSV: out-of-scope UNK left out",
               lambda p: _mintrec2(p, [["0", "3", "hi", "Greet"], ["0", "4", "hm", "UNK"]]), ("skip", 1, 1)),
          Case("MIntRec2.0 TSV: empty utterance", lambda p: _mintrec2(p, [["0", "", "hi", "Greet"]]),
               _error("test.tsv", ":2: field 'utterance': empty")),
          Case("MIntRec2.0 TSV: three columns", lambda p: _mintrec2(p, [["0", "1", "hi"]], header=["a", "b", "c"]),
               _error("test.tsv", ":2: expected columns dialogue, utterance, text, label; got 3")),
          Case("MIntRec2.0 TSV: duplicate utterance", lambda p: _mintrec2(p, [["0", "1", "hi", "Greet"],
                                                                            ["0", "1", "yo", "Greet"]]),
               _error("test.tsv", ":3: field 'utterance': item 'dia0_utt1' again")),
      ],
  }


def _mintrec2(folder: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
  path = folder / "mintrec2" / "test.tsv"
  _write_rows(path, [header or ["Dialogue_id", "Utterance_id", "Text", "Label"]] + rows, "\t")
  return path


# ------------------------------------------------------------------------------------------------ JSON families

def _json_cases(f: str, top: str, n: int, item: str) -> list[Case]:
  """Damage to the whole JSON file (list or object top level)."""
  wrong_top = "{}" if top == "list" else "[]"
  return [
      Case("empty file", _put(f, b""), _error(f, ":1: not JSON (Expecting value")),
      Case("not JSON", _put(f, "name,label\nx,happy\n"), _error(f, ":1: not JSON")),
      Case("truncated at 50%", _edit(f, lambda b: b[:len(b) // 2]), _error(f, ": not JSON (")),
      Case("truncated by one byte", _edit(f, lambda b: b.rstrip()[:-1]), _error(f, ": not JSON (")),
      Case("wrong top-level type", _put(f, wrong_top), _error(f, "expected a JSON")),
      Case("top-level null", _put(f, "null"), _error(f, "expected a JSON")),
      Case("top-level string", _put(f, '"happy"'), _error(f, "expected a JSON")),
      Case("empty top level", _put(f, "[]" if top == "list" else "{}"), _error(f, ": no ")),
      Case("bad UTF-8 byte", _edit(f, _bad_utf8),
           _error(f, "not UTF-8 text")),
      Case("UTF-16 file", _edit(f, lambda b: b.decode().encode("utf-16")), _error(f, ":1: not UTF-8 text")),
      Case("UTF-8 BOM", _edit(f, lambda b: b"\xef\xbb\xbf" + b), ("ok", n)),
      Case("CRLF line ends", _edit(f, lambda b: json.dumps(json.loads(b), indent=1).replace("\n", "\r\n").encode()),
           ("ok", n)),
      Case("one huge line (a 1 MB field)", _edit(f, lambda b: _huge(b)), ("ok", n)),
      Case("trailing comma", _edit(f, lambda b: b.rstrip()[:-1] + b", " + b.rstrip()[-1:]), _error(f, "not JSON")),
      Case("two documents", _edit(f, lambda b: b + b"\n" + b), _error(f, "not JSON (Extra data")),
      Case("comments", _edit(f, lambda b: b"// exported\n" + b), _error(f, ":1: not JSON")),
      Case("nested too deeply", _put(f, "[" * 100_000 + "]" * 100_000), _error(f, ": not JSON (nested too deeply)")),
      Case("NaN literal", _put(f, "NaN"), _error(f, "expected a JSON")),
      Case("src missing", lambda folder: folder / "gone.json", ("error", "gone.json", ": no such file or folder")),
      Case("media missing (listed)", lambda folder: None, ("ok", n)),
  ]


def _bad_utf8(data: bytes) -> bytes:
  """A broken two-byte sequence inside a string in the middle of the file."""
  cut = data.index(b'": "', len(data) // 2) + 4
  return data[:cut] + b"\xc3\x28" + data[cut:]


def _huge(data: bytes) -> bytes:
  obj = json.loads(data)
  first = obj[0] if isinstance(obj, list) else next(iter(obj.values()))
  first["padding"] = "x" * 1_000_000
  return json.dumps(obj).encode()


def _json_edit(f: str, fn: Callable[[object], object]) -> Callable[[Path], None]:
  """Edits the decoded JSON (fn mutates it, or returns a replacement)."""
  def damage(folder: Path) -> None:
    obj = json.loads((folder / f).read_text(encoding="utf-8"))
    out = fn(obj)
    (folder / f).write_text(json.dumps(obj if out is None else out), encoding="utf-8")
  return damage


def _setter(*path_and_value: object) -> Callable[[object], None]:
  """fn setting obj[p0][p1]... = value (value `DROP` deletes the key)."""
  *path, value = path_and_value
  def fn(obj: object) -> None:
    for key in path[:-1]:
      obj = obj[key]
    if value is DROP:
      del obj[path[-1]]
    else:
      obj[path[-1]] = value
  return fn


DROP = object()
CONVERSATION = [
    {"messages": [{"role": "user", "content": "thanks for covering my shift."},
                  {"role": "assistant", "content": "Thank"}],
     "videos": ["/home/lab00/hjh/dataset/MIntRec/video/S01_E02_101.mp4"]},
    {"messages": [{"role": "user", "content": "hi, welcome to cloud 9."}, {"role": "assistant", "content": "Greet"}],
     "videos": ["/home/lab00/hjh/dataset/MIntRec/video/S01_E02_102.mp4"]},
    {"messages": [{"role": "user", "content": "i'm so sorry about the mess."},
                  {"role": "assistant", "content": "Apologise"}],
     "videos": ["/home/lab00/hjh/dataset/MIntRec/video/S01_E03_040.mp4"]},
]


def _conversation() -> Family:
  f = "train_MIntRec_ann.json"
  w1, m1 = "item 1", "item 1 messages[1]"

  def edit(*p: object) -> Callable[[Path], None]:
    return _json_edit(f, _setter(*p))
  cases = _json_cases(f, "list", 3, "item") + [
      Case("item not an object", edit(1, "a string"), _error(f, f"{w1}: expected a JSON object, got string")),
      Case("messages missing", edit(1, "messages", DROP), _error(f, f"{w1}: missing field 'messages'")),
      Case("messages not a list", edit(1, "messages", "hi"), _error(f, f"{w1}: field 'messages' must hold")),
      Case("one message only", edit(1, "messages", [{"role": "user", "content": "hi"}]),
           _error(f, f"{w1}: field 'messages' must hold")),
      Case("assistant message a string", edit(1, "messages", 1, "Greet"),
           _error(f, f"{m1}: expected a JSON object, got string")),
      Case("label missing", edit(1, "messages", 1, "content", DROP), _error(f, f"{m1}: missing field 'content'")),
      Case("label null", edit(1, "messages", 1, "content", None),
           _error(f, f"{m1}: field 'content': expected a string, got null")),
      Case("label a number", edit(1, "messages", 1, "content", 3),
           _error(f, f"{m1}: field 'content': expected a string, got number")),
      Case("label a list", edit(1, "messages", 1, "content", ["Greet"]),
           _error(f, f"{m1}: field 'content': expected a string, got array")),
      Case("label empty", edit(1, "messages", 1, "content", ""), _error(f, f"{m1}: field 'content': empty")),
      Case("label blank", edit(1, "messages", 1, "content", " \t"), _error(f, f"{m1}: field 'content': empty")),
      Case("label unknown", edit(1, "messages", 1, "content", "Ponder"), ("skip", 2, 1)),
      Case("label in capitals", edit(1, "messages", 1, "content", "GREET"), ("ok", 3)),
      Case("label a lone surrogate", edit(1, "messages", 1, "content", "Greet\ud800"),
           _error(f, f"{m1}: field 'content': not valid Unicode")),
      Case("subtitle null", edit(1, "messages", 0, "content", None),
           _error(f, "item 1 messages[0]: field 'content': expected a string, got null")),
      Case("subtitle empty (as CREMA-D's)", edit(1, "messages", 0, "content", ""), ("ok", 3)),
      Case("videos missing", edit(1, "videos", DROP), _error(f, f"{w1}: missing field 'videos'")),
      Case("videos empty", edit(1, "videos", []), _error(f, f"{w1}: field 'videos' must be a non-empty list")),
      Case("videos a string", edit(1, "videos", "a.mp4"), _error(f, f"{w1}: field 'videos' must be a non-empty")),
      Case("video path a number", edit(1, "videos", [7]), _error(f, f"{w1}: field 'videos' must be a non-empty")),
      Case("video path empty", edit(1, "videos", [""]), _error(f, f"{w1}: field 'videos': path '' has no file name")),
      Case("video path a folder", edit(1, "videos", ["/"]), _error(f, f"{w1}: field 'videos': path '/' has no")),
      Case("Windows video path", edit(1, "videos", ["C:\\data\\MIntRec\\video\\S01_E02_102.mp4"]), ("ok", 3)),
      Case("repeated media name (kept as name#2)", edit(1, "videos", CONVERSATION[0]["videos"]), ("ok", 3)),
      Case("extra field", edit(1, "system", "ignored"), ("ok", 3)),
      Case("key twice in an item", _edit(f, lambda b: b.replace(b'"videos"', b'"videos": [], "videos"', 1)),
           _error(f, ": key 'videos' appears twice in one JSON object")),
      Case("every label unknown", _json_edit(f, lambda obj: [_setter("messages", 1, "content", "Ponder")(x)
                                                              for x in obj] and None),
           _error(f, ": no mintrec records for split default (3 rows left out")),
  ]
  return Family("mintrec", f, lambda p: (p / f).write_text(json.dumps(CONVERSATION), encoding="utf-8"), 3,
                cases=cases, name="conversation_json")


MERR = {name: {"AU_list": ["AU04"], "visual_prior_list": ["Frowns furrowed"], "audio_prior_list": "his tone is low.",
               "peak_index": "3", "pseu_emotion": emotion, "text": "I am fine.",
               "smp_reason_caption": f"He frowns, so he is {emotion}."}
        for name, emotion in (("sample_00000023", "angry"), ("sample_00000024", "happy"), ("sample_00000025", "sad"))}


def _merr() -> Family:
  f, w = "MERR_fine_grained.json", "item 'sample_00000024'"

  def edit(*p: object) -> Callable[[Path], None]:
    return _json_edit(f, _setter("sample_00000024", *p))
  cases = _json_cases(f, "object", 3, "item") + [
      Case("item not an object", _json_edit(f, _setter("sample_00000024", "angry")),
           _error(f, f"{w}: expected a JSON object, got string")),
      Case("emotion missing", edit("pseu_emotion", DROP), _error(f, f"{w}: missing field 'pseu_emotion'")),
      Case("emotion null", edit("pseu_emotion", None), _error(f, f"{w}: field 'pseu_emotion': expected a string")),
      Case("emotion a number", edit("pseu_emotion", 2), _error(f, f"{w}: field 'pseu_emotion': expected a string")),
      Case("emotion empty", edit("pseu_emotion", ""), _error(f, f"{w}: field 'pseu_emotion': empty")),
      Case("caption missing", edit("smp_reason_caption", DROP), _error(f, f"{w}: missing field 'smp_reason_caption'")),
      Case("caption empty", edit("smp_reason_caption", " "), _error(f, f"{w}: field 'smp_reason_caption': empty")),
      Case("caption an object", edit("smp_reason_caption", {}),
           _error(f, f"{w}: field 'smp_reason_caption': expected a string, got object")),
      Case("text missing", edit("text", DROP), _error(f, f"{w}: missing field 'text'")),
      Case("text null", edit("text", None), _error(f, f"{w}: field 'text': expected a string, got null")),
      Case("text empty", edit("text", ""), ("ok", 3)),
      Case("visual priors a string", edit("visual_prior_list", "Frowns"),
           _error(f, f"{w}: field 'visual_prior_list': expected a list of strings")),
      Case("visual priors with a number", edit("visual_prior_list", ["Frowns", 4]),
           _error(f, f"{w}: field 'visual_prior_list': expected a list of strings")),
      Case("visual priors missing", edit("visual_prior_list", DROP), ("ok", 3)),
      Case("audio prior a list", edit("audio_prior_list", ["low"]),
           _error(f, f"{w}: field 'audio_prior_list': expected a string, got array")),
      Case("empty item name", _json_edit(f, lambda o: {"": o["sample_00000023"]}),
           _error(f, "item '': an empty item name")),
      Case("item name twice", _edit(f, lambda b: b.replace(b'"sample_00000024"', b'"sample_00000023"')),
           _error(f, ": key 'sample_00000023' appears twice in one JSON object")),
      Case("caption a lone surrogate", edit("smp_reason_caption", "\udc00"),
           _error(f, f"{w}: field 'smp_reason_caption': not valid Unicode")),
      Case("unknown emotion (open set)", edit("pseu_emotion", "contempt"), ("ok", 3)),
      Case("extra field", edit("note", 1), ("ok", 3)),
  ]
  return Family("merr_fine", f, lambda p: (p / f).write_text(json.dumps(MERR), encoding="utf-8"), 3, cases=cases)


AVAMERG = [
    {"conversation_id": "00012", "speaker_profile": {"ID": 3, "age": "young"}, "listener_profile": {"ID": 8},
     "topic": "work", "turns": [
         {"turn_id": "1", "context": "job loss",
          "dialogue_history": [{"index": 0, "role": "speaker", "utterance": "I lost my job."}],
          "response": "That sounds hard.", "chain_of_empathy": {"speaker_emotion": "sadness", "event_scenario": "fired",
                                                                "emotion_cause": "no income",
                                                                "goal_to_response": "comfort"}},
         {"turn_id": "2", "context": "job loss",
          "dialogue_history": [{"index": 0, "role": "speaker", "utterance": "I lost my job."},
                               {"index": 1, "role": "listener", "utterance": "That sounds hard."},
                               {"index": 2, "role": "speaker", "utterance": "I feel useless."}],
          "response": "You are not useless.", "chain_of_empathy": {
              "speaker_emotion": "helpless", "event_scenario": "fired", "emotion_cause": "self-blame",
              "goal_to_response": "reassure"}}]},
    {"conversation_id": "00013", "speaker_profile": {"ID": 10}, "listener_profile": {"ID": 9}, "topic": "family",
     "turns": [{"turn_id": "1", "context": "my father is in hospital",
                "dialogue_history": [{"index": 0, "role": "speaker", "utterance": "My father is in hospital."}],
                "response": "Oh, that is a lot.", "chain_of_empathy": {
                    "speaker_emotion": "anxious", "event_scenario": "hospital", "emotion_cause": "father",
                    "goal_to_response": "acknowledge"}}]},
]


def _avamerg() -> Family:
  f = "train.json"
  w, t = "conversation 0", "conversation 0 turn 1"

  def edit(*p: object) -> Callable[[Path], None]:
    return _json_edit(f, _setter(0, *p))

  def turn(*p: object) -> Callable[[Path], None]:
    return edit("turns", 1, *p)
  cases = _json_cases(f, "list", 6, "conversation") + [
      Case("conversation not an object", _json_edit(f, _setter(0, 5)), _error(f, f"{w}: expected a JSON object")),
      Case("conversation_id missing", edit("conversation_id", DROP), _error(f, f"{w}: missing field 'conversation_id'")),
      Case("conversation_id null", edit("conversation_id", None),
           _error(f, f"{w}: field 'conversation_id': expected a non-empty string or an integer, got None")),
      Case("conversation_id a boolean", edit("conversation_id", True), _error(f, f"{w}: field 'conversation_id'")),
      Case("conversation_id an integer", edit("conversation_id", 12), ("ok", 6)),
      Case("conversation_id again", _json_edit(f, lambda o: o + [o[0]]),
           _error(f, "conversation 2 turn 0: field 'conversation_id': item ")),
      Case("speaker_profile missing", edit("speaker_profile", DROP), _error(f, f"{w}: missing field 'speaker_profile'")),
      Case("speaker ID missing", edit("speaker_profile", "ID", DROP),
           _error(f, f"{w} speaker_profile: missing field 'ID'")),
      Case("speaker ID empty", edit("speaker_profile", "ID", ""), _error(f, f"{w} speaker_profile: field 'ID'")),
      Case("turns missing", edit("turns", DROP), _error(f, f"{w}: missing field 'turns'")),
      Case("turns an object", edit("turns", {}), _error(f, f"{w} turns: expected a JSON list, got object")),
      Case("turns empty", edit("turns", []), _error(f, f"{w}: field 'turns' is empty")),
      Case("turn not an object", edit("turns", 1, "hi"), _error(f, f"{t}: expected a JSON object, got string")),
      Case("turn_id missing", turn("turn_id", DROP), _error(f, f"{t}: missing field 'turn_id'")),
      Case("turn_id a word", turn("turn_id", "two"), _error(f, f"{t}: field 'turn_id' is not an integer: 'two'")),
      Case("turn_id negative", turn("turn_id", "-2"), _error(f, f"{t}: field 'turn_id' is not an integer")),
      Case("turn_id a float", turn("turn_id", 1.5), _error(f, f"{t}: field 'turn_id' is not an integer: 1.5")),
      Case("turn_id NaN", _edit(f, lambda b: b.replace(b'"turn_id": "2"', b'"turn_id": NaN')),
           _error(f, f"{t}: field 'turn_id' is not an integer: nan")),
      Case("history not a list", turn("dialogue_history", "hi"), _error(f, f"{t} dialogue_history: expected a JSON")),
      Case("history entry without role", turn("dialogue_history", 0, "role", DROP),
           _error(f, f"{t} dialogue_history[0]: missing field 'role'")),
      Case("utterance null", turn("dialogue_history", 2, "utterance", None),
           _error(f, f"{t} dialogue_history[2]: field 'utterance': expected a string, got null")),
      Case("chain missing", turn("chain_of_empathy", DROP), _error(f, f"{t}: missing field 'chain_of_empathy'")),
      Case("chain a list", turn("chain_of_empathy", []), _error(f, f"{t} chain_of_empathy: expected a JSON object")),
      Case("speaker emotion missing", turn("chain_of_empathy", "speaker_emotion", DROP),
           _error(f, f"{t} chain_of_empathy: missing field 'speaker_emotion'")),
      Case("speaker emotion empty", turn("chain_of_empathy", "speaker_emotion", ""),
           _error(f, f"{t} chain_of_empathy: field 'speaker_emotion': empty")),
      Case("goal null", turn("chain_of_empathy", "goal_to_response", None),
           _error(f, f"{t} chain_of_empathy: field 'goal_to_response': expected a string, got null")),
      Case("response missing", turn("response", DROP), _error(f, f"{t}: missing field 'response'")),
      Case("response empty", turn("response", ""), _error(f, f"{t}: field 'response': empty")),
      Case("context a number", turn("context", 3), _error(f, f"{t}: field 'context': expected a string, got number")),
      Case("topic a number (meta only)", edit("topic", 3), ("ok", 6)),
  ]
  return Family("avamerg", f, lambda p: (p / f).write_text(json.dumps(AVAMERG), encoding="utf-8"), 6, cases=cases)


# --------------------------------------------------------------------------------------------- MERBench npz

def _save_npz(path: Path, **members: object) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **{k: np.array(v, dtype=object) if isinstance(v, dict) else v for k, v in members.items()})


MOSI = {"03bSnISJMiM_1": {"val": 1.4}, "03bSnISJMiM_2": {"val": -0.6}, "0h-zjBukYpk_1": {"val": 0.0}}
MER = {"sample_00000001": {"emo": "happy"}, "sample_00000002": {"emo": "sad"}, "sample_00000003": {"emo": "worried"}}


def _npz_family(dataset: str, corpus: dict, field_name: str) -> Family:
  f = "label-6way.npz" if dataset == "mer2023" else "label.npz"
  member = "test1_corpus" if dataset == "mer2023" else "test_corpus"
  first = next(iter(corpus))
  w = f"{member} item {first!r}"

  def corpus_with(fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
      c = json.loads(json.dumps(corpus))
      out = fn(c)
      _save_npz(folder / f, train_corpus={}, **{member: c if out is None else out})
    return damage

  def value(v: object) -> Callable[[Path], None]:
    return corpus_with(lambda c: c[first].__setitem__(field_name, v))

  def raw_member(data: bytes) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
      with zipfile.ZipFile(folder / f, "w") as z:
        z.writestr(f"{member}.npy", data)
    return damage

  evil = io.BytesIO()
  np.save(evil, np.array(os.system, dtype=object), allow_pickle=True)
  cases = [
      Case("empty file", _put(f, b""), _error(f, ": not an .npz file (a broken zip archive: File is not a zip file)")),
      Case("a text file", _put(f, "name,label\n"), _error(f, ": not an .npz file")),
      Case("truncated at 50%", _edit(f, lambda b: b[:len(b) // 2]), _error(f, ": not an .npz file")),
      Case("truncated by 10 bytes", _edit(f, lambda b: b[:-10]), _error(f, ": not an .npz file")),
      Case("a flipped byte in the data", _edit(f, lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF])
                                               + b[len(b) // 2 + 1:]), _error(f, ": not an .npz file (a broken zip")),
      Case("corpus member missing", lambda p: _save_npz(p / f, train_corpus={}),
           _error(f, f": no member {member!r} holding a dict")),
      Case("corpus a list", corpus_with(lambda c: list(c)), _error(f, f": no member {member!r} holding a dict")),
      Case("corpus a plain array", lambda p: _save_npz(p / f, **{member: np.arange(3)}),
           _error(f, f": no member {member!r} holding a dict")),
      Case("member not an npy", raw_member(b"not an array"), _error(f, f" member {member!r}: not a readable numpy")),
      Case("member truncated npy", raw_member(b"\x93NUMPY\x01\x00"), _error(f, f" member {member!r}: not a readable")),
      Case("pickle of code (os.system)", raw_member(evil.getvalue()), _error(f, "refused")),
      Case("empty corpus", corpus_with(lambda c: {}), _error(f, f": no {dataset} records")),
      Case("item not a dict", corpus_with(lambda c: c.__setitem__(first, [1.0])),
           _error(f, f"{w}: missing field {field_name!r}")),
      Case(f"{field_name} missing", corpus_with(lambda c: c[first].clear()),
           _error(f, f"{w}: missing field {field_name!r}")),
      Case(f"{field_name} null", value(None), _error(f, f"{w}: field {field_name!r}: unexpected value None")),
      Case(f"{field_name} a boolean", value(True), _error(f, f"{w}: field {field_name!r}: unexpected value True")),
      Case(f"{field_name} a list", value([1]), _error(f, f"{w}: field {field_name!r}: unexpected value [1]")),
      Case("empty item name", corpus_with(lambda c: {"": c[first]}), _error(f, f"{member} item '': an empty item")),
      Case("integer item name", corpus_with(lambda c: {7: c[first]}), ("ok", 1)),
      Case("subtitles: not UTF-8", lambda p: (p / "transcription-engchi-polish.csv").write_bytes(
          b"name,chinese,english\nx,\xff,y\n"), _error("transcription-engchi-polish.csv", ":2: not UTF-8")),
      Case("subtitles: english column missing", lambda p: _write_rows(p / "transcription-engchi-polish.csv", [
          ["name", "chinese"], [first, "x"]]), _error("transcription-engchi-polish.csv", ":1: missing column")),
      Case("subtitles: name twice", lambda p: _write_rows(p / "transcription-engchi-polish.csv", [
          ["name", "chinese", "english"], [first, "", "a"], [first, "", "b"]]),
           _error("transcription-engchi-polish.csv", f":3: field 'name': item {first!r} again")),
      Case("subtitles: extra cell", lambda p: _write_rows(p / "transcription-engchi-polish.csv", [
          ["name", "chinese", "english"], [first, "", "a", "b"]]),
           _error("transcription-engchi-polish.csv", ":2: 4 cells, the header has 3")),
      Case("subtitles: empty name", lambda p: _write_rows(p / "transcription-engchi-polish.csv", [
          ["name", "chinese", "english"], ["", "", "a"]]),
           _error("transcription-engchi-polish.csv", ":2: field 'name': empty")),
      Case("subtitles: BOM and CRLF", lambda p: (p / "transcription-engchi-polish.csv").write_bytes(
          b"\xef\xbb\xbfname,chinese,english\r\n" + first.encode() + b",,Hello.\r\n"), ("ok", 3)),
      Case("src missing", lambda p: p / "gone.npz", ("error", "gone.npz", ": no such file or folder")),
      Case("media missing (listed)", lambda p: None, ("ok", 3)),
  ]
  if field_name == "val":
    cases += [Case("val NaN", value(float("nan")), _error(f, f"{w}: field 'val': not a finite number")),
              Case("val inf", value(float("inf")), _error(f, f"{w}: field 'val': not a finite number")),
              Case("val a string", value("1.4"), _error(f, f"{w}: field 'val': unexpected value '1.4'")),
              Case("val an integer", value(2), ("ok", 3))]
  else:
    cases += [Case("emo empty", value(""), _error(f, f"{w}: field 'emo': expected a label, got ''")),
              Case("emo an index (MER labels are words)", value(2), _error(f, f"{w}: field 'emo': expected a label")),
              Case("emo unknown", value("joyful"), ("skip", 2, 1)),
              Case("emo in capitals", value("HAPPY"), ("ok", 3))]
  return Family(dataset, f, lambda p: _save_npz(p / f, train_corpus={}, **{member: corpus}), 3, "test", cases,
                f"{dataset}_npz")


# ------------------------------------------------------------------------------------------------- IEMOCAP

IEMOCAP_LABELS = ("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
                  "[6.2901 - 8.2357]\tSes05F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\nC-E2:\tNeutral;\t()\n\n"
                  "[10.0100 - 11.3925]\tSes05F_impro01_F001\tang\t[2.0000, 3.0000, 3.0000]\n\n"
                  "[14.8872 - 18.0175]\tSes05F_impro01_M002\texc\t[3.5000, 3.5000, 3.0000]\n")
IEMOCAP_TEXT = ("Ses05F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
                "Ses05F_impro01_M002 [014.8872-018.0175]: Yes!\n")


def _iemocap() -> Family:
  f = "Session5/dialog/EmoEvaluation/Ses05F_impro01.txt"
  tx = "Session5/dialog/transcriptions/Ses05F_impro01.txt"

  def write(p: Path) -> None:
    for name, text in ((f, IEMOCAP_LABELS), (tx, IEMOCAP_TEXT)):
      (p / name).parent.mkdir(parents=True, exist_ok=True)
      (p / name).write_text(text, encoding="utf-8")

  def line(old: str, new: str | bytes) -> Callable[[Path], None]:
    return _replace(f, old, new)
  turn1 = "[10.0100 - 11.3925]\tSes05F_impro01_F001\tang\t[2.0000, 3.0000, 3.0000]"
  cases = [
      Case("no Session folders", lambda p: p / "Session5" / "dialog" / "transcriptions",
           ("error", "transcriptions", ": no Session*/dialog/EmoEvaluation/*.txt")),
      Case("src a file", lambda p: p / f, ("error", "Ses05F_impro01.txt", ": no Session*/dialog/EmoEvaluation")),
      Case("src missing", lambda p: p / "gone", ("error", "gone", ": no Session*")),
      Case("label file not UTF-8", line("neu\t", b"neu\xff\t"), _error(f, ":3: not UTF-8 text")),
      Case("label file UTF-16", _edit(f, lambda b: b.decode().encode("utf-16")), _error(f, ":1: not UTF-8 text")),
      Case("label file empty", _put(f, ""), ("error", "", ": no iemocap records")),
      Case("turn line with spaces for tabs", line(turn1, turn1.replace("\t", " ")),
           _error(f, ":6: not a turn line")),
      Case("turn line cut after the name", line(turn1, turn1.split("\tang")[0]), _error(f, ":6: not a turn line")),
      Case("times not numbers", line("10.0100 - 11.3925", "10.01.00 - 11.3925"), _error(f, ":6: not a turn line")),
      Case("VAD bracket missing", line("[2.0000, 3.0000, 3.0000]", "2.0, 3.0, 3.0"), _error(f, ":6: not a turn line")),
      Case("turn name not SesNN", line("Ses05F_impro01_F001\tang", "S05F_impro01_F001\tang"),
           _error(f, ":6: turn name 'S05F_impro01_F001' does not start with SesNN")),
      Case("turn twice", line("Ses05F_impro01_F001", "Ses05F_impro01_F000"),
           _error(f, ":6: field 'name': item 'Ses05F_impro01_F000' again")),
      Case("turn twice across files", lambda p: (p / f).with_name("Ses05F_impro02.txt").write_text(
          IEMOCAP_LABELS, encoding="utf-8"), ("error", "Ses05F_impro02.txt", ":3: field 'name': item")),
      Case("code fru (not one of the four: dropped)", line("\tang\t", "\tfru\t"), ("ok", 2)),
      Case("code xxx (no agreement: dropped)", line("\tang\t", "\txxx\t"), ("ok", 2)),
      Case("evaluator lines only", _put(f, "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n"),
           ("error", "", ": no iemocap records")),
      Case("CRLF line ends", _edit(f, lambda b: b.replace(b"\n", b"\r\n")), ("ok", 3)),
      Case("UTF-8 BOM", _edit(f, lambda b: b"\xef\xbb\xbf" + b), ("ok", 3)),
      Case("trailing blank lines", _edit(f, lambda b: b + b"\n\n\n"), ("ok", 3)),
      Case("transcription missing (subtitle empty)", lambda p: (p / tx).unlink(), ("ok", 3)),
      Case("transcription not UTF-8 (replaced)", _edit(tx, lambda b: b.replace(b"Yes!", b"Yes\xff")), ("ok", 3)),
      Case("transcription line malformed (skipped)", _edit(tx, lambda b: b + b"garbage without brackets\n"), ("ok", 3)),
      Case("VAD garbage kept as text", line("[2.0000, 3.0000, 3.0000]", "[high, low]"), ("ok", 3)),
      Case("Sessions 1-4 only for the test split", _edit(f, lambda b: b.replace(b"Ses05", b"Ses01")),
           ("error", "", ": no iemocap records")),
      Case("huge transcription line", _edit(tx, lambda b: b.replace(b"Yes!", b"Y" * 1_000_000)), ("ok", 3)),
      Case("NUL byte after a turn", line(turn1, turn1 + "\x00"), ("ok", 3)),
      Case("turn line with a leading space (not a turn)", line(turn1, " " + turn1), ("ok", 2)),
      Case("a second label file", lambda p: (p / f).with_name("Ses05M_script01.txt").write_text(
          IEMOCAP_LABELS.replace("impro01", "script01"), encoding="utf-8"), ("ok", 6)),
      Case("media missing (listed)", lambda p: None, ("ok", 3)),
      Case("label file a folder", lambda p: ((p / f).unlink(), (p / f).mkdir())[1] and None,
           _error(f, ": cannot read: Is a directory")),
  ]
  return Family("iemocap", f, write, 3, "test", cases)


# --------------------------------------------------------------------------------------------------- the run

def _families() -> list[Family]:
  fams = [_table_family(t) for t in TABLES]
  extras = _family_extras()
  for fam in fams:
    fam.cases += extras.get(fam.dataset, [])
    fam.name = f"{fam.dataset}_{Path(fam.main).suffix[1:]}"
  return fams + [_conversation(), _merr(), _avamerg(), _npz_family("mosi", MOSI, "val"),
                 _npz_family("mer2023", MER, "emo"), _iemocap()]


FAMILIES = {fam.name: fam for fam in _families()}
CASES = [(name, case) for name, fam in FAMILIES.items() for case in fam.cases]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
  capsys.readouterr()
  code = prepare(argv)
  out = capsys.readouterr()
  return code, out.out, out.err


@pytest.mark.parametrize("family, case", CASES, ids=[f"{d}-{c.name}" for d, c in CASES])
def test_broken_annotations(family, case, tmp_path, capsys):
  fam = FAMILIES[family]
  dataset = fam.dataset
  folder = tmp_path / "src"
  folder.mkdir()
  fam.write(folder)
  src = case.damage(folder)
  src = folder / fam.main if src is None or src == folder / fam.main or not isinstance(src, Path) else src
  if dataset == "iemocap" and src == folder / fam.main and case.name != "src a file":
    src = folder
  if dataset == "mintrec" and src.parent.name == "mintrec2":
    dataset = "mintrec2"
  out = tmp_path / "out.jsonl"
  argv = ["--dataset", dataset, "--src", str(src), "--out", str(out)] + (["--split", fam.split] if fam.split else [])
  code, stdout, err = _run(capsys, argv)
  assert "Traceback" not in err
  lines = err.splitlines()
  kind = case.expect[0]
  if kind == "error":
    _, file, fragment = case.expect
    assert (code, len(lines)) == (2, 1), err
    assert lines[0].startswith("error: ") and file in lines[0] and fragment in lines[0], lines[0]
    assert not out.exists()
    return
  summary = json.loads(out.with_suffix(".summary.json").read_text(encoding="utf-8"))
  assert code == 0, err
  assert summary["records"] == case.expect[1], summary
  assert summary["missing_media"] >= 1 and f"missing media: {summary['missing_media']}" in stdout
  if kind == "skip":
    assert summary["skipped_rows"] == case.expect[2] and lines[0].startswith("warning: left out "), err
    assert all(str(folder) in s and "label" in s for s in summary["skipped"])
  else:
    assert summary["skipped_rows"] == 0 and not lines, err


def test_case_counts():
  """At least 30 cases per reader family (the README's counts)."""
  counts = {d: len(f.cases) for d, f in FAMILIES.items()}
  print(counts, sum(counts.values()))
  assert min(counts.values()) >= 30, counts


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_real_command_line(family, tmp_path):
  """One broken file per family through `python -m nanoemox_jax.data.prepare`: one line, exit 2."""
  fam = FAMILIES[family]
  dataset = fam.dataset
  folder = tmp_path / "src"
  folder.mkdir()
  fam.write(folder)
  (folder / fam.main).write_bytes(b"\xff\xfe\x00garbage")
  src = folder if dataset == "iemocap" else folder / fam.main
  proc = subprocess.run([sys.executable, "-m", "nanoemox_jax.data.prepare", "--dataset", dataset, "--src", str(src),
                         "--out", str(tmp_path / "o.jsonl")], capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
  assert proc.stderr.startswith(f"error: {folder / fam.main}"), proc.stderr


# ------------------------------------------------------------------ python -m nanoemox_jax.evaluate: more cases
# tests/test_eval_cli_errors.py holds 24 broken predictions files and 17 broken labels files; these add the
# encodings, torn lines and non-finite numbers (OK: exit 0 and scored).

PREDICTIONS_MORE = [
    ("UTF-8 BOM", b"\xef\xbb\xbf" + _prediction().encode(), "ok"),
    ("CRLF line ends", _prediction().replace("\n", "\r\n"), "ok"),
    ("blank lines between", "\n" + _prediction() + "\n\n", "ok"),
    ("one huge answer (5 MB)", _prediction(text="positive " * 500_000), "ok"),
    ("a prediction of a record not in the labels", _prediction() + _prediction(id="v9"), "ok"),
    ("torn last line (a killed write)", _prediction() + _prediction(id="v1")[:30], ":2: not JSON"),
    ("gate weight NaN", _prediction().replace('"}', '", "gates": {"e1": NaN}}'),
     ":1: field 'gates': expected an object of numbers or null"),
    ("gate weight Infinity", _prediction().replace('"}', '", "gates": {"e1": -Infinity}}'),
     ":1: field 'gates': expected an object of numbers or null"),
    ("empty dataset", _prediction(dataset=""), ":1: field 'dataset': expected a non-empty string, got string"),
    ("task an array", _prediction(task=[]), ":1: field 'task': expected a string, got array"),
    ("answer a number", _prediction(answer=1), ":1: field 'answer': expected a string or null, got number"),
    ("openset a list", _prediction(openset=["happy"]), ":1: field 'openset': expected a string or null, got array"),
    ("sentiment a number", _prediction(sentiment=1), ":1: field 'sentiment': expected a string or null"),
]
LABELS_MORE = [
    ("UTF-8 BOM", b"\xef\xbb\xbf" + _line(_record()).encode(), "ok"),
    ("CRLF line ends", _line(_record()).replace("\n", "\r\n"), "ok"),
    ("blank lines between", "\n\n" + _line(_record()) + "\n", "ok"),
    ("a record of another benchmark beside", _line(_record()) + _line(_record(dataset="meld", task="mer")), "ok"),
    ("torn last line", _line(_record()) + _line(_record(id="v1"))[:25], ":2: not JSON"),
    ("valence NaN", _line(_record()).replace('"valence": 1.0', '"valence": NaN'),
     ":1: field 'meta': expected a finite number as valence, got number nan"),
    ("valence Infinity", _line(_record()).replace('"valence": 1.0', '"valence": Infinity'),
     ":1: field 'meta': expected a finite number as valence, got number inf"),
    ("valence a boolean", _line(_record(meta={"valence": True})), ":1: field 'meta': expected a finite number"),
    ("labels holding a number", _line(_record(labels=["positive", 1])), ":1: field 'labels': expected an array of "),
    ("candidates a string", _line(_record(candidates="a, b")), ":1: field 'candidates': expected an array of strings"),
    ("id null", _line(_record(id=None)), ":1: field 'id': expected a non-empty string, got null"),
    ("empty dataset", _line(_record(dataset="")), ":1: field 'dataset': expected a non-empty string"),
    ("target null", _line(_record(target=None)), ":1: field 'target': expected a string, got null"),
    ("history an object", _line(_record(history={})), ":1: field 'history': expected an array of {role, text}"),
    ("video a number", _line(_record(video=3)), ":1: field 'video': expected a string or null, got number"),
    ("meta null", _line(_record(meta=None)), ":1: field 'meta': expected an object, got null"),
    ("split null", _line(_record(split=None)), ":1: field 'split': expected a string, got null"),
]


@pytest.mark.parametrize("name, content, expect", PREDICTIONS_MORE, ids=[c[0] for c in PREDICTIONS_MORE])
def test_evaluate_predictions_more(name, content, expect, good, tmp_path, capsys):  # noqa: F811
  path = _write(tmp_path / "broken.jsonl", content)
  if expect == "ok":
    code, err = _run_evaluate(capsys, _args(path, good[1], tmp_path / "out"))
    assert code == 0 and err[0].startswith("wrote "), err
  else:
    _fails(capsys, _args(path, good[1], tmp_path / "out"), f"error: {path}{expect}")


@pytest.mark.parametrize("name, content, expect", LABELS_MORE, ids=[c[0] for c in LABELS_MORE])
def test_evaluate_labels_more(name, content, expect, good, tmp_path, capsys):  # noqa: F811
  path = _write(tmp_path / "broken.jsonl", content)
  if expect == "ok":
    code, err = _run_evaluate(capsys, _args(good[0], path, tmp_path / "out"))
    assert code == 0 and err[0].startswith("wrote "), err
  else:
    _fails(capsys, _args(good[0], path, tmp_path / "out"), f"error: {path}{expect}")


def test_evaluate_case_counts():
  """At least 30 broken or odd files per evaluate input (predictions, labels)."""
  assert len(PREDICTIONS) + len(PREDICTIONS_MORE) == 37 and len(LABELS) + len(LABELS_MORE) == 34
