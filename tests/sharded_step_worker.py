"""Subprocess of tests/test_sharding.py: phase-3 train steps of the tiny model on a ("data", "fsdp") mesh.

`python -m tests.sharded_step_worker OUT.npz --state STATE.npz [--fsdp N] [--reference] [--coordinator
HOST:PORT --num-processes P --process-id I]`; the caller sets the device count (XLA_FLAGS). The
--reference run builds the model (tests.test_train_step.fresh_model) and writes its state to STATE.npz;
the others wait for that file and load it (one eager init instead of one per process). Runs 3 steps on
micro-batches [2, 4, ...] (process i feeds rows [4i/P, 4(i+1)/P) of axis 1 through `shard_batch`)
and writes to OUT.npz: `losses` [3]; `split`: how many variables `shard_model` split; `relaid`: how
many the first step returned in another sharding; `shard/<path>`: every trainable parameter after
the steps. With --reference also `ref_losses` and `ref/<path>` of the same steps on one device, and
`batch_error`, the message of `shard_batch` given 3 rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from nanoemox_jax.model.nanoemox import Batch, num_targets_for
from nanoemox_jax.model import mesh as mesh_lib
from nanoemox_jax.train import phases
from nanoemox_jax.train.step import OptimConfig, make_optimizer, make_train_step
from tests.test_nanoemox import make_batch
from tests.test_train_step import fresh_model, stack

PHASE = "3"
K, B, STEPS = 2, 4, 3  # micro-batches, global rows, steps
WAIT = 240  # seconds to wait for the reference run's model state


def trainable(model: nnx.Module, prefix: str, mesh: jax.sharding.Mesh | None = None) -> dict[str, np.ndarray]:
  """The trainable parameters on the host (first gathered when on a mesh, which may span processes)."""
  flat = nnx.to_flat_state(nnx.state(model, phases.trainable(PHASE)))
  values = [v.get_value() for v in flat.leaves]
  if mesh is not None:
    values = jax.jit(lambda xs: xs, out_shardings=NamedSharding(mesh, PartitionSpec()))(values)
  return {prefix + ".".join(map(str, p)): np.asarray(v) for p, v in zip(flat.paths, values)}


def save_state(model: nnx.Module, path: Path) -> None:
  flat = nnx.to_flat_state(nnx.state(model))
  arrays = {str(i): np.asarray(jax.random.key_data(v.get_value()) if isinstance(v, nnx.RngKey) else v.get_value())
            for i, v in enumerate(flat.leaves)}
  np.savez(path.with_suffix(".tmp.npz"), **arrays)
  path.with_suffix(".tmp.npz").rename(path)  # readers never see a partial file


def load_state(path: Path) -> nnx.Module:
  """fresh_model() with the values of `save_state` (waits up to WAIT seconds for the file)."""
  model = nnx.eval_shape(fresh_model)
  deadline = time.monotonic() + WAIT
  while not path.exists():
    if time.monotonic() > deadline:
      raise TimeoutError(f"no model state at {path} after {WAIT} s")
    time.sleep(0.2)
  data = np.load(path)
  flat = nnx.to_flat_state(nnx.state(model))
  nnx.update(model, nnx.from_flat_state([
      (p, v.replace(jax.random.wrap_key_data(data[str(i)]) if isinstance(v, nnx.RngKey) else jnp.asarray(data[str(i)])))
      for i, (p, v) in enumerate(flat)]))
  return model


def shardings(node: object) -> list[jax.sharding.Sharding]:
  return [v.get_value().sharding for v in nnx.to_flat_state(nnx.state(node)).leaves]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--state", type=Path, required=True)
  parser.add_argument("--fsdp", type=int, default=1)
  parser.add_argument("--reference", action="store_true")
  parser.add_argument("--coordinator")
  parser.add_argument("--num-processes", type=int)
  parser.add_argument("--process-id", type=int)
  args = parser.parse_args()
  mesh_lib.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  jax.config.update("jax_default_matmul_precision", "highest")  # as tests/conftest.py
  batches: list[Batch] = [jax.tree.map(np.asarray, stack(make_batch(20 + s, b=K * B), K)) for s in range(STEPS)]
  model = fresh_model() if args.reference else load_state(args.state)  # the same values on every process
  if args.reference:
    save_state(model, args.state)
  model.eval()  # dropout off: every run computes the same function
  optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable(PHASE))
  run = make_train_step(PHASE)
  out: dict[str, np.ndarray] = {}

  if args.reference:  # on a copy: the step donates its arguments' buffers
    graphdef, state = nnx.split((model, optimizer))
    ref_model, ref_optimizer = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
    out["ref_losses"] = np.array([float(run(ref_model, ref_optimizer, b)["loss"]) for b in batches])
    out |= trainable(ref_model, "ref/")

  cfg = mesh_lib.MeshConfig(fsdp=args.fsdp, fsdp_min_size=1024)
  mesh = mesh_lib.make_mesh(cfg)
  mesh_lib.shard_model(model, optimizer, mesh, cfg)
  placed = shardings((model, optimizer))
  out["split"] = np.array(sum(not s.is_fully_replicated for s in placed))
  if args.reference:
    try:
      mesh_lib.shard_batch(jax.tree.map(lambda x: x[:, :3], batches[0]), mesh)
    except ValueError as e:
      out["batch_error"] = np.array(str(e))
  rows = B // jax.process_count()
  mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
  sharded_run = make_train_step(PHASE, mesh, cfg)
  losses = []
  for b in batches:
    # Labels spanning processes are not host-addressable: the step gets num_targets from the global host labels.
    local = mesh_lib.shard_batch(jax.tree.map(lambda x: x[:, mine], b), mesh)
    losses.append(float(sharded_run(model, optimizer, local, num_targets_for(b.labels))["loss"]))
    if len(losses) == 1:
      out["relaid"] = np.array(sum(s0 != s1 for s0, s1 in zip(placed, shardings((model, optimizer)))))
  out["losses"] = np.array(losses)
  out |= trainable(model, "shard/", mesh)
  np.savez(args.out, **out)


if __name__ == "__main__":
  main()
