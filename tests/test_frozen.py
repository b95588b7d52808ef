"""Frozen towers: their weights are not `nnx.Param`, so gradients and optimizers never touch them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nanoemox_jax.model.frozen import FrozenParam, freeze, frozen_dtype
from nanoemox_jax.model.layers import Linear
from nanoemox_jax.checkpoints.params_io import restore_params, save_params
from nanoemox_jax.model.qwen2 import Qwen2Config, Qwen2ForCausalLM

CFG = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8)


class TowerWithAdapter(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, tower_dtype=None):
    self.tower = freeze(Qwen2ForCausalLM(CFG, rngs=rngs), tower_dtype)
    self.adapter = Linear(32, 8, use_bias=True, rngs=rngs)

  def __call__(self, ids):
    hidden, _ = self.tower.hidden_states(ids)
    return self.adapter(hidden.astype(jnp.float32))


def test_freeze_retypes_every_weight_and_keeps_outputs():
  model = Qwen2ForCausalLM(CFG, rngs=nnx.Rngs(0))
  ids = jnp.asarray([[3, 5, 7, 9]])
  before = np.asarray(model(ids))
  n_params = len(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  freeze(model)
  assert len(nnx.to_flat_state(nnx.state(model, nnx.Param))) == 0
  assert len(nnx.to_flat_state(nnx.state(model, FrozenParam))) == n_params
  np.testing.assert_array_equal(np.asarray(model(ids)), before)
  freeze(model, jnp.bfloat16)
  assert frozen_dtype(model) == {jnp.dtype(jnp.bfloat16)}
  assert np.abs(np.asarray(model(ids)) - before).max() < 0.05 * np.abs(before).max()


def test_training_step_updates_only_trainable_params():
  model = TowerWithAdapter(nnx.Rngs(0), tower_dtype=jnp.bfloat16)
  optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)
  tower_before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model.tower)))
  adapter_before = np.asarray(model.adapter.kernel[...])
  ids = jnp.asarray([[1, 2, 3, 4, 5]])

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(ids) ** 2), argnums=nnx.DiffState(0, nnx.Param))(model)
    optimizer.update(model, grads)
    return loss, grads

  _, grads = step(model, optimizer)
  grad_paths = {p[0] for p, _ in nnx.to_flat_state(grads)}
  assert grad_paths == {"adapter"}
  opt_paths = {p for p, _ in nnx.to_flat_state(nnx.state(optimizer))}
  assert not any("tower" in map(str, p) for p in opt_paths)  # no optimizer state for the tower
  assert np.abs(np.asarray(model.adapter.kernel[...]) - adapter_before).max() > 0
  jax.tree.map(np.testing.assert_array_equal, tower_before,
               jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model.tower))))


def test_frozen_weights_round_trip_through_checkpoints(tmp_path):
  model = TowerWithAdapter(nnx.Rngs(1), tower_dtype=jnp.bfloat16)
  save_params(nnx.to_pure_dict(nnx.state(model)), tmp_path / "params")
  abstract = nnx.eval_shape(lambda: TowerWithAdapter(nnx.Rngs(0), tower_dtype=jnp.bfloat16))
  restored = restore_params(abstract, tmp_path / "params")
  assert frozen_dtype(restored.tower) == {jnp.dtype(jnp.bfloat16)}
  ids = jnp.asarray([[4, 3, 2]])
  np.testing.assert_array_equal(np.asarray(restored(ids)), np.asarray(model(ids)))
