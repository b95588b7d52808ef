"""Data parallelism + FSDP over a ("data", "fsdp") device mesh, on one process or many.

The batch axis is split over every device (both mesh axes). A parameter with at least
`fsdp_min_size` elements is split along its largest axis divisible by the 'fsdp' size (gathered by
XLA where it is used) and replicated over 'data'; smaller ones, scalars and RNG state are replicated.
Optimizer moments have their parameter's shape, hence the same rule gives them its sharding. A
jitted step keeps that layout by ending with `constrain_sharding`. On one device the mesh is 1x1
and everything is replicated: the same code path.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from nanoemox_jax.model.frozen import FrozenParam

AXES = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """fsdp: devices along the 'fsdp' axis (the rest of all global devices form 'data')."""

  fsdp: int = 1
  fsdp_min_size: int = 2**18  # parameters with fewer elements stay replicated
  shard_frozen: bool = True  # FSDP also shards the frozen towers and the LM base


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (`jax.distributed.initialize`); call before any other JAX use.

  With every argument None it joins only when the environment names a multi-process job
  (JAX_COORDINATOR_ADDRESS set, or SLURM_NTASKS / OMPI_COMM_WORLD_SIZE above 1), whose parameters
  JAX then auto-detects; otherwise, or with num_processes=1, it does nothing. On CPU, JAX's
  default cross-process collectives (gloo) are used.
  """
  if num_processes == 1:
    return
  if (coordinator_address, num_processes, process_id) == (None, None, None) and not (
      os.environ.get("JAX_COORDINATOR_ADDRESS")
      or any(int(os.environ.get(v, "1")) > 1 for v in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))):
    return
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def make_mesh(cfg: MeshConfig) -> Mesh:
  """The ("data", "fsdp") mesh over all global devices: [n / cfg.fsdp, cfg.fsdp]."""
  n = jax.device_count()
  if cfg.fsdp < 1 or n % cfg.fsdp:
    raise ValueError(f"MeshConfig.fsdp={cfg.fsdp} must divide the number of devices ({n})")
  return jax.make_mesh((n // cfg.fsdp, cfg.fsdp), AXES, axis_types=(AxisType.Auto,) * 2)


def param_sharding(x: Any, mesh: Mesh | AbstractMesh, cfg: MeshConfig, frozen: bool) -> NamedSharding:
  """FSDP placement of an array-like `x` (anything with .shape): its largest axis divisible by the
  'fsdp' size goes over 'fsdp' if x has >= cfg.fsdp_min_size elements (and, when frozen, only if
  cfg.shard_frozen); else replicated."""
  shape, n = tuple(x.shape), mesh.shape["fsdp"]
  axes = [a for a in range(len(shape)) if shape[a] % n == 0]
  if not axes or math.prod(shape) < cfg.fsdp_min_size or (frozen and not cfg.shard_frozen):
    return NamedSharding(mesh, PartitionSpec())
  axis = max(axes, key=lambda a: shape[a])
  return NamedSharding(mesh, PartitionSpec(*[None] * axis, "fsdp"))


def _variable_sharding(var: nnx.Variable, mesh: Mesh, cfg: MeshConfig) -> NamedSharding:
  if isinstance(var, nnx.RngState):
    return NamedSharding(mesh, PartitionSpec())
  return param_sharding(var, mesh, cfg, frozen=isinstance(var, FrozenParam))


def _map_variables(node: Any, fn: Callable[[nnx.Variable], jax.Array]) -> None:
  """Replaces the value of every variable of `node` (a graph node or a tuple of them) by fn(variable), in place."""
  nnx.update(node, jax.tree.map(lambda v: v.replace(fn(v)), nnx.state(node), is_leaf=lambda x: isinstance(x, nnx.Variable)))


def shard_model(model: nnx.Module, optimizer: nnx.Optimizer | None, mesh: Mesh, cfg: MeshConfig) -> None:
  """Puts the model's variables (and the optimizer's state) on `mesh`, in place.

  Every process must hold the same full values (same init seed or checkpoint); each copies only the
  slices of its own devices.
  """
  def put(var: nnx.Variable) -> jax.Array:
    value = var.get_value()
    return jax.make_array_from_callback(value.shape, _variable_sharding(var, mesh, cfg), lambda index: value[index])

  _map_variables((model, optimizer), put)


def constrain_sharding(node: Any, mesh: Mesh, cfg: MeshConfig) -> None:
  """Inside jit: pins every variable of `node` (model, optimizer, or a tuple of them) to its `shard_model`
  sharding. A train step that ends with it returns its state in the layout it was given; otherwise XLA
  may choose other shardings for some outputs, and the next call compiles again."""
  _map_variables(node, lambda var: jax.lax.with_sharding_constraint(var.get_value(), _variable_sharding(var, mesh, cfg)))


def shard_batch[T](batches: T, mesh: Mesh) -> T:
  """Host-local micro-batches [K, b_local, ...] (numpy) -> global jax.Arrays [K, b_local * processes, ...]
  whose axis 1 is split over every device of `mesh`; process p supplies the p-th slice of rows."""
  local = len(mesh.local_devices)

  def put(x: Any) -> jax.Array:
    x = np.asarray(x)
    if x.shape[1] % local:
      raise ValueError(f"batch size {x.shape[1]} per process ({x.shape[1] * jax.process_count()} in all) is not "
                       f"divisible by the {local} local devices ({mesh.size} devices in all)")
    return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec(None, AXES)), x)

  return jax.tree.map(put, batches)
