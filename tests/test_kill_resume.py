"""SIGKILL at several points of a short phase (tiny preset, the training-loop tests' corpus), `--resume` after each,
and the end equals an uninterrupted run: the loss sequence, every trainable leaf of `model/` and of the live exports,
and the held-out scores. 8 points, each reached by the run resumed from the kill before: while the frozen-tower
features are built, as soon as each of updates 1-5 is logged (a checkpoint every update, written asynchronously, so
kills land in or next to a checkpoint write), once the first live export (`export_every=3`) has begun, and once
`model/` exists (held-out scoring). Passed 2026-12-05 in 819 s on 2 cores shared with other test runs.

Then 20 points across a short P2E run (phases 1a -> 1b -> 2 -> 3, 3 updates each, tiny preset) plus inference with its
last model (`TRAIN_POINTS`, `INFER_POINTS`): losses and every phase's `model/` trainable leaves bitwise, and the
6 greedy answers, equal an uninterrupted run. Passed 2026-12-05 in 2,062 s (34 min, 61 s of it the shared setup) on
2 cores shared with other work, killed at all 20 points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import test_train_loop
from tests.test_train_loop import adapters, flags, losses, train
from nanoemox_jax.data.manifest import write_jsonl
from nanoemox_jax.data.predictions import read_records
from nanoemox_jax.train.telemetry import read_metrics

assets = test_train_loop.assets  # the small demo corpus and tiny parts of the training-loop tests
PHASE, STEPS = "phase1a", 6


def _logged(step: int) -> Callable[[Path], bool]:
  return lambda w: (w / PHASE / "metrics.jsonl").exists() and any(
      m["step"] >= step for m in read_metrics(w / PHASE / "metrics.jsonl"))


POINTS: dict[str, Callable[[Path], bool]] = {
    "building_features": lambda w: (w / "features").exists(),
    **{f"after_update_{k}": _logged(k) for k in range(1, STEPS)},
    "exporting": lambda w: any((w / PHASE / "exports").glob(".step_*.partial")) or (w / PHASE / "exports").exists(),
    "scoring": lambda w: (w / PHASE / "model" / "nanoemox.json").exists(),
}


@pytest.mark.slow  # 819 s on 2 busy cores: one process start and compile per point
def test_killed_at_each_point_and_resumed_equals_an_uninterrupted_run(assets, tmp_path):
  p = f"--config.phases.{PHASE}."
  args = flags(assets) + [f"{p}checkpoint_every=1", f"{p}export_every=3", f"{p}evaluate=True",
                          f"{p}eval_max_new_tokens=6"]
  whole = train(tmp_path / "whole", args)
  assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
  work, killed = tmp_path / "killed", []
  for name, reached in POINTS.items():
    if (work / PHASE / "results.json").exists():
      break
    proc = train(work, args, "--resume", wait=False)
    deadline = time.monotonic() + 600
    while proc.poll() is None and not reached(work) and time.monotonic() < deadline:
      time.sleep(0.05)
    if proc.poll() is None:
      os.kill(proc.pid, signal.SIGKILL)
      killed.append(name)
    proc.wait(timeout=60)
  print(f"killed at {len(killed)} points: {killed}")
  assert len(killed) >= 6, killed
  done = train(work, args, "--resume")
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  assert losses(work) == losses(tmp_path / "whole")
  for folder in ("model", "exports/step_3", "exports/step_6"):
    want = adapters(tmp_path / "whole", folder=tmp_path / "whole" / PHASE / folder)
    got = adapters(work, folder=work / PHASE / folder)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{folder} {key}")
  held_out = [json.loads((w / PHASE / "results.json").read_text())["held_out"] for w in (tmp_path / "whole", work)]
  assert held_out[0] == held_out[1]
  assert not list((work / PHASE).rglob(".*.partial"))


# ------------------------------------------------------------------- 20 points across a short P2E run + inference

P2E = ("phase1a", "phase1b", "phase2", "phase3")
P2E_STEPS = 3


def _phase_points(phase: str) -> dict[str, Callable[[Path], bool]]:
  def logged(step: int) -> Callable[[Path], bool]:
    return lambda w: (w / phase / "metrics.jsonl").exists() and any(
        m["step"] >= step for m in read_metrics(w / phase / "metrics.jsonl"))
  short = phase.removeprefix("phase")
  started = {} if phase == "phase1a" else {f"{short}_started": lambda w: (w / phase).exists()}
  return {**started, **{f"{short}_after_update_{k}": logged(k) for k in (1, 2)},
          f"{short}_model_written": lambda w: (w / phase / "model" / "nanoemox.json").exists()}


# 16 training points (the feature build; per phase: its folder made (1b, 2, 3), updates 1 and 2 logged with a
# checkpoint every update, its model/ written) and 4 inference points (1, 2, 3 and 5 of 6 predictions appended).
TRAIN_POINTS: dict[str, Callable[[Path], bool]] = {
    "building_features": lambda w: (w / "features").exists(),
    **{name: reached for phase in P2E for name, reached in _phase_points(phase).items()}}
INFER_POINTS = {f"infer_after_{k}": k for k in (1, 2, 3, 5)}


def _kill_when(proc, reached: Callable[[], bool], timeout: float = 600) -> bool:
  """SIGKILL `proc` once `reached()`; False if it ended first."""
  deadline = time.monotonic() + timeout
  while proc.poll() is None and not reached() and time.monotonic() < deadline:
    time.sleep(0.05)
  if proc.poll() is not None:
    return False
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)
  return True


def _infer(model: Path, manifest: Path, out: Path, wait: bool = True):
  cmd = [sys.executable, "-m", "nanoemox_jax.infer", "--checkpoint", str(model), "--manifest", str(manifest),
         "--out", str(out), "--batch-size", "1", "--max-new-tokens", "6"]
  if not wait:
    return subprocess.Popen(cmd, cwd=test_train_loop.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return subprocess.run(cmd, cwd=test_train_loop.ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # 2,062 s on 2 busy cores: one process start and compile per point
def test_killed_at_20_points_of_p2e_and_inference_equals_an_uninterrupted_run(assets, tmp_path):
  args = flags(assets, "configs/p2e.py:tiny", P2E) + ["--config.baseline=False"]
  args += [f"--config.phases.{name}.{k}" for name in P2E
           for k in (f"optim.steps={P2E_STEPS}", "checkpoint_every=1")]
  whole = train(tmp_path / "whole", args)
  assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
  work, killed = tmp_path / "killed", []
  for name, reached in TRAIN_POINTS.items():
    if (work / P2E[-1] / "results.json").exists():
      break
    if _kill_when(train(work, args, "--resume", wait=False), lambda: reached(work)):
      killed.append(name)
  done = train(work, args, "--resume")
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  for phase in P2E:
    assert losses(work, phase) == losses(tmp_path / "whole", phase), phase
    want, got = adapters(tmp_path / "whole", phase), adapters(work, phase)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{phase} {key}")

  records = [r for d in ("mintrec", "cremad") for r in read_records(assets["manifests"] / f"{d}_test.jsonl")[:3]]
  write_jsonl(records, tmp_path / "infer.jsonl")
  ref = _infer(tmp_path / "whole" / P2E[-1] / "model", tmp_path / "infer.jsonl", tmp_path / "whole.preds.jsonl")
  assert ref.returncode == 0, ref.stderr[-2000:]
  out = tmp_path / "killed.preds.jsonl"
  for name, lines in INFER_POINTS.items():
    proc = _infer(work / P2E[-1] / "model", tmp_path / "infer.jsonl", out, wait=False)
    if _kill_when(proc, lambda: out.exists() and out.read_bytes().count(b"\n") >= lines):
      killed.append(name)
  rest = _infer(work / P2E[-1] / "model", tmp_path / "infer.jsonl", out)
  assert rest.returncode == 0, rest.stderr[-2000:]
  answers = [{(p["dataset"], p["id"]): p["text"] for p in map(json.loads, f.read_text().splitlines())}
             for f in (tmp_path / "whole.preds.jsonl", out)]
  assert answers[0] == answers[1] and len(out.read_text().splitlines()) == len(records)
  print(f"killed at {len(killed)} points: {killed}")
  assert killed == list(TRAIN_POINTS) + list(INFER_POINTS), killed
