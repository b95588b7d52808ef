"""Training checkpoints (Orbax `CheckpointManager`): trainable parameters, optimizer state, RNG streams
and the data iterator's state, saved together so a killed run resumes exactly.

Frozen towers and the LM base are not saved (they come from their converted checkpoints); RNG keys
are stored as raw key data. Saves are asynchronous; `wait()` blocks until they are on disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from nanoemox_jax.checkpoints.params_io import orbax_errors
from nanoemox_jax.model.frozen import FrozenParam

log = logging.getLogger(__name__)


def _train_state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
  keys = nnx.state(model, nnx.RngKey)
  return {"params": nnx.to_pure_dict(nnx.state(model, nnx.All(nnx.Param, nnx.Not(FrozenParam)))),
          "rng_keys": jax.tree.map(jax.random.key_data, nnx.to_pure_dict(keys)),
          "rng_counts": nnx.to_pure_dict(nnx.state(model, nnx.RngCount)),
          "optimizer": nnx.to_pure_dict(nnx.state(optimizer, nnx.Not(nnx.Param)))}


class Checkpointer:
  """`save(step, model, optimizer, data_state, meta)` / `restore(model, optimizer)`; keeps the last `keep`."""

  def __init__(self, directory: str | Path, keep: int = 3, asynchronous: bool = True):
    self.directory = Path(directory).absolute()
    self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=asynchronous), item_names=("state", "data", "meta"))

  def save(self, step: int, model: nnx.Module, optimizer: nnx.Optimizer, data_state: dict[str, Any],
           meta: dict[str, Any] | None = None) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_train_state(model, optimizer)), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta or {})), force=True)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, model: nnx.Module, optimizer: nnx.Optimizer, step: int | None = None
              ) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """Load step `step` (default: the latest readable one) into `model` and `optimizer` in place.

    Returns (step, data iterator state, meta), or None when the directory holds no checkpoint. Orbax only lists
    finished steps (it writes each into a temporary folder and renames it); a listed step that cannot be read
    (damaged since) is skipped for the one before it with a warning, or, when it was asked for by `step` or is
    the last one, raises ValueError naming its folder.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    for i, s in enumerate(steps):
      try:
        with orbax_errors(self.directory / str(s)):
          return self._restore(model, optimizer, s)
      except ValueError as e:
        if i + 1 == len(steps):
          raise ValueError(f"{e}; move it away to resume from an older step") from None
        log.warning("%s; resuming from step %d instead", e, steps[i + 1])
    return None

  def _restore(self, model: nnx.Module, optimizer: nnx.Optimizer, step: int
               ) -> tuple[int, dict[str, Any], dict[str, Any]]:
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                          _train_state(model, optimizer))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
    if not isinstance(restored["data"], dict) or not isinstance(restored["meta"], dict):
      raise ValueError(f"{self.directory / str(step)}: its data or meta item is missing")
    state = restored["state"]
    state["rng_keys"] = jax.tree.map(jax.random.wrap_key_data, state["rng_keys"])
    for owner, filt, tree in ((model, nnx.All(nnx.Param, nnx.Not(FrozenParam)), state["params"]),
                              (model, nnx.RngCount, state["rng_counts"]), (model, nnx.RngKey, state["rng_keys"]),
                              (optimizer, nnx.Not(nnx.Param), state["optimizer"])):
      variables = nnx.state(owner, filt)
      nnx.replace_by_pure_dict(variables, tree)
      nnx.update(owner, variables)
    return step, restored["data"], restored["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
