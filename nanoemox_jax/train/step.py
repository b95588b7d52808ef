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

from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, next_token_nll
from nanoemox_jax.train import phases


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with linear warmup then cosine decay (AffectGPT's LinearWarmupCosineLRScheduler shape)."""

  learning_rate: float
  total_steps: int
  warmup_steps: int = 0
  min_lr_ratio: float = 0.1
  weight_decay: float = 0.05
  b1: float = 0.9
  b2: float = 0.999
  clip_norm: float = 1.0


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """Global-norm clipping, AdamW (no decay on biases, norms and other 1-D parameters), skip non-finite updates."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.total_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.min_lr_ratio)
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
  tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                   optax.adamw(schedule, cfg.b1, cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask))
  # The loop stops a run of non-finite steps itself; apply_if_finite only skips and counts them.
  return optax.apply_if_finite(tx, max_consecutive_errors=2**30)


def nonfinite_counts(optimizer: nnx.Optimizer) -> tuple[int, int]:
  """(consecutive, total) skipped non-finite updates, from `optax.apply_if_finite`'s state."""
  state = optimizer.opt_state
  return int(state.notfinite_count[...]), int(state.total_notfinite[...])


def make_train_step(phase: str) -> Callable[[NanoEmoX, nnx.Optimizer, Batch], dict[str, jax.Array]]:
  """The jitted step of a P2E phase: (model, optimizer, micro-batches [K, b, ...]) -> metrics."""
  trainable = phases.trainable(phase)

  @nnx.jit(donate_argnums=(0, 1))
  def step(model: NanoEmoX, optimizer: nnx.Optimizer, batches: Batch) -> dict[str, jax.Array]:
    graphdef, params, rng, frozen = nnx.split(model, trainable, nnx.RngState, ...)

    def micro(carry, batch):
      grads, total, count, rng = carry

      def nll(params):
        m = nnx.merge(graphdef, params, rng, frozen, copy=True)
        out_total, out_count = next_token_nll(m(batch).logits, batch.labels)
        return out_total, (out_count, nnx.state(m, nnx.RngState))

      (t, (c, rng)), g = jax.value_and_grad(nll, has_aux=True)(params)
      return (jax.tree.map(jnp.add, grads, g), total + t, count + c, rng), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, total, count, rng), _ = jax.lax.scan(micro, (zeros, 0.0, 0.0, rng), batches)
    grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grads)
    nnx.update(model, rng)
    optimizer.update(model, grads)
    return {"loss": total / jnp.maximum(count, 1.0), "tokens": count, "grad_norm": optax.tree.norm(grads)}

  return step
