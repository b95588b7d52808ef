"""The demo's claim over seeds (`benchmarks.demo_seeds`): the table's arithmetic on hand-made runs, and the
slow run of the demo for seeds 0, 1, 2 whose mean held-out MER after P2E must be at least 3x chance."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import demo_seeds
from nanoemox_jax.demo import config, parts

ROOT = Path(__file__).resolve().parents[1]


def fake_run(workdir: Path, test: dict[str, float], dev: dict[str, float]) -> None:
  """A finished demo workdir's score files: phase3 on mercaptionplus (ovmer) and mintrec (mir)."""
  def sets(split: str, acc: dict[str, float]) -> dict:
    return {f"mercaptionplus_{split}": {"task": "ovmer", "n": 18, "accuracy": acc["ovmer"], "chance": 1 / 6},
            f"mintrec_{split}": {"task": "mir", "n": 24, "accuracy": acc["mir"], "chance": 0.125}}
  (workdir / "phase3").mkdir(parents=True)
  (workdir / config.TEST_SCORES).write_text(json.dumps({"phase3": sets("test", test)}))
  (workdir / "phase3" / "results.json").write_text(json.dumps({"held_out": sets("dev", dev)}))


def test_table_mean_sd_over_seeds(tmp_path, capsys):
  test = [{"ovmer": 0.5, "mir": 0.25}, {"ovmer": 2 / 3, "mir": 0.5}, {"ovmer": 0.75, "mir": 0.375}]
  dev = [{"ovmer": 1 / 6, "mir": 0.125}, {"ovmer": 1 / 3, "mir": 0.25}, {"ovmer": 0.5, "mir": 0.125}]
  for seed in range(3):
    fake_run(tmp_path / f"seed{seed}", test[seed], dev[seed])
  out = tmp_path / "table.json"
  assert demo_seeds.main(["--root", str(tmp_path), "--no-run", "--out", str(out)]) == 0
  rows = {r["dataset"]: r for r in json.loads(out.read_text())["rows"]}
  for dataset, task, chance in (("mercaptionplus", "ovmer", 1 / 6), ("mintrec", "mir", 0.125)):
    row = rows[dataset]
    assert row["phase"] == "phase3" and row["task"] == task
    for split, values in (("test", [t[task] for t in test]), ("dev", [d[task] for d in dev])):
      assert row[split]["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
      assert row[split]["sd"] == pytest.approx(statistics.stdev(values), abs=1e-12)
      assert row[split]["x_chance"] == pytest.approx(statistics.mean(values) / chance, abs=1e-12)
      assert list(row[split]["per_seed"].values()) == values
  assert "0.639 ± 0.127" in capsys.readouterr().out  # (0.5 + 0.667 + 0.75) / 3, sample sd


def test_missing_run_is_one_line(tmp_path, capsys):
  fake_run(tmp_path / "seed0", {"ovmer": 0.5, "mir": 0.5}, {"ovmer": 0.5, "mir": 0.5})
  assert demo_seeds.main(["--root", str(tmp_path), "--no-run", "--seeds", "0", "1"]) == 2
  assert capsys.readouterr().err == f"error: {tmp_path}: no finished run for seeds [1]\n"


def test_folder_of_other_settings_is_refused(tmp_path):
  """A corpus or parts folder finished with another seed (or before the dev split) is not silently reused."""
  (tmp_path / "manifests").mkdir()
  (tmp_path / "manifests" / parts.DONE).write_text("seed=0 per_class=12\n")  # a corpus without dev
  with pytest.raises(ValueError, match=r"manifests/DONE: written with 'seed=0 per_class=12', this run needs "
                                       r"'seed=1 per_class=12 splits=train,dev,test'; use another --workdir"):
    parts.ensure_corpus(tmp_path, seed=1)


@pytest.mark.slow
def test_demo_learns_over_seeds(tmp_path):
  """`python -m benchmarks.demo_seeds` (the demo for seeds 0, 1, 2, one after another; 75-120 min on 2 shared
  cores): mean held-out MIR after phase 2 above chance, mean MER (MER-Caption+ primary emotion, OV-MER, test
  split) after P2E at least 3x chance."""
  out = tmp_path / "demo_seeds.json"
  run = subprocess.run([sys.executable, "-m", "benchmarks.demo_seeds", "--root", str(tmp_path / "runs"), "--out",
                        str(out)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  print(run.stdout[-3000:])
  rows = {(r["phase"], r["dataset"]): r["test"] for r in json.loads(out.read_text())["rows"]}
  assert rows["phase2", "mintrec"]["mean"] > rows["phase2", "mintrec"]["chance"], rows["phase2", "mintrec"]
  mer = rows["phase3", "mercaptionplus"]
  assert len(mer["per_seed"]) == 3 and mer["mean"] >= 3 * mer["chance"], mer
