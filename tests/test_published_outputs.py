"""Issue 16 part 2: the output files the published models ship, scored by `evaluate` as their own scorers score them.

Fixtures (see tests/fixtures/README.md): `affectgpt_outputs/` is an excerpt (the first 12 names, epochs 30 and 35)
of AffectGPT's published MELD and SIMS outputs (raw answers, the judge's `-openset.npz` and
`-openset-sentiment.npz`; zeroQiaoba/AffectGPT @ 77d0200, Apache-2.0); `mer2024_ov/` the first 20 samples of
MERTools' `MER2024/ov_store` (Apache-2.0). Labels for the AffectGPT excerpt are written here in MERBench's
`label.npz` format. Expected numbers were printed by the reference scorers run on these same files: AffectGPT's
`hitrate_metric_calculation` and `evaluation-scoreonly.py`'s sentiment F1 (commit 77d0200), MERTools'
`calculate_openset_overlap_rate_mer2024`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nanoemox_jax.data import npz, prepare, published
from nanoemox_jax.evaluate import mer2024_ov
from nanoemox_jax.evaluate.__main__ import main as evaluate

FIXTURES = Path(__file__).parent / "fixtures"
OUTPUTS = FIXTURES / "affectgpt_outputs"
RUN = "emercoarse_highlevelfilter4_outputhybird_bestsetup_bestfusion_lz_20250110100"
MELD_EMO = [5, 5, 1, 1, 1, 0, 0, 1, 1, 5, 0, 3]  # indexes into anger, joy, sadness, neutral, disgust, fear, surprise
SIMS_VAL = [-0.8, -1.0, 0.6, 0.8, 0.4, 1.0, 0.0, 0.2, -0.6, -0.2, -1.0, 0.4]
# checkpoint -> (MELD hit rate, SIMS weighted F1, SIMS accuracy), printed by AffectGPT's scorer on these files
REFERENCE = {"checkpoint_000030_loss_0.602": (0.7090909090909091, 0.9075369075369075, 0.9090909090909091),
             "checkpoint_000035_loss_0.597": (0.7272727272727273, 0.9075369075369075, 0.9090909090909091)}


def _names(dataset: str) -> list[str]:
  return npz.load(OUTPUTS / f"results-{dataset}" / RUN / "checkpoint_000030_loss_0.602-openset.npz")["filenames"]


def _labels(tmp_path: Path) -> Path:
  """MERBench label files for the excerpt's names, prepared into one manifest."""
  for dataset, corpus in (("meld", {n: {"emo": e, "val": -10} for n, e in zip(_names("meld"), MELD_EMO)}),
                          ("sims", {n: {"emo": 0, "val": np.float64(v)} for n, v in zip(_names("sims"), SIMS_VAL)})):
    (tmp_path / dataset).mkdir()
    np.savez(tmp_path / dataset / "label.npz", train_corpus={}, val_corpus={}, test_corpus=corpus)
  manifest = tmp_path / "test.jsonl"
  assert prepare.main(["--source", f"meld={tmp_path / 'meld'}", "--source", f"sims={tmp_path / 'sims'}",
                       "--split", "test", "--out", str(manifest)]) == 0
  return manifest


def test_affectgpt_outputs_score_as_its_scorer(tmp_path, capsys):
  manifest = _labels(tmp_path)
  out = tmp_path / "report"
  assert evaluate(["--benchmark", "merunibench", "--predictions", str(OUTPUTS / "results-*" / "*" / "*.npz"),
                   "--labels", str(manifest), "--select", "best", "--model-name", "AffectGPT",
                   "--out", str(out)]) == 0  # --judge none: the judge's files on disk are used, nothing is asked
  table = capsys.readouterr().out
  report = json.loads((out / "scores.json").read_text())
  for checkpoint, (hit, f1, accuracy) in REFERENCE.items():
    scores = report["checkpoints"][checkpoint]
    assert scores["meld"]["scores"]["hit_rate"] == pytest.approx(hit, abs=1e-12)
    assert scores["sims"]["scores"]["weighted_f1"] == pytest.approx(f1, abs=1e-12)
    assert scores["sims"]["scores"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert scores["meld"]["n"] == scores["sims"]["n"] == 12
  assert report["selected"]["meld"]["checkpoint"] == "checkpoint_000035_loss_0.597"  # the reference's argmax
  assert "| AffectGPT | - | - | 72.73 | - | - | - | 90.75 | - | - |" in table
  assert "- judge: none; 48 judge replies read from the predictions, used without a query" in (
      out / "report.md").read_text()


def test_published_reader(tmp_path):
  epoch = OUTPUTS / "results-sims" / RUN / "checkpoint_000030_loss_0.602"
  pairs = published.read([f"{epoch}.npz"])
  where, p = pairs[1]
  assert (p.dataset, p.task, p.id, p.checkpoint) == ("sims", "msa", "video_0010_0038", epoch.name)
  assert where == f"{epoch}.npz name 'video_0010_0038'"
  # the judge's list (on disk) differs from the answer's: the judge dropped "overwhelmed"
  assert "overwhelmed" in p.text and p.openset == "[concern, anxiety, frustration, stress]"
  assert p.sentiment == "negative"
  # any of an epoch's files names the epoch, which is read once
  judge_files = [f"{epoch}-openset.npz", f"{epoch}-openset-sentiment.npz"]
  assert published.read([f"{epoch}.npz", *judge_files]) == pairs == published.read(judge_files[:1])
  # judge files without their raw file give predictions without text
  alone = tmp_path / "results-cmumosi" / "run"
  alone.mkdir(parents=True)
  shutil.copy(judge_files[1], alone / "ep1-openset-sentiment.npz")
  preds = [p for _, p in published.read([alone / "ep1-openset-sentiment.npz"])]
  assert [(p.dataset, p.text, p.openset, p.sentiment) for p in preds[:1]] == [("mosi", "", None, "negative")]


def test_npz_refuses_code(tmp_path):
  class Payload:
    def __reduce__(self):
      return (os.system, ("echo unsafe",))

  np.savez(tmp_path / "evil.npz", name2reason=np.array(Payload(), dtype=object))
  with pytest.raises(npz.NpzError, match="refused"):
    npz.load(tmp_path / "evil.npz")
  np.savez(tmp_path / "ok.npz", name2reason={"a": "x"}, n=np.arange(3, dtype=np.float32))
  assert npz.load(tmp_path / "ok.npz") == {"name2reason": {"a": "x"}, "n": [0.0, 1.0, 2.0]}


@pytest.mark.parametrize("case", ["no_results_folder", "unknown_dataset", "code_in_pickle", "not_npz", "bad_items"])
def test_published_errors_exit_2(tmp_path, capsys, case):
  manifest = _labels(tmp_path)
  folder = tmp_path / ("results-nosuch" if case == "unknown_dataset" else "results-meld") / "run"
  folder.mkdir(parents=True)
  path = (tmp_path / "ep.npz") if case == "no_results_folder" else folder / "ep.npz"
  if case == "code_in_pickle":
    np.savez(path, name2reason=np.array(os.system, dtype=object))
  elif case == "not_npz":
    path.write_text("not a zip")
  elif case == "bad_items":
    np.savez(path.with_name("ep-openset.npz"), filenames=["a", "b"], fileitems=["[x]"])
    path = path.with_name("ep-openset.npz")
  else:
    np.savez(path, name2reason={"test_dia0_utt0": "happy"})
  capsys.readouterr()
  assert evaluate(["--benchmark", "merunibench", "--predictions", str(path), "--labels", str(manifest),
                   "--out", str(tmp_path / "r")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "\n" not in err and str(path) in err and "Traceback" not in err


def test_mer2024_ov_store(capsys):
  d = FIXTURES / "mer2024_ov"
  assert mer2024_ov.main(["--gt", str(d / "check-openset.csv"), "--pred", str(d / "predict-openset.csv"),
                          "--synonyms", str(d / "openset-synonym")]) == 0
  out = capsys.readouterr().out
  # MERTools' calculate_openset_overlap_rate_mer2024 on these 20 samples: (0.5166666666666666, 0.4708333333333333)
  accuracy, recall = (float(x.split(":")[1]) for x in out.splitlines()[1].split(";"))
  assert accuracy == pytest.approx(0.5166666666666666, abs=1e-12)
  assert recall == pytest.approx(0.4708333333333333, abs=1e-12)


def test_mer2024_rules_by_hand():
  assert mer2024_ov.string_to_list("['a', 'b c']") == ["a", "b c"]
  assert mer2024_ov.string_to_list("x ['a', ' b'] y") == ["a", " b"]  # pieces are not stripped
  assert mer2024_ov.string_to_list("") == []
  assert mer2024_ov.synonym_groups("[['joyful', 'happy'], ['worried']]") == [["joyful", "happy"], ["worried"]]
  s = mer2024_ov.scores({"x": "['Happy', 'sad']", "y": "['angry']"}, {"x": "['joyful']", "y": "[]"},
                        {"x": "[['happy', 'joyful'], ['sad']]", "y": "[['angry']]"})
  # x: gt {happy, sad}, pred {happy} -> accuracy 1, recall 1/2; y: empty prediction -> 0, 0
  assert (s["accuracy"], s["recall"], s["score"]) == (0.5, 0.25, 0.375)
