"""SIGKILL at several points of a short phase (tiny preset, the training-loop tests' corpus), `--resume` after each,
and the end equals an uninterrupted run: the loss sequence, every trainable leaf of `model/` and of the live exports,
and the held-out scores. 8 points, each reached by the run resumed from the kill before: while the frozen-tower
features are built, as soon as each of updates 1-5 is logged (a checkpoint every update, written asynchronously, so
kills land in or next to a checkpoint write), once the first live export (`export_every=3`) has begun, and once
`model/` exists (held-out scoring). Passed 2026-12-05 in 819 s on 2 cores shared with other test runs."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import test_train_loop
from tests.test_train_loop import adapters, flags, losses, train
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
