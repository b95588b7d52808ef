"""`python -m nanoemox_jax.evaluate` on broken input: exit 2 and one stderr line naming the file (line, field).

A fuzz list of broken predictions and labels files (and options), each run in-process; then the --help example
lines, which must be valid input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanoemox_jax.data.manifest import Record, write_jsonl
from nanoemox_jax.evaluate.__main__ import main

GOOD_PREDICTION = {"id": "v0", "task": "msa", "dataset": "sims", "text": "The sentiment state is positive."}


def _line(obj: object) -> str:
  return json.dumps(obj) + "\n"


def _prediction(**changes: object) -> str:
  """A prediction line: GOOD_PREDICTION with fields changed (a value of None removes the field)."""
  obj = {k: v for k, v in {**GOOD_PREDICTION, **changes}.items() if v is not None}
  return _line(obj)


def _record(**changes: object) -> dict:
  return {**Record(id="v0", task="msa", dataset="sims", split="test", target="", labels=("positive",),
                   meta={"valence": 1.0}).to_json(), **changes}


# (name, predictions file content (text or bytes), expected in the message after "error: <file>")
PREDICTIONS = [
    ("truncated JSON", '{"id": "v0", "task": "msa", "dat', ":1: not JSON"),
    ("empty file", "", ": empty predictions file"),
    ("blank lines only", "\n  \n\n", ": empty predictions file"),
    ("binary garbage", bytes(range(255, -1, -1)) * 4, ":1: not UTF-8 text (invalid start byte at byte 1 "),
    ("bad UTF-8 in a string", _prediction().encode() + b'{"id": "v1", "text": "caf\xe9"}\n',
     ":2: not UTF-8 text (invalid continuation byte at byte 26 "),
    ("a JSON array", "[1, 2]\n", ":1: expected a JSON object, got array"),
    ("a JSON string", '"positive"\n', ":1: expected a JSON object, got string"),
    ("JSON null", "null\n", ":1: expected a JSON object, got null"),
    ("nested too deeply", "[" * 100_000 + "]" * 100_000 + "\n", ":1: not JSON (nested too deeply)"),
    ("missing text", _prediction(text=None), ":1: field 'text': missing"),
    ("missing id", _prediction(id=None), ":1: field 'id': missing"),
    ("unknown field", _prediction(score=0.9), ":1: field 'score': unknown field"),
    ("id a number", _prediction(id=7), ":1: field 'id': expected a non-empty string, got number"),
    ("empty id", _prediction(id=""), ":1: field 'id': expected a non-empty string, got string"),
    ("text a list", _prediction(text=["positive"]), ":1: field 'text': expected a string, got array"),
    ("gates a list", _prediction(gates=[0.5, 0.5]), ":1: field 'gates': expected an object of numbers or null"),
    ("gate weight a string", _prediction(gates={"e1": "0.5"}), ":1: field 'gates': expected an object of numbers"),
    ("gate weight a boolean", _prediction(gates={"e1": True}), ":1: field 'gates': expected an object of numbers"),
    ("checkpoint a number", _prediction(checkpoint=5), ":1: field 'checkpoint': expected a string or null"),
    ("think an object", _prediction(think={}), ":1: field 'think': expected a string or null, got object"),
    ("unknown task", _prediction(task="poetry"), ":1: field 'task': 'poetry' is not one of"),
    ("unknown dataset", _prediction(dataset="simz"), ":1: field 'dataset': unknown dataset 'simz'"),
    ("duplicate (dataset, id)", _prediction() + _prediction(text="negative"),
     ":2: field 'id': a second prediction for sims id 'v0' of checkpoint 'broken' (the first at "),
    ("a later line broken", _prediction() + _prediction(id="v1", dataset="simsv2") + "{oops}\n", ":3: not JSON"),
]
# (name, labels file content, expected in the message after "error: <file>")
LABELS = [
    ("truncated JSON", _line(_record())[:40], ":1: not JSON"),
    ("empty file", "", ": empty labels file"),
    ("binary garbage", b"\x89PNG\r\n\x1a\n\x00\x00\xff", ":1: not UTF-8 text"),
    ("a JSON number", "42\n", ":1: expected a JSON object, got number"),
    ("unknown field", _line(_record(valence=1.0)), ":1: field 'valence': unknown field"),
    ("missing split", _line({k: v for k, v in _record().items() if k != "split"}), ":1: field 'split': missing"),
    ("labels a string", _line(_record(labels="positive")), ":1: field 'labels': expected an array of strings"),
    ("meta a list", _line(_record(meta=[1.0])), ":1: field 'meta': expected an object, got array"),
    ("history turn without text", _line(_record(history=[{"role": "speaker"}])), ":1: field 'history': expected"),
    ("unknown task", _line(_record(task="poetry")), ":1: field 'task': 'poetry' is not one of"),
    ("unknown split", _line(_record(split="val")), ":1: field 'split': 'val' is not one of"),
    ("valence a string", _line(_record(meta={"valence": "1.0"})), ":1: field 'meta': expected a finite number as valence"),
    ("no valence, no sentiment label", _line(_record(meta={}, labels=["good"])),
     ":1: field 'meta': a sims record needs meta.valence"),
    ("MER record without a label", _line(_record(task="mer", dataset="mer2023", labels=[])),
     ":1: field 'labels': a mer2023 mer record needs at least one label"),
    ("duplicate (dataset, id)", _line(_record()) + _line(_record(id="v0", dataset="simsv2")) + _line(_record()),
     ":3: field 'id': a second record for sims id 'v0' (the first at "),
    ("no record of the benchmark", _line(_record(dataset="mosi")), ": no sims record"),
    ("no record with a prediction", _line(_record(id="v9")), ": none of its 1 sims records has a prediction"),
]


def _run(capsys, args: list[str]) -> tuple[int, list[str]]:
  capsys.readouterr()
  code = main(args)
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return code, err.splitlines()


def _write(path: Path, content: str | bytes) -> Path:
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  return path


@pytest.fixture
def good(tmp_path):
  """(predictions, labels) files that score."""
  write_jsonl([Record.from_json(_record())], tmp_path / "labels.jsonl")
  return _write(tmp_path / "preds.jsonl", _prediction()), tmp_path / "labels.jsonl"


def _args(predictions: object, labels: object, out: Path, *extra: str) -> list[str]:
  return ["--benchmark", "sims", "--predictions", str(predictions), "--labels", str(labels), "--out", str(out),
          *extra]


def test_the_good_pair_scores(good, tmp_path, capsys):
  code, err = _run(capsys, _args(*good, tmp_path / "out"))
  assert code == 0 and err[0].startswith("wrote ")


def _fails(capsys, args: list[str], start: str) -> None:
  """The run exits 2 with exactly one stderr line, which starts with `start`."""
  code, err = _run(capsys, args)
  assert (code, len(err)) == (2, 1), err
  assert err[0].startswith(start), err[0]


@pytest.mark.parametrize("name, content, message", PREDICTIONS, ids=[c[0] for c in PREDICTIONS])
def test_broken_predictions_file(name, content, message, good, tmp_path, capsys):
  path = _write(tmp_path / "broken.jsonl", content)
  _fails(capsys, _args(path, good[1], tmp_path / "out"), f"error: {path}{message}")


@pytest.mark.parametrize("name, content, message", LABELS, ids=[c[0] for c in LABELS])
def test_broken_labels_file(name, content, message, good, tmp_path, capsys):
  path = _write(tmp_path / "broken.jsonl", content)
  _fails(capsys, _args(good[0], path, tmp_path / "out"), f"error: {path}{message}")


def test_broken_files_and_options(good, tmp_path, capsys):
  predictions, labels = good
  out = tmp_path / "out"
  second = _write(tmp_path / "again.jsonl", _prediction(checkpoint="preds"))  # preds.jsonl's checkpoint again
  judge = _write(tmp_path / "judge.json", '{"model": "m", "base_url": ')
  cases = [
      (_args(tmp_path, labels, out), f"error: {tmp_path}: a folder, not a predictions file"),
      (_args(tmp_path / "gone.jsonl", labels, out), f"error: {tmp_path / 'gone.jsonl'}: cannot read the predictions "
       "file: No such file or directory"),
      (_args(tmp_path / "ckpt_*.jsonl", labels, out), f"error: {tmp_path / 'ckpt_*.jsonl'}: no predictions file "
       "matches this pattern"),
      (_args(predictions, tmp_path, out), f"error: {tmp_path}: cannot read the labels file: Is a directory"),
      (_args(predictions, tmp_path / "gone.jsonl", out), f"error: {tmp_path / 'gone.jsonl'}: cannot read the "
       "labels file: No such file or directory"),
      (["--benchmark", "sims", "--predictions", str(predictions), str(second), "--labels", str(labels)],
       f"error: {second}:1: field 'id': a second prediction for sims id 'v0' of checkpoint 'preds' (the first at "
       f"{predictions}:1)"),
      (_args(predictions, labels, out, "--judge", str(judge)), f"error: {judge}: judge settings are not JSON"),
      (_args(predictions, labels, out, "--judge", str(tmp_path / "j.json")), f"error: {tmp_path / 'j.json'}: "
       "cannot read the judge settings"),
      (_args(predictions, labels, out, "--checkpoint", "ckpt_9"), "error: --checkpoint 'ckpt_9': not among the "
       "predictions' checkpoints ['preds']"),
      (_args(predictions, labels, predictions), f"error: {predictions}: --out: cannot write"),
      (["--benchmark", "simz", "--predictions", str(predictions), "--labels", str(labels)],
       "error: --benchmark 'simz': unknown; known: avamerg, emer, merunibench, mintrec or a dataset of"),
  ]
  for args, start in cases:
    _fails(capsys, args, start)


def test_help_shows_one_valid_line_per_format(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    main(["--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  examples = [line.strip() for line in text.splitlines() if line.startswith("    {")]
  objects = [json.loads(line) for line in examples]
  assert [sorted(o) for o in objects[:1]] == [sorted(["id", "task", "dataset", "text", "answer", "think", "gates",
                                                      "checkpoint"])]  # a prediction line as infer writes it
  assert [o["task"] for o in objects[1:-1]] == ["mer", "msa", "ovmer", "mir", "erg", "eri"]
  assert set(objects[-1]) == {"base_url", "model", "seed"}
  predictions = _write(tmp_path / "preds.jsonl", examples[0] + "\n")
  labels = _write(tmp_path / "labels.jsonl", "\n".join(examples[1:-1]) + "\n")
  for benchmark in ("merunibench", "ovmerd"):  # the labels read; the OV-MERD item has the prediction
    code, err = _run(capsys, ["--benchmark", benchmark, "--predictions", str(predictions), "--labels", str(labels),
                              "--out", str(tmp_path / benchmark)])
    assert code == 0, err
