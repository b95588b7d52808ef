"""Issue 16 part 1: the nine MER-UniBench test sets prepared into one manifest from their label files (MERBench's
`label.npz` family and OV-MERD's track-2 CSV, in the formats of zeroQiaoba/MERTools `MERBench/dataset/` as checked
against the real files), one predictions file (written here: the true label for some items, a wrong one for the
others) and one `evaluate` run give all nine columns, each asserted against a hand count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nanoemox_jax.data import prepare
from nanoemox_jax.evaluate.__main__ import main as evaluate

WRONG = {"happy": "sad", "sad": "happy", "angry": "happy", "worried": "happy", "joy": "sadness",
         "sadness": "joy", "anger": "joy", "positive": "negative", "negative": "positive"}


def _corpus(items: dict[str, tuple]) -> dict:
  """{name: {"emo", "val"}} as MERBench stores it (numpy float valences for the MSA sets)."""
  return {name: {"emo": emo, "val": val} for name, (emo, val) in items.items()}


def write_labels(root) -> dict[str, str]:
  """The nine label files; returns dataset -> its file (the --source argument)."""
  files = {}

  def npz(dataset, name, **members):
    path = root / dataset / name
    path.parent.mkdir()
    np.savez(path, **{k: _corpus(v) for k, v in members.items()})
    files[dataset] = str(path)

  train = {"sample_00000001": ("neutral", 0.0)}
  npz("mer2023", "label-6way.npz", train_corpus=train, test1_corpus={
      "sample_00000010": ("happy", 1.0), "sample_00000011": ("sad", -1.0), "sample_00000012": ("angry", -2.0),
      "sample_00000013": ("worried", -1.0)}, test2_corpus={}, test3_corpus={})
  (root / "mer2023" / "transcription-engchi-polish.csv").write_text(
      "name,chinese,english\nsample_00000010,你好。,Hello there.\n", encoding="utf-8")
  npz("mer2024", "label-6way.npz", train_corpus=train,
      test1_corpus={"sample_00000020": ("sad", -10), "sample_00000021": ("worried", -10)})
  # MELD: emo indexes anger, joy, sadness, neutral, ...; names carry the split
  npz("meld", "label.npz", train_corpus={"train_dia0_utt0": (3, -10)}, val_corpus={},
      test_corpus={"test_dia0_utt0": (1, -10), "test_dia0_utt1": (2, -10), "test_dia1_utt0": (0, -10),
                   "test_dia1_utt1": (1, -10)})
  # IEMOCAP: one corpus, Session 5 is the test split; emo indexes happy, sad, neutral, anger
  npz("iemocap", "label_4way.npz", whole_corpus={
      "Ses01F_impro01_F000": (0, -10), "Ses05F_impro01_F000": (0, -10), "Ses05F_impro01_M001": (1, -10),
      "Ses05M_script01_1_F002": (3, -10)})
  f32, f64 = np.float32, np.float64
  npz("mosi", "label.npz", train_corpus={}, val_corpus={}, test_corpus={
      "k5Y_838nuGo_1": (0, f64(1.2)), "k5Y_838nuGo_2": (0, f64(-0.8)), "k5Y_838nuGo_3": (0, f64(0.0)),
      "k5Y_838nuGo_4": (0, f64(2.0))})
  npz("mosei", "label.npz", train_corpus={}, val_corpus={}, test_corpus={
      "uogwnZGb-iE_2": (0, f32(4 / 3)), "uogwnZGb-iE_4": (0, f32(-1 / 3))})
  # SIMS and SIMSv2 share item names; their labels differ
  npz("sims", "label.npz", train_corpus={}, val_corpus={}, test_corpus={
      "video_0001_0003": (0, f64(-1.0)), "video_0001_0006": (0, f64(0.6)), "video_0002_0001": (0, f64(-0.4))})
  npz("simsv2", "label.npz", train_corpus={}, val_corpus={}, test_corpus={
      "video_0001_0003": (0, 0.8), "video_0001_0006": (0, -0.6)})
  ov = root / "ovmerd" / "track2_train_ovmerd.csv"
  ov.parent.mkdir()
  ov.write_text('name,openset\nsample_00000007,"[\'happy\', \'sad\']"\nsample_00000033,"[\'angry\']"\n',
                encoding="utf-8")
  files["ovmerd"] = str(ov)
  return files


def answer(task: str, label: str) -> str:
  return f"The character's {'sentiment' if task == 'msa' else 'emotional'} state is {label}."


# (dataset, id) -> answered right? (the rest of the test sets is answered wrong)
RIGHT = {("mer2023", "sample_00000010"), ("mer2023", "sample_00000011"), ("mer2023", "sample_00000012"),
         ("mer2024", "sample_00000020"), ("meld", "test_dia0_utt0"), ("meld", "test_dia1_utt0"),
         ("iemocap", "Ses05F_impro01_M001"), ("mosi", "k5Y_838nuGo_1"), ("mosi", "k5Y_838nuGo_4"),
         ("mosi", "k5Y_838nuGo_3"), ("mosei", "uogwnZGb-iE_2"), ("mosei", "uogwnZGb-iE_4"),
         ("sims", "video_0001_0003"), ("sims", "video_0001_0006"), ("simsv2", "video_0001_0003"),
         ("ovmerd", "sample_00000007")}


def test_nine_columns_from_one_manifest(tmp_path, capsys):
  files = write_labels(tmp_path)
  manifest = tmp_path / "merunibench_test.jsonl"
  argv = [a for d, f in files.items() for a in ("--source", f"{d}={f}")]
  assert prepare.main([*argv, "--split", "test", "--out", str(manifest)]) == 0
  records = [json.loads(line) for line in manifest.read_text().splitlines()]
  assert len(records) == 4 + 2 + 4 + 3 + 4 + 2 + 3 + 2 + 2  # IEMOCAP: Session 5 only
  assert [r["subtitle"] for r in records[:2]] == ["Hello there.", ""]  # MER2023 subtitles: the English column
  summary = json.loads(manifest.with_suffix(".summary.json").read_text())
  assert summary["datasets"]["sims"]["records"] == 3 and summary["datasets"]["iemocap"]["records"] == 3
  preds = tmp_path / "preds.jsonl"
  with open(preds, "w") as f:
    for r in records:
      truth = "happy, sad" if r["dataset"] == "ovmerd" and r["id"] == "sample_00000007" else r["labels"][0]
      label = truth if (r["dataset"], r["id"]) in RIGHT else WRONG.get(truth, "happy")
      f.write(json.dumps({"id": r["id"], "task": r["task"], "dataset": r["dataset"],
                          "text": answer(r["task"], label)}) + "\n")
  capsys.readouterr()
  out = tmp_path / "report"
  assert evaluate(["--benchmark", "merunibench", "--predictions", str(preds), "--labels", str(manifest),
                   "--model-name", "stub answers", "--out", str(out)]) == 0
  table = capsys.readouterr().out
  scores = json.loads((out / "scores.json").read_text())["selected"]
  main = {d: s["scores"][s["main"]] for d, s in scores.items()}
  # Hit rates: every label used maps to a class on all five wheels and each wrong answer to another class.
  # MSA: items of valence 0 dropped; weighted F1 = sum over classes of support * F1 / n.
  expected = {
      "mer2023": 3 / 4, "mer2024": 1 / 2, "meld": 2 / 4, "iemocap": 1 / 3,
      # truth (+, -, +) answered (+, +, +): F1(+) = 2*(2/3)*1/(2/3+1) = 0.8 on 2 items, F1(-) = 0 on 1
      "mosi": 0.8 * 2 / 3,
      "mosei": 1.0,
      # truth (-, +, -) answered (-, +, +): F1(-) = 2/3 on 2, F1(+) = 2/3 on 1
      "sims": 2 / 3,
      # truth (+, -) answered (+, +): F1(+) = 2/3 on 1, F1(-) = 0 on 1
      "simsv2": 1 / 3,
      # item 1 exact (precision = recall = 1), item 2 wrong (0, 0) -> per wheel P = R = 0.5, F = 0.5
      "ovmerd": 0.5,
  }
  assert main == pytest.approx(expected, abs=1e-12)
  row = next(line for line in table.splitlines() if line.startswith("| stub answers |"))
  assert "–" not in row and row.count("|") == 12  # model, nine columns, average
  average = json.loads((out / "scores.json").read_text())["average"]
  assert average["value"] == pytest.approx(sum(expected.values()) / 9) and len(average["datasets"]) == 9


def test_other_benchmarks_in_one_manifest(tmp_path):
  """EMER, MIntRec, MIntRec2.0 and AvaMERG test sets join the same manifest (fixtures in the authors' formats)."""
  fixtures = Path(__file__).parent / "fixtures"
  emer = tmp_path / "gt-eng.csv"
  emer.write_text("names,emotions,subtitles,reasons\nsample_00000007,worried,I failed.,She frowns.\n", encoding="utf-8")
  out = tmp_path / "others.jsonl"
  assert prepare.main(["--source", f"emer={emer}", "--source", f"mintrec={fixtures / 'mintrec/train_MIntRec_ann.json'}",
                       "--source", f"mintrec2={fixtures / 'mintrec2/train_MIntRec2_ann.json'}",
                       "--source", f"avamerg={fixtures / 'avamerg/train.json'}", "--split", "test",
                       "--out", str(out)]) == 0
  records = [json.loads(line) for line in out.read_text().splitlines()]
  counts = {d: sum(r["dataset"] == d for r in records) for d in ("emer", "mintrec", "mintrec2", "avamerg")}
  assert counts == {"emer": 1, "mintrec": 60, "mintrec2": 60, "avamerg": 40}  # AvaMERG test: last turn of each
  assert {r["split"] for r in records} == {"test"}
  assert len({(r["dataset"], r["id"]) for r in records}) == len(records)


@pytest.mark.parametrize("argv, message", [
    (["--source", "meld=a", "--source", "meld=b"], "dataset 'meld' given twice"),
    (["--source", "meld"], "expected NAME=SRC"),
    (["--source", "nosuch=a"], "unknown dataset 'nosuch'"),
    (["--source", "meld=a", "--dataset", "meld", "--src", "a"], "not both"),
    ([], "pass --dataset and --src"),
])
def test_prepare_sources_errors(tmp_path, capsys, argv, message):
  assert prepare.main([*argv, "--out", str(tmp_path / "m.jsonl")]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and "\n" not in err


def test_merbench_file_errors(tmp_path, capsys):
  np.savez(tmp_path / "label.npz", test_corpus={"test_dia0_utt0": {"emo": 9, "val": -10}})
  out = str(tmp_path / "m.jsonl")
  assert prepare.main(["--dataset", "meld", "--src", str(tmp_path / "label.npz"), "--out", out]) == 2
  assert "field 'emo': expected an index below 7, got 9" in capsys.readouterr().err
  np.savez(tmp_path / "label.npz", train_corpus={})
  assert prepare.main(["--dataset", "sims", "--src", str(tmp_path), "--out", out]) == 2
  assert "no member 'test_corpus'" in capsys.readouterr().err
