"""`python -m nanoemox_jax.train` end to end on the tiny preset and a small demo corpus: exact resume after
SIGTERM and SIGKILL, phase chaining, curriculum strategies, bad-config errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.data.manifest import read_jsonl, write_jsonl
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.demo import config as demo_config
from nanoemox_jax.train.telemetry import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = BUNDLED
STEPS = 6


@pytest.fixture(scope="module")
def assets(demo_assets) -> dict[str, Path]:
  """A small demo corpus and tiny-preset parts (conftest's, made once per session), shared by every run below."""
  return demo_assets


def flags(assets: dict[str, Path], config: str = "configs/phase1a.py:tiny", phases: tuple[str, ...] = ("phase1a",)
          ) -> list[str]:
  """Command-line flags: the tiny preset on the shared assets (the demo's datasets), `STEPS` steps of each phase,
  each logged."""
  out = ["--config", config, f"--config.paths.parts={assets['model']}", f"--config.paths.data={assets['manifests']}",
         "--config.precision.tower_dtype=float32", "--config.precision.compute_dtype=float32"]
  for name in phases:
    p = f"--config.phases.{name}."
    out += [f"{p}data.train={demo_config.DATASETS[name]!r}", f"{p}data.batch_size=2", f"{p}data.accumulation=2", f"{p}data.workers=0", f"{p}data.buckets=(256, 384)",
            f"{p}optim.steps={STEPS}", f"{p}optim.warmup_steps=1", f"{p}optim.learning_rate=3e-3", f"{p}seed=0",
            f"{p}log_every=1", f"{p}checkpoint_every=2", f"{p}evaluate=False"]
  return out


def train(workdir: Path, args: list[str], *extra: str, wait: bool = True, timeout: float = 600
          ) -> subprocess.Popen | subprocess.CompletedProcess:
  cmd = [sys.executable, "-m", "nanoemox_jax.train", "--workdir", str(workdir), *args, *extra]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def wait_for_step(proc: subprocess.Popen, metrics: Path, step: int, timeout: float = 300) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if metrics.exists() and any(m["step"] >= step for m in read_metrics(metrics)):
      return
    assert proc.poll() is None, proc.stdout.read()
    time.sleep(0.2)
  proc.kill()
  raise AssertionError(f"no step {step} in {metrics} after {timeout} s")


def adapters(workdir: Path, phase: str = "phase1a", folder: Path | None = None) -> dict[str, np.ndarray]:
  """The trainable parameters of a model folder (default: the phase's final `model/`)."""
  path = (folder or workdir / phase / "model") / "adapters" / "params"
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # also for a model saved by several processes
  with ocp.StandardCheckpointer() as ckpt:
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          ckpt.metadata(path).item_metadata.tree)
    tree = ckpt.restore(path, target)
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def losses(workdir: Path, phase: str = "phase1a") -> list[tuple[int, float]]:
  return [(m["step"], m["loss"]) for m in read_metrics(workdir / phase / "metrics.jsonl")]


def test_killed_run_resumes_exactly(assets, tmp_path):
  args = flags(assets)
  whole = train(tmp_path / "whole", args)
  assert whole.returncode == 0, whole.stdout + whole.stderr
  expected = losses(tmp_path / "whole")
  assert [s for s, _ in expected] == list(range(1, STEPS + 1))

  work = tmp_path / "killed"
  metrics = work / "phase1a" / "metrics.jsonl"
  proc = train(work, args, wait=False)
  wait_for_step(proc, metrics, 2)
  proc.send_signal(signal.SIGTERM)  # saves, then exits 128 + 15
  assert proc.wait(timeout=120) == 128 + signal.SIGTERM, proc.stdout.read()
  proc = train(work, args, "--resume", wait=False)
  wait_for_step(proc, metrics, 4)
  os.kill(proc.pid, signal.SIGKILL)  # no chance to save: resumes from the last periodic checkpoint
  proc.wait(timeout=60)
  assert not (work / "phase1a" / "results.json").exists()
  again = train(work, args, "--resume")
  assert again.returncode == 0, again.stdout + again.stderr
  assert losses(work) == expected  # bit-identical loss sequence, no duplicated or missing step
  want, got = adapters(tmp_path / "whole"), adapters(work)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  results = json.loads((work / "phase1a" / "results.json").read_text())
  assert 2 <= results["resumed_from"] < STEPS and results["steps"] == STEPS
  assert (work / "phase1a" / "model" / "tokenizer" / "vocab.json").exists()  # what `nanoemox_jax.infer` reads
  for name in ("loss.png", "metrics.jsonl"):
    assert (work / "phase1a" / name).stat().st_size > 0
  assert list((work / "phase1a" / "tensorboard").iterdir())


def test_export_turns_kept_checkpoints_into_the_models_the_run_exported(assets, tmp_path):
  """`train.export --all` rebuilds each kept checkpoint (steps 2, 4, 6 of checkpoint_every=2) into a model folder
  equal, bit for bit, to the one the run exported live at that step (`export_every=2`); the last equals `model/`,
  and infer's loader reads it. A step that was not kept is one line and exit 2."""
  work = tmp_path / "run"
  done = train(work, flags(assets), "--config.phases.phase1a.export_every=2")
  assert done.returncode == 0, done.stdout + done.stderr
  cmd = [sys.executable, "-m", "nanoemox_jax.train.export", "--workdir", str(work), "--phase", "phase1a"]
  exported = subprocess.run(cmd + ["--all", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
  assert exported.returncode == 0, exported.stdout + exported.stderr
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["step_2", "step_4", "step_6"]
  for step in (2, 4, 6):
    live = adapters(work, folder=work / "phase1a" / "exports" / f"step_{step}")
    again = adapters(work, folder=tmp_path / "out" / f"step_{step}")
    assert live.keys() == again.keys()
    for key in live:
      np.testing.assert_array_equal(again[key], live[key], err_msg=f"step {step} {key}")
  final = adapters(work)
  assert any(not np.array_equal(final[k], v) for k, v in adapters(work, folder=tmp_path / "out" / "step_2").items())
  for key, value in adapters(work, folder=tmp_path / "out" / "step_6").items():
    np.testing.assert_array_equal(value, final[key], err_msg=key)
  assert parts.load(tmp_path / "out" / "step_4").config == parts.load(work / "phase1a" / "model").config
  missing = subprocess.run(cmd + ["--step", "3", "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
  assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
  assert "no checkpoint of step(s) [3]" in missing.stderr and "kept: [2, 4, 6]" in missing.stderr


def test_dry_run_checks_inputs_and_prints_the_phase3_mixture_without_training(assets, tmp_path):
  """Phase 3 on the demo corpus: the report gives the paper's task shares over 10,000 draws (within 2 points),
  the authors' budget and one timed update, and writes nothing. A missing manifest and an unreadable video are
  both listed (exit 2)."""
  args = flags(assets, config=f"{ROOT / 'configs/phase3.py'}:tiny", phases=("phase3",))
  cmd = [sys.executable, "-m", "nanoemox_jax.train", *args, "--dry-run"]
  done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout + done.stderr
  assert "no problems found" in done.stdout and list(tmp_path.iterdir()) == []
  line = next(x for x in done.stdout.splitlines() if "draws:" in x)
  shares = {t: float(v) for t, v in re.findall(r"(\w+) ([\d.]+)%", line)}
  for task, want in {"mer": 18, "ovmer": 28, "mir": 5, "eri": 31, "erg": 18}.items():
    assert abs(shares[task] - want) <= 2, line
  assert f"{STEPS:,} updates of 4 = {4 * STEPS:,} samples; one update" in done.stdout

  data = tmp_path / "data"  # the corpus with a missing training set and a corrupt video
  shutil.copytree(assets["manifests"], data)
  records = read_jsonl(data / "mintrec_train.jsonl")
  (tmp_path / "broken.mp4").write_bytes(b"not a video")
  write_jsonl([dataclasses.replace(records[0], video=str(tmp_path / "broken.mp4"))] + records[1:],
              data / "mintrec_train.jsonl")
  (data / "avamerg_train.jsonl").unlink()
  bad = subprocess.run(cmd + [f"--config.paths.data={data}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900)
  assert bad.returncode == 2, bad.stdout + bad.stderr
  assert "problems (3):" in bad.stdout, bad.stdout  # the video, its audio track, the manifest
  assert f"{data / 'avamerg_train.jsonl'} does not exist" in bad.stdout
  assert f"record {records[0].id!r}" in bad.stdout and "broken.mp4" in bad.stdout


def test_held_out_scores_resume_after_the_last_update_and_existing_runs_need_resume(assets, tmp_path):
  args = flags(assets) + ["--config.phases.phase1a.optim.steps=2", "--config.phases.phase1a.evaluate=True",
                          "--config.phases.phase1a.eval_max_new_tokens=4"]
  first = train(tmp_path, args)
  assert first.returncode == 0, first.stdout + first.stderr
  results = json.loads((tmp_path / "phase1a" / "results.json").read_text())
  assert results["held_out"]["cremad_test"]["n"] > 0
  refused = train(tmp_path, args)  # an existing run needs --resume
  assert refused.returncode == 2 and "--resume" in refused.stderr
  (tmp_path / "phase1a" / "results.json").unlink()  # as if stopped while scoring
  again = train(tmp_path, args, "--resume")
  assert again.returncode == 0, again.stdout + again.stderr
  assert json.loads((tmp_path / "phase1a" / "results.json").read_text())["held_out"] == results["held_out"]


def test_held_out_scoring_counts_classification_tasks_only(assets, tmp_path):
  """ERI descriptions and ERG replies are free text: the held-out table scores MER / OV-MER / MIR records."""
  import collections

  from nanoemox_jax.train.loop import evaluate

  mer = assets["manifests"] / "mercaptionplus_test.jsonl"
  records = read_jsonl(mer) + read_jsonl(assets["manifests"] / "mintrec_test.jsonl")
  write_jsonl(records, tmp_path / "mixed.jsonl")
  out = evaluate(parts.load(assets["model"]), Tokenizer(TOKENIZER), {"mixed": tmp_path / "mixed.jsonl", "mer": mer},
                 batch_size=4, max_new_tokens=4)
  tasks = collections.Counter(r.task for r in records)
  assert tasks["eri"] > 0 and set(out) == {"mixed:ovmer", "mixed:mir", "mer"}
  assert out["mer"]["n"] == out["mixed:ovmer"]["n"] == tasks["ovmer"] and out["mixed:mir"]["n"] == tasks["mir"]
  truth = collections.Counter(r.labels[0] for r in records if r.task == "ovmer")
  assert out["mer"]["chance"] == pytest.approx(max(truth.values()) / tasks["ovmer"])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["joint", "reverse"])
def test_curriculum_strategies_run_end_to_end(assets, tmp_path, strategy):
  phases = {"joint": ("joint",), "reverse": ("phase3", "phase2", "phase1b", "phase1a")}[strategy]
  args = flags(assets, "configs/p2e.py:tiny", phases) + [f"--config.strategy={strategy}", "--config.baseline=False"]
  args += [f"--config.phases.{name}.optim.steps=2" for name in phases]
  run = train(tmp_path, args)
  assert run.returncode == 0, run.stdout + run.stderr
  for name in phases:
    results = json.loads((tmp_path / name / "results.json").read_text())
    assert results["steps"] == 2 and np.isfinite(results["final"]["loss"])


@pytest.mark.slow
def test_two_process_run_on_loopback(assets, tmp_path):
  """`jax.distributed` with 2 CPU processes on 127.0.0.1: process-sharded data, one global mesh, same losses."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  args = flags(assets) + ["--config.phases.phase1a.optim.steps=3", "--config.phases.phase1a.checkpoint_every=100",
                          f"--config.distributed.coordinator=127.0.0.1:{port}", "--config.distributed.num_processes=2"]
  procs = [train(tmp_path, args, f"--config.distributed.process_id={i}", wait=False) for i in range(2)]
  try:
    outputs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert "2 process(es)" in outputs[0]
  logged = losses(tmp_path)
  assert [s for s, _ in logged] == [1, 2, 3] and all(np.isfinite(v) for _, v in logged)
  assert adapters(tmp_path)  # the exported model is readable
