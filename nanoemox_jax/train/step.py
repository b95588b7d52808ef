"""The jitted P2E train step: gradient accumulation over micro-batches, AdamW, non-finite skipping.

One call consumes K micro-batches stacked on a leading axis ([K, b, ...]) in a `lax.scan`, sums
token-level cross-entropies and their counts, and applies one optimizer update: exactly the update
of one batch of K*b. Only the phase's trainable parameters are differentiated; frozen towers and
the LM base are closed over as constants. Model and optimizer state are donated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, num_targets_for
from nanoemox_jax.train import phases
from nanoemox_jax.model.mesh import MeshConfig, constrain_sharding


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW under the authors' `linear_warmup_cosine_lr` schedule (their `common/optims.py`, per step).

  A linear warmup from `warmup_lr` to `learning_rate` over the first `warmup_steps` updates, then
  `min_lr + (learning_rate - min_lr) * (1 + cos(pi * step / steps)) / 2` evaluated at the absolute
  step (so it joins the warmup below its peak when warmup_steps > 0). `min_lr` None keeps `learning_rate`
  (the paper's phases 2 and 3 set min_lr = init_lr).
  """

  learning_rate: float
  steps: int  # optimizer updates
  warmup_steps: int = 0
  warmup_lr: float = 0.0
  min_lr: float | None = None
  weight_decay: float = 0.05
  b1: float = 0.9
  b2: float = 0.999
  clip_norm: float = 0.0  # global-norm clipping threshold; 0: off, as in the paper and the authors' runner
  max_nonfinite: int = 10  # consecutive skipped (non-finite) updates that stop a training run

  def __post_init__(self):
    if not (self.learning_rate > 0 and self.steps >= 1 and self.warmup_steps >= 0):
      raise ValueError(f"OptimConfig: learning_rate and steps must be positive, warmup_steps >= 0: {self}")


def schedule(cfg: OptimConfig) -> optax.Schedule:
  """lr(update count) of `cfg` (see `OptimConfig`)."""
  min_lr = cfg.learning_rate if cfg.min_lr is None else cfg.min_lr

  def lr(count: jax.Array) -> jax.Array:
    warm = cfg.warmup_lr + (cfg.learning_rate - cfg.warmup_lr) * count / max(cfg.warmup_steps, 1)
    cosine = min_lr + (cfg.learning_rate - min_lr) * 0.5 * (1 + jnp.cos(jnp.pi * count / cfg.steps))
    return jnp.where(count < cfg.warmup_steps, jnp.minimum(warm, cfg.learning_rate), cosine)

  return lr


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """AdamW (no decay on biases, norms and other 1-D parameters) after global-norm clipping when `clip_norm` > 0,
  skipping non-finite updates."""
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  tx = optax.adamw(schedule(cfg), cfg.b1, cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
  if cfg.clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
  # The loop stops a run of non-finite steps itself; apply_if_finite only skips and counts them.
  return optax.apply_if_finite(tx, max_consecutive_errors=2**30)


def nonfinite_counts(optimizer: nnx.Optimizer) -> tuple[int, int]:
  """(consecutive, total) skipped non-finite updates, from `optax.apply_if_finite`'s state."""
  state = optimizer.opt_state
  return int(state.notfinite_count[...]), int(state.total_notfinite[...])


TrainStep = Callable[..., dict[str, jax.Array]]


def make_train_step(phase: str, mesh: Mesh | None = None, mesh_cfg: MeshConfig | None = None,
                    remat: bool = False) -> TrainStep:
  """The jitted step of a P2E phase: (model, optimizer, micro-batches [K, b, ...], num_targets=None) -> metrics.

  Logits are computed only at labelled positions, at most `num_targets` per row (default
  `num_targets_for(batches.labels)`, which needs host-addressable labels: pass it explicitly, equal on every
  process, in multi-process runs). It is static: each distinct value, a power of two, compiles once. With a
  `mesh`, the updated state is pinned to `shard_model`'s layout so that the next step reuses the program.
  `remat` recomputes each micro-batch's forward in the backward pass, keeping only matmul outputs without
  batch dimensions (`jax.checkpoint`, policy `dots_with_no_batch_dims_saveable`): activation memory for time.
  """
  trainable = phases.trainable(phase)

  @nnx.jit(donate_argnums=(0, 1), static_argnums=3)
  def step(model: NanoEmoX, optimizer: nnx.Optimizer, batches: Batch, num_targets: int) -> dict[str, jax.Array]:
    graphdef, params, rng, frozen = nnx.split(model, trainable, nnx.RngState, ...)

    def micro(carry, batch):
      grads, total, count, rng = carry

      def nll(params):
        m = nnx.merge(graphdef, params, rng, frozen, copy=True)
        out_total, out_count = m.target_nll(batch, num_targets)
        return out_total, (out_count, nnx.state(m, nnx.RngState))

      loss_fn = jax.checkpoint(nll, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable) if remat else nll
      (t, (c, rng)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
      return (jax.tree.map(jnp.add, grads, g), total + t, count + c, rng), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, total, count, rng), _ = jax.lax.scan(micro, (zeros, 0.0, 0.0, rng), batches)
    grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
    nnx.update(model, rng)
    optimizer.update(model, grads)
    if mesh is not None:
      constrain_sharding((model, optimizer), mesh, mesh_cfg or MeshConfig())
    return {"loss": total / jnp.maximum(count, 1.0), "tokens": count, "grad_norm": optax.tree.norm(grads)}

  def run(model: NanoEmoX, optimizer: nnx.Optimizer, batches: Batch, num_targets: int | None = None
          ) -> dict[str, jax.Array]:
    return step(model, optimizer, batches, num_targets or num_targets_for(batches.labels))

  return run
