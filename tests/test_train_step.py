"""The jitted train step on the tiny preset: accumulation equivalence, what each phase updates."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nanoemox_jax.model import lora
from nanoemox_jax.model.nanoemox import IGNORE, Batch, NanoEmoX, next_token_nll, num_targets_for
from nanoemox_jax.train import phases
from nanoemox_jax.train.loop import stack
from nanoemox_jax.train.step import OptimConfig, make_optimizer, make_train_step, nonfinite_counts, schedule
from tests.test_nanoemox import CFG, make_batch


def fresh_model(**options) -> NanoEmoX:
  model = NanoEmoX(dataclasses.replace(CFG, **options), rngs=nnx.Rngs(0))
  for i, layer in enumerate(lora.lora_layers(model)):
    layer.lora_b[...] = 0.05 * jax.random.normal(jax.random.key(i), layer.lora_b[...].shape)
  return model


def snapshot(model) -> dict[str, np.ndarray]:
  return {".".join(map(str, p)): np.array(v) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Any(
      nnx.Param, nnx.filterlib.OfType(type(model.llm.model.norm.weight)))))}


@pytest.fixture(scope="module")
def big_batch() -> Batch:
  parts = [make_batch(10 + i, b=3, has_audio=[True, i % 2 == 0, True]) for i in range(4)]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def test_four_micro_batches_of_three_equal_one_batch_of_twelve(big_batch):
  results = []
  for k in (1, 4):
    model = fresh_model()
    model.eval()  # dropout off: the two runs must see the same function
    optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("3"))
    metrics = make_train_step("3")(model, optimizer, stack(big_batch, k))
    results.append((float(metrics["loss"]), snapshot(model)))
  (loss1, p1), (loss4, p4) = results
  assert abs(loss1 - loss4) < 1e-5
  for key in p1:
    np.testing.assert_allclose(p4[key], p1[key], atol=1e-5, rtol=0, err_msg=key)


# 25-30 s each: phase 3 (every trainable group) in the default suite, the others slow; the gradient-level
# test_nanoemox.test_gradients_reach_exactly_the_phase_parameters covers every phase by default.
@pytest.mark.parametrize("phase", [pytest.param(p, marks=() if p == "3" else pytest.mark.slow) for p in phases.PHASES])
def test_a_phase_changes_exactly_its_parameters(big_batch, phase):
  model = fresh_model()
  before = {".".join(map(str, p)): np.array(v) for p, v in nnx.to_flat_state(nnx.state(model))
            if not isinstance(v, nnx.RngState)}
  trained = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, phases.trainable(phase)))}
  optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable(phase))
  step = make_train_step(phase)
  losses = [float(step(model, optimizer, stack(big_batch, 4))["loss"]) for _ in range(2)]
  assert all(np.isfinite(losses))
  after = {".".join(map(str, p)): np.array(v) for p, v in nnx.to_flat_state(nnx.state(model))
           if not isinstance(v, nnx.RngState)}
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed == trained, (sorted(changed - trained)[:5], sorted(trained - changed)[:5])
  assert nonfinite_counts(optimizer) == (0, 0)


def test_non_finite_loss_skips_the_update(big_batch):
  model = fresh_model()
  optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("1a"))
  before = snapshot(model)
  poisoned = big_batch._replace(audio=big_batch.audio.at[0].set(jnp.nan))
  make_train_step("1a")(model, optimizer, stack(poisoned, 4))
  assert nonfinite_counts(optimizer) == (1, 1)
  after = snapshot(model)
  assert all(np.array_equal(before[k], after[k]) for k in before)


def test_logits_at_labelled_positions_only_give_the_full_loss(big_batch):
  model = fresh_model()
  model.eval()
  total, count = next_token_nll(model(big_batch).logits, big_batch.labels)
  k = num_targets_for(big_batch.labels)
  assert k >= int((np.asarray(big_batch.labels)[:, 1:] != IGNORE).sum(1).max()) and k & (k - 1) == 0
  picked_total, picked_count = model.target_nll(big_batch, k)
  assert float(picked_count) == float(count)
  np.testing.assert_allclose(float(picked_total), float(total), rtol=1e-6)


def test_schedule_is_the_authors_warmup_then_cosine():
  cfg = OptimConfig(3e-4, steps=100, warmup_steps=10, warmup_lr=1e-6, min_lr=1e-4)
  lr = schedule(cfg)
  # common/optims.py: warmup_lr_schedule(step, max_step=10, init_lr=1e-6, max_lr=3e-4), then cosine_lr_schedule
  # at the absolute step with max_epoch = total steps.
  for step in (0, 5, 9):
    assert float(lr(step)) == pytest.approx(min(3e-4, 1e-6 + (3e-4 - 1e-6) * step / 10), rel=1e-6)
  for step in (10, 50, 99):
    assert float(lr(step)) == pytest.approx((3e-4 - 1e-4) * 0.5 * (1 + math.cos(math.pi * step / 100)) + 1e-4, rel=1e-6)
  assert float(schedule(OptimConfig(8e-6, steps=10))(7)) == pytest.approx(8e-6)  # min_lr None: constant


def test_clipping_is_off_unless_configured():
  """The paper and the authors' runner do not clip: two AdamW updates of a large then a small gradient equal
  optax's AdamW alone, and `clip_norm=1.0` gives those of clip-then-AdamW (which differ from them)."""
  params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
  grads = [{"w": 100.0 * jnp.arange(12.0).reshape(3, 4), "b": jnp.full(4, 50.0)},
           {"w": 0.01 * jnp.ones((3, 4)), "b": jnp.full(4, -0.02)}]
  decay_mask = {"w": True, "b": False}

  def updates(tx):
    state, out = tx.init(params), []
    for g in grads:
      u, state = tx.update(g, state, params)
      out.append(np.concatenate([np.ravel(u["w"]), np.ravel(u["b"])]))
    return out

  cfg = OptimConfig(1e-3, steps=10)
  adamw = optax.adamw(1e-3, 0.9, 0.999, weight_decay=cfg.weight_decay, mask=decay_mask)
  plain, clipped = updates(adamw), updates(optax.chain(optax.clip_by_global_norm(1.0), adamw))
  assert not np.allclose(plain[1], clipped[1], rtol=1e-3)
  for ours, reference in ((updates(make_optimizer(cfg)), plain),
                          (updates(make_optimizer(OptimConfig(1e-3, steps=10, clip_norm=1.0))), clipped)):
    for a, b in zip(ours, reference):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


@pytest.mark.slow  # 25 s per phase-3 compilation, 4 of them
@pytest.mark.parametrize("remat,options", [(True, {}), (False, dict(scan_layers=True)),
                                           (False, dict(scan_layers=True, remat_layers=True))],
                         ids=["remat_loss", "scan_layers", "scan_and_remat_layers"])
def test_remat_and_scanned_layers_give_the_same_update(big_batch, remat, options):
  results = []
  for remat, options in ((False, {}), (remat, options)):
    model = fresh_model(**options)
    model.eval()
    optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("3"))
    loss = float(make_train_step("3", remat=remat)(model, optimizer, stack(big_batch, 2))["loss"])
    results.append((loss, snapshot(model)))
  (loss0, p0), (loss1, p1) = results
  assert abs(loss0 - loss1) < 1e-6
  # Remat recomputes the forward pass, so XLA may sum in another order (last-ulp gradient differences).
  # Adam's first update is lr * g / (|g| + eps): on a near-zero gradient an ulp becomes ~1e-6 of the
  # update. 1% of the learning rate still fails on any real difference (a wrong gradient moves by ~lr).
  for key in p0:
    np.testing.assert_allclose(p1[key], p0[key], atol=1e-5, rtol=0, err_msg=key)


def test_cached_tower_features_give_the_same_update(big_batch):
  """A batch carrying the towers' outputs (`data.features`) instead of media trains the same step."""
  results = []
  for cached in (False, True):
    model = fresh_model()
    model.eval()
    batch = big_batch
    if cached:
      batch = big_batch._replace(frames=None, faces=None, audio=None, features=jax.jit(model.tower_features)(
          big_batch.frames, big_batch.faces, big_batch.audio))
    optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("3"))
    loss = float(make_train_step("3")(model, optimizer, stack(batch, 4))["loss"])
    results.append((loss, snapshot(model)))
  (loss0, p0), (loss1, p1) = results
  assert abs(loss0 - loss1) < 1e-6
  # Remat recomputes the forward pass, so XLA may sum in another order (last-ulp gradient differences).
  # Adam's first update is lr * g / (|g| + eps): on a near-zero gradient an ulp becomes ~1e-6 of the
  # update. 1% of the learning rate still fails on any real difference (a wrong gradient moves by ~lr).
  for key in p0:
    np.testing.assert_allclose(p1[key], p0[key], atol=1e-5, rtol=0, err_msg=key)


@pytest.mark.slow  # ~2.5 min on 2 cores: three calls, one compile
def test_a_restored_model_placed_on_the_mesh_compiles_its_step_once(big_batch):
  """Restored parameters are committed to a device and a fresh optimizer's zeros are not; jit's outputs all are,
  so the second call of a step on such a mixed state compiles a second program (74 s for the tiny preset here,
  minutes at full size; without `shard_model` this test sees [1, 1, 0] compilations). `shard_model`, as `loop.run_phase` and the dry run call it, commits every leaf first."""
  from benchmarks.phase_step import count_compilations
  from nanoemox_jax.model import mesh as mesh_lib
  from nanoemox_jax.model.mesh import MeshConfig
  from nanoemox_jax.model.frozen import FrozenParam

  model = fresh_model()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  nnx.update(model, jax.device_put(nnx.state(model, FrozenParam), device))  # as `restore_params` leaves them
  optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("3"))
  mesh = mesh_lib.make_mesh(MeshConfig())
  mesh_lib.shard_model(model, optimizer, mesh, MeshConfig())
  step = make_train_step("3", mesh, MeshConfig())
  batches = mesh_lib.shard_batch(stack(big_batch, 4), mesh)
  compiles = []
  for _ in range(3):
    with count_compilations() as seen:
      jax.block_until_ready(step(model, optimizer, batches))
    compiles.append(len(seen))
  assert compiles[0] >= 1 and compiles[1:] == [0, 0], compiles
