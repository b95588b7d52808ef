"""The P2E train step as the benchmarks build it: a model (random or abstract), its optimizer, a synthetic
batch, the jitted step, its lowering for `memory_analysis()` / `cost_analysis()`, and a compilation counter.

Used by `benchmarks.memory`, `benchmarks.train_step` and `benchmarks.gpu`; the step itself is the
training loop's (`nanoemox_jax.train.step.make_train_step`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model.nanoemox import (IGNORE, Batch, NanoEmoX, NanoEmoXConfig, TowerFeatures, abstract_model,
                                         init_model)
from nanoemox_jax.train import phases
from nanoemox_jax.train.step import OptimConfig, make_optimizer, make_train_step

AUDIO_CLIP = 32000  # 2 s at 16 kHz
FACE_SIZE = 224


def synthetic_batch(cfg: NanoEmoXConfig, batch: int, seq: int, accumulation: int, answer: int = 64,
                    seed: int = 0) -> Batch:
  """[K, b, ...] micro-batches: random prompt ids with every placeholder run, loss on the last `answer` tokens."""
  rs = np.random.RandomState(seed)
  n = accumulation * batch
  ids = rs.randint(0, 5000, (n, seq)).astype(np.int32)
  pos = 8
  for token_id, count in cfg.placeholder_counts.items():
    ids[:, pos:pos + count] = token_id
    pos += count + 4
  labels = np.where(np.arange(seq) >= seq - answer, ids, IGNORE).astype(np.int32)
  size = cfg.clip.image_size
  arrays = (ids, np.ones((n, seq), np.int32), labels,
            rs.randn(n, cfg.num_frames, 3, size, size).astype(np.float32),
            rs.randn(n, cfg.num_frames, 3, FACE_SIZE, FACE_SIZE).astype(np.float32),
            rs.randn(n, cfg.num_audio_clips, AUDIO_CLIP).astype(np.float32), np.ones(n, bool), np.ones(n, bool))
  return Batch(*(jnp.asarray(a.reshape((accumulation, batch) + a.shape[1:])) for a in arrays))


def abstract_batch(cfg: NanoEmoXConfig, batch: int, seq: int, accumulation: int) -> Batch:
  """`synthetic_batch`'s shapes and dtypes as `ShapeDtypeStruct`s (nothing allocated)."""
  k, size, t = (accumulation, batch), cfg.clip.image_size, cfg.num_frames
  s = jax.ShapeDtypeStruct
  return Batch(s(k + (seq,), jnp.int32), s(k + (seq,), jnp.int32), s(k + (seq,), jnp.int32),
               s(k + (t, 3, size, size), jnp.float32), s(k + (t, 3, FACE_SIZE, FACE_SIZE), jnp.float32),
               s(k + (cfg.num_audio_clips, AUDIO_CLIP), jnp.float32), s(k, jnp.bool_), s(k, jnp.bool_))


def feature_shapes(cfg: NanoEmoXConfig, dtype=jnp.float32, tower_dtype=None) -> TowerFeatures:
  """Per-item `ShapeDtypeStruct`s of the towers' outputs (what `data.features` stores), from an abstract model."""
  t, c, size = cfg.num_frames, cfg.num_audio_clips, cfg.clip.image_size
  media = (jnp.zeros((1, t, 3, size, size)), jnp.zeros((1, t, 3, FACE_SIZE, FACE_SIZE)), jnp.zeros((1, c, AUDIO_CLIP)))
  out = nnx.eval_shape(lambda m: m.tower_features(*media), abstract_model(cfg, dtype, tower_dtype=tower_dtype))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), out)


def with_features(batch: Batch, shapes: TowerFeatures, abstract: bool = False, seed: int = 0) -> Batch:
  """`batch` ([K, b, ...]) carrying stored tower features (random normal, or `ShapeDtypeStruct`s) instead of media."""
  lead, rs = batch.input_ids.shape[:2], np.random.RandomState(seed)
  make = (lambda s: jax.ShapeDtypeStruct(lead + s.shape, s.dtype)) if abstract else (
      lambda s: jnp.asarray(rs.randn(*lead, *s.shape), s.dtype))
  return batch._replace(frames=None, faces=None, audio=None, features=TowerFeatures(*(make(s) for s in shapes)))


def random_model(cfg: NanoEmoXConfig, dtype=jnp.float32, tower_dtype=None, seed: int = 0) -> NanoEmoX:
  """`init_model` with the frozen weights drawn too (normal, std 0.02), one jitted fill per distinct shape."""
  model = init_model(cfg, seed, dtype, tower_dtype=tower_dtype)
  fill = jax.jit(lambda key, shape, dtype: 0.02 * jax.random.normal(key, shape, dtype), static_argnums=(1, 2))
  frozen = nnx.state(model, FrozenParam)
  leaves, treedef = jax.tree.flatten(frozen)
  key = jax.random.key(seed + 1)
  nnx.update(model, jax.tree.unflatten(treedef, [fill(jax.random.fold_in(key, i), x.shape, x.dtype)
                                                 for i, x in enumerate(leaves)]))
  return model


def optimizer_for(model: NanoEmoX, phase: str) -> nnx.Optimizer:
  return nnx.Optimizer(model, make_optimizer(OptimConfig(1e-5, steps=1000)), wrt=phases.trainable(phase))


def abstract_state(cfg: NanoEmoXConfig, phase: str, dtype=jnp.float32, tower_dtype=None):
  """(graphdef, state) of (model, optimizer) with `ShapeDtypeStruct` leaves: nothing is allocated."""
  model = abstract_model(cfg, dtype, tower_dtype=tower_dtype)
  optimizer = nnx.eval_shape(lambda m: optimizer_for(m, phase), model)
  return nnx.split((model, optimizer))


def jitted_step(graphdef, phase: str, *, remat: bool, num_targets: int = 64):
  """The training loop's step for `phase` as a pure function of the (model, optimizer) state, state donated:
  (state, micro-batches) -> (metrics, new state)."""
  step = make_train_step(phase, remat=remat)

  def pure(state, batches):
    model, optimizer = nnx.merge(graphdef, state)
    metrics = step(model, optimizer, batches, num_targets)
    return metrics, nnx.state((model, optimizer))

  return jax.jit(pure, donate_argnums=0)


def lowered_step(cfg: NanoEmoXConfig, phase: str, batch: int, seq: int, accumulation: int, *, remat: bool,
                 dtype=jnp.float32, tower_dtype=None, stored: bool = False) -> jax.stages.Lowered:
  """`jitted_step` lowered on abstract (model, optimizer, micro-batches): nothing is allocated. stored: the
  micro-batches carry the towers' outputs (`with_features`) instead of media."""
  graphdef, state = abstract_state(cfg, phase, dtype, tower_dtype)
  batches = abstract_batch(cfg, batch, seq, accumulation)
  if stored:
    batches = with_features(batches, feature_shapes(cfg, dtype, tower_dtype), abstract=True)
  return jitted_step(graphdef, phase, remat=remat).lower(state, batches)


def flops(lowered: jax.stages.Lowered | jax.stages.Compiled) -> float | None:
  """FLOPs of one call, XLA's count on the lowered (unoptimised) or compiled program; None where the backend
  gives none."""
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) if cost else None


@contextlib.contextmanager
def count_compilations() -> Iterator[list[float]]:
  """Collects the duration of every XLA backend compilation that happens inside the block."""
  seen: list[float] = []
  listening = [True]

  def listener(event: str, duration: float, **_) -> None:
    if listening[0] and event == "/jax/core/compile/backend_compile_duration":
      seen.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    listening[0] = False


def model_flops(cfg: NanoEmoXConfig, phase: str, batch: int, seq: int, accumulation: int, dtype=jnp.float32,
                tower_dtype=None, stored: bool = False, compiled: bool = False) -> float | None:
  """FLOPs of one optimizer step without recomputation: XLA counts a `scan` body once, so one micro-batch
  is lowered and multiplied by `accumulation` (the update itself is negligible). stored: on stored tower
  features (`with_features`); compiled: XLA's count of the optimised program (compiled on the CPU, abstract
  inputs: no weights are allocated)."""
  with jax.default_device(jax.local_devices(backend="cpu")[0]):  # a GPU's Lowered gives no cost analysis
    lowered = lowered_step(cfg, phase, batch, seq, 1, remat=False, dtype=dtype, tower_dtype=tower_dtype, stored=stored)
    one = flops(lowered.compile() if compiled else lowered)
  return None if one is None else accumulation * one


def time_steps(cfg: NanoEmoXConfig, phase: str, batch: int, seq: int, accumulation: int, *, remat: bool,
               dtype=jnp.float32, tower_dtype=None, steps: int = 3, stored: bool = False) -> dict[str, float]:
  """On a random model: compile `jitted_step` (seconds, `memory_analysis()` in GB), then the
  first call, the compilations in the first and second calls (0 = nothing recompiled) and the fastest of
  `steps` calls. stored: micro-batches of stored tower features (`with_features`) instead of media."""
  model = random_model(cfg, dtype, tower_dtype)
  graphdef, state = nnx.split((model, optimizer_for(model, phase)))  # donated below: `model` is not used again
  fn = jitted_step(graphdef, phase, remat=remat)
  batches = synthetic_batch(cfg, batch, seq, accumulation)
  if stored:
    batches = with_features(batches, feature_shapes(cfg, dtype, tower_dtype))
  with count_compilations() as compiles:
    start = time.perf_counter()
    compiled = fn.lower(state, batches).compile()
    compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  calls = []
  for _ in range(2):
    with count_compilations() as seen:
      metrics, state = jax.block_until_ready(fn(state, batches))
    calls.append(len(seen))
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    metrics, state = jax.block_until_ready(fn(state, batches))
    times.append(time.perf_counter() - start)
  gb = lambda n: n / 1e9
  return dict(compile_s=compile_s, compilations=len(compiles), first_call_compilations=calls[0],
              second_call_compilations=calls[1], step_s=min(times), loss=float(metrics["loss"]),
              argument_gb=gb(mem.argument_size_in_bytes), temp_gb=gb(mem.temp_size_in_bytes),
              peak_gb=gb(mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
                         - mem.alias_size_in_bytes))
