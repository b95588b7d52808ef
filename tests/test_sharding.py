"""Data parallelism + FSDP (nanoemox_jax.model.mesh): placement rules and the one-device path in-process;
in subprocesses (they need their own device counts), phase-3 steps on a data=2 x fsdp=2 mesh of 4 CPU
devices and on 2 processes joined by jax.distributed over loopback equal the single-device steps."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, AxisType, PartitionSpec

from nanoemox_jax.model.mesh import (
  AXES,
  MeshConfig,
  initialize_distributed,
  make_mesh,
  param_sharding,
  shard_batch,
  shard_model,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds for all workers: a hang (a process waiting for its peer) fails the test instead
TOL = 1e-5
# XLA's CPU backend at -O0: the tiny steps run for seconds but compile for tens of seconds otherwise.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
Run = tuple[int | None, str, dict[str, np.ndarray]]  # exit code, log, OUT.npz


@pytest.mark.parametrize("shape, frozen, shard_frozen, spec", [
    ((1024, 64), True, True, PartitionSpec("fsdp")),
    ((64, 2048), False, True, PartitionSpec(None, "fsdp")),  # the largest axis
    ((64, 1023), False, True, PartitionSpec("fsdp")),  # the largest divisible one
    ((1023, 1025), False, True, PartitionSpec()),  # none divisible
    ((8, 64), False, True, PartitionSpec()),  # below fsdp_min_size
    ((), False, True, PartitionSpec()),
    ((1024, 64), True, False, PartitionSpec()),  # frozen stays whole unless shard_frozen
    ((1024, 64), False, False, PartitionSpec("fsdp")),
])
def test_param_sharding_rules(shape, frozen, shard_frozen, spec):
  mesh = AbstractMesh((2, 2), AXES, axis_types=(AxisType.Auto,) * 2)
  cfg = MeshConfig(fsdp=2, fsdp_min_size=1024, shard_frozen=shard_frozen)
  assert param_sharding(jax.ShapeDtypeStruct(shape, jnp.float32), mesh, cfg, frozen).spec == spec


def test_one_device_is_the_same_code_path():
  initialize_distributed()  # no cluster in the environment: nothing to join
  assert jax.process_count() == 1
  with pytest.raises(ValueError, match="fsdp=3"):
    make_mesh(MeshConfig(fsdp=3))
  cfg = MeshConfig(fsdp_min_size=16)
  mesh = make_mesh(cfg)
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1}
  model = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  kernel = np.asarray(model.kernel[...])
  shard_model(model, optimizer, mesh, cfg)
  np.testing.assert_array_equal(np.asarray(model.kernel[...]), kernel)
  assert model.kernel[...].sharding.mesh == mesh and optimizer.opt_state[0].mu["kernel"][...].sharding.mesh == mesh
  batch = {"x": np.arange(24.0).reshape(2, 3, 4)}
  np.testing.assert_array_equal(np.asarray(shard_batch(batch, mesh)["x"]), batch["x"])


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
  """The workers, started together so that they compile in parallel: 'single' (4 devices, data=2 x fsdp=2,
  with the one-device reference; it builds the model and hands its state to the others) and 'proc0', 'proc1'
  (1 device each: fsdp=2 across the two processes)."""
  tmp = tmp_path_factory.mktemp("sharding")
  common = ["--fsdp", "2", "--state", str(tmp / "state.npz")]
  coordinator = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
  jobs = {"single": (4, [*common, "--reference"])}
  jobs |= {f"proc{i}": (1, [*common, *coordinator, "--process-id", str(i)]) for i in range(2)}
  procs = {}
  for name, (devices, args) in jobs.items():
    flags = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE} --xla_force_host_platform_device_count={devices}"
    with open(tmp / f"{name}.log", "w") as log:
      procs[name] = subprocess.Popen([sys.executable, "-m", "tests.sharded_step_worker", str(tmp / f"{name}.npz"), *args],
                                     cwd=ROOT, env=os.environ | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags},
                                     stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + TIMEOUT
  for proc in procs.values():
    try:
      proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
      for p in procs.values():
        p.kill()
        p.wait()
  return {name: (p.returncode, (tmp / f"{name}.log").read_text()[-4000:],
                 dict(np.load(tmp / f"{name}.npz")) if p.returncode == 0 else {}) for name, p in procs.items()}


def assert_params_match(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
  keys = [k.removeprefix("ref/") for k in ref if k.startswith("ref/")]
  assert keys and {k for k in out if k.startswith("shard/")} == {"shard/" + k for k in keys}
  for k in keys:
    np.testing.assert_allclose(out["shard/" + k], ref["ref/" + k], atol=TOL, rtol=0, err_msg=k)


def test_sharded_step_equals_the_single_device_step(runs):
  code, log, out = runs["single"]
  assert code == 0, log
  assert out["split"] > 0  # FSDP really split some variables
  np.testing.assert_allclose(out["losses"], out["ref_losses"], atol=TOL, rtol=0)
  assert_params_match(out, out)
  assert "batch size 3" in str(out["batch_error"]) and "4 devices" in str(out["batch_error"])


def test_two_processes_equal_the_single_device_steps(runs):
  for name in ("single", "proc0", "proc1"):
    assert runs[name][0] == 0, f"{name} exited with {runs[name][0]}:\n{runs[name][1]}"
  (_, _, out0), (_, _, out1), (_, _, ref) = runs["proc0"], runs["proc1"], runs["single"]
  assert out0["split"] > 0
  np.testing.assert_array_equal(out0["losses"], out1["losses"])
  assert np.isfinite(out0["losses"]).all() and len(out0["losses"]) == 3
  np.testing.assert_allclose(out0["losses"], ref["ref_losses"], atol=TOL, rtol=0)
  assert_params_match(out0, ref)


def test_the_step_keeps_the_layout(runs):
  assert runs["single"][2]["relaid"] == 0
