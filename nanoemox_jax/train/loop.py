"""Run P2E phases from an ml_collections config: model, data, optimizer, mesh, checkpoints, telemetry.

  run_phase(config, workdir, resume)       one phase (`configs/phase*.py`)
  run_curriculum(config, workdir, resume)  the phases of `configs/p2e.py` in its strategy's order

A phase writes under `workdir/<config.name>/`: `checkpoints/` (Orbax, for `--resume`), `metrics.jsonl`,
`tensorboard/`, `loss.png`, and at the end `model/` (a `nanoemox.load` folder: the trained adapters
and LoRA, links to the frozen parts) and `results.json` (steps, time, final metrics, held-out scores).
A finished phase is skipped by a resumed curriculum; an unfinished one continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from nanoemox_jax.data import pipeline
from nanoemox_jax.data.features import build_cache
from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.evaluate.classification import chance, extract_label, scores
from nanoemox_jax.infer.predict import predict
from nanoemox_jax.model import nanoemox
from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, num_targets_for
from nanoemox_jax.model.params_io import param_count, restore_into, save_params
from nanoemox_jax.train import mesh as mesh_lib
from nanoemox_jax.train import phases
from nanoemox_jax.train.checkpoint import Checkpointer
from nanoemox_jax.train.step import (
  OptimConfig,
  make_optimizer,
  make_train_step,
  nonfinite_counts,
  schedule,
)
from nanoemox_jax.train.telemetry import Telemetry, format_table

log = logging.getLogger(__name__)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PARTS = ("clip", "hubert", "face", "llm")
BEFORE = "(start)"  # the baseline rows of the curriculum table: the model before any phase


class NonFiniteError(RuntimeError):
  """Too many consecutive non-finite updates; the last good state was saved."""


class Interrupted(Exception):
  """SIGINT/SIGTERM: the state was saved; resume with `--resume`."""

  def __init__(self, signum: int, step: int, directory: Path):
    super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; state saved in {directory} "
                     "(continue with --resume)")
    self.signum = signum


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
  """SIGINT/SIGTERM append the signal to the yielded list instead of killing the process mid-step."""
  requested: list[int] = []
  handler = lambda signum, frame: requested.append(signum)
  previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield requested
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def optim_config(c: ml_collections.ConfigDict) -> OptimConfig:
  o = c.optim
  return OptimConfig(learning_rate=o.learning_rate, total_steps=o.steps, warmup_steps=o.warmup_steps,
                     warmup_lr=o.warmup_lr, min_lr=o.min_lr, weight_decay=o.weight_decay, clip_norm=o.clip_norm)


def mesh_config(c: ml_collections.ConfigDict) -> mesh_lib.MeshConfig:
  return mesh_lib.MeshConfig(fsdp=c.mesh.fsdp, fsdp_min_size=c.mesh.fsdp_min_size, shard_frozen=c.mesh.shard_frozen)


def _path(base: Path, p: str) -> Path:
  return Path(p) if Path(p).is_absolute() else base / p


def resolve_paths(c: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
  """Absolute model folder, manifests and eval manifests. Demo folders live under `workdir`, the rest
  are relative to the current directory."""
  demo = bool(c.data.demo_corpus)
  base = workdir if demo else Path.cwd()
  root = _path(base, c.data.root)
  return {"model": _path(workdir if c.model.demo_lm_steps else Path.cwd(), c.model.checkpoint),
          "manifests": {name: root / f for name, f in c.data.manifests.items()},
          "eval": {name: root / f for name, f in c.data.eval.items()},
          "corpus": workdir / c.data.demo_corpus if demo else None}


def prepare_demo(c: ml_collections.ConfigDict, paths: Mapping[str, Any], tokenizer: Tokenizer) -> None:
  """Writes the synthetic corpus with its manifests and the demo model parts, when missing (process 0)."""
  from nanoemox_jax import demo

  if jax.process_index() == 0:
    demo.ensure_corpus(paths["corpus"], seed=c.seed, per_class=c.data.demo_per_class)
    if c.model.demo_lm_steps:
      demo.ensure_model(paths["model"], c.model.preset, tokenizer, paths["corpus"], lm_steps=c.model.demo_lm_steps,
                        seed=c.seed)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("demo data written")


def build_model(c: ml_collections.ConfigDict, model_dir: Path, workdir: Path) -> NanoEmoX:
  """Loads the converted parts and starts the trainable state from the phases in `init_from`: everything
  trainable from the first, then from each further one the parameters its own phase trained."""
  model = nanoemox.load(model_dir, dtype=DTYPES[c.model.compute_dtype], tower_dtype=DTYPES[c.model.tower_dtype],
                        seed=c.seed)
  for i, source in enumerate(c.init_from):
    params = workdir / source / "model" / "adapters" / "params"
    if not params.exists():
      raise FileNotFoundError(f"{c.name} starts from {source} (config init_from), but {params} does not exist: "
                              f"run {source} first in this --workdir")
    results = json.loads((workdir / source / "results.json").read_text())
    only = None if i == 0 else phases.trainable(results["trainable"])
    written = restore_into(model, params, nnx.Param, only=only)
    log.info("%s: %d parameter arrays from %s", c.name, len(written), source)
  return model


def export_model(model: NanoEmoX, model_dir: Path, out: Path, source: str, tokenizer: Path | None = None) -> Path:
  """`out` becomes a `nanoemox.load` folder: this phase's adapters + LoRA, links to the frozen parts and to
  the tokenizer (which `python -m nanoemox_jax.infer` reads from `out/tokenizer`)."""
  save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), out / "adapters" / "params")  # every process
  if jax.process_index() == 0:
    (out / "nanoemox.json").write_text((model_dir / "nanoemox.json").read_text())
    for part in PARTS:
      link = out / part
      if (model_dir / part).exists() and not link.exists():
        link.symlink_to((model_dir / part).absolute(), target_is_directory=True)
    if tokenizer is not None and not (out / "tokenizer").exists():
      (out / "tokenizer").symlink_to(Path(tokenizer).absolute(), target_is_directory=True)
    (out / "adapters" / "conversion.json").write_text(json.dumps({"source": source, "missing": []}))
  return out


def stack(batch: Batch, k: int) -> Batch:
  """[k*b, ...] -> [k, b, ...] micro-batches."""
  return jax.tree.map(lambda x: x.reshape((k, x.shape[0] // k) + x.shape[1:]), batch)


CLASSIFICATION_TASKS = ("mer", "ovmer", "msa", "mir", "erg_emotion")  # answers that name a label


def evaluate(model: NanoEmoX, tokenizer: Tokenizer, manifests: Mapping[str, Path], batch_size: int,
             max_new_tokens: int) -> dict[str, dict[str, float]]:
  """Held-out scores per manifest and classification task: accuracy and weighted F1 of the label named by
  each answer (`evaluate.classification`), against the chance rate. Keys are manifest names, `name:task`
  where a manifest holds several such tasks. Records without labels, and free-text tasks (ERI descriptions,
  ERG replies, scored with a judge by `nanoemox_jax.evaluate`), are left out.

  MER items with candidates are asked the closed-set question they were trained with (`templates.question`
  asks held-out MER items the open-vocabulary one, the benchmarks' zero-shot protocol, whose words need the
  emotion-wheel mapping of the benchmark scorers).
  """
  out = {}
  for name, path in manifests.items():
    by_task: dict[str, list] = {}
    for r in read_jsonl(path):
      if r.labels and r.task in CLASSIFICATION_TASKS:
        by_task.setdefault(r.task, []).append(dataclasses.replace(r, split="train") if r.task == "mer" and
                                              r.candidates else r)
    for task, records in by_task.items():
      preds = predict(model, tokenizer, records, batch_size=batch_size, max_new_tokens=max_new_tokens)
      vocabulary = sorted({label for r in records for label in (*r.labels, *r.candidates)})
      truth = [r.labels[0] for r in records]
      s = scores([extract_label(p.text, vocabulary) for p in preds], truth)
      out[name if len(by_task) == 1 else f"{name}:{task}"] = {
          "task": task, "n": len(records), "accuracy": s["accuracy"], "weighted_f1": s["weighted_f1"],
          "chance": chance(truth), "example": preds[0].text}
  return out


def run_phase(c: ml_collections.ConfigDict, workdir: str | Path, resume: bool = False) -> dict[str, Any]:
  """Train one phase (see the module docstring); returns its results (also in `results.json`)."""
  workdir = Path(workdir).absolute()
  out = workdir / c.name
  if (out / "results.json").exists() and resume:
    log.info("%s: already finished (%s)", c.name, out / "results.json")
    return json.loads((out / "results.json").read_text())
  ckpt = Checkpointer(out / "checkpoints", keep=c.keep_checkpoints)
  if ckpt.latest_step() is not None and not resume:
    raise FileExistsError(f"{out / 'checkpoints'} already holds step {ckpt.latest_step()}: pass --resume to "
                          "continue it, or choose another --workdir")
  tokenizer = Tokenizer(c.data.tokenizer)
  paths = resolve_paths(c, workdir)
  if paths["corpus"] is not None:
    prepare_demo(c, paths, tokenizer)
  model = build_model(c, paths["model"], workdir)
  optim = optim_config(c)
  trainable = phases.trainable(c.trainable)
  optimizer = nnx.Optimizer(model, make_optimizer(optim), wrt=trainable)
  mesh = mesh_lib.make_mesh(mesh_config(c))
  mesh_lib.shard_model(model, optimizer, mesh, mesh_config(c))

  k, b = c.data.accumulation, c.data.batch_size
  if b % jax.process_count():
    raise ValueError(f"data.batch_size={b} is not divisible by the {jax.process_count()} processes")
  multi = jax.process_count() > 1  # every process must pad to the same length: one bucket
  features = None
  if c.data.cache_features and multi:
    log.warning("%s: data.cache_features is for one process; %d processes decode media in the pipeline", c.name,
                jax.process_count())
  elif c.data.cache_features:
    records = [r for path in paths["manifests"].values() for r in read_jsonl(path)]
    features = build_cache(model, records, batch_size=c.eval_batch_size, workers=c.data.workers)
  pipe = pipeline.build({n: p for n, p in paths["manifests"].items()}, tokenizer, model.config, pipeline.PipelineConfig(
      batch_size=k * b // jax.process_count(), buckets=tuple(c.data.buckets)[-1:] if multi else tuple(c.data.buckets),
      seed=c.seed, workers=c.data.workers, media_failure=c.data.media_failure),
      task_weights=pipeline.PHASE3_TASK_WEIGHTS if c.data.task_weights else None, features=features)
  data = iter(pipe)
  start = 0
  restored = ckpt.restore(model, optimizer) if resume else None
  if restored is not None:
    start, data_state, _ = restored
    data.set_state(data_state)
    log.info("%s: resumed at step %d", c.name, start)

  step_fn = make_train_step(c.trainable, mesh, mesh_config(c), remat=c.model.remat)
  lr = schedule(optim)
  total = c.optim.steps
  meta = {"phase": c.name, "config": json.loads(c.to_json())}
  telemetry = Telemetry(workdir, c.name, total, start_step=start, samples_per_step=k * b,
                        enabled=jax.process_index() == 0)
  n_trainable = param_count(nnx.state(model, trainable))
  began, step = time.perf_counter(), start
  metrics: dict[str, float] = {}
  try:
    with _stop_requests() as stop:
      for step in range(start + 1, total + 1):
        batches = stack(next(data), k)
        num_targets = num_targets_for(batches.labels)
        if multi:  # a static argument: the same on every process
          num_targets = int(multihost_utils.process_allgather(np.int32(num_targets)).max())
        device_metrics = step_fn(model, optimizer, mesh_lib.shard_batch(batches, mesh), num_targets)
        if step % c.log_every == 0 or step == total:
          metrics = {key: float(v) for key, v in jax.device_get(device_metrics).items()}
          consecutive, skipped = nonfinite_counts(optimizer)
          metrics |= {"lr": float(lr(step - 1)), "skipped_nonfinite": skipped} | data.stats.flat()
          telemetry.log(step, metrics)
          if consecutive >= c.optim.max_nonfinite:
            ckpt.save(step, model, optimizer, data.get_state(), meta)
            ckpt.wait()
            raise NonFiniteError(f"{c.name}: {consecutive} consecutive non-finite updates at step {step}; the "
                                 f"last good state is saved in {ckpt.directory}")
        if stop:
          ckpt.save(step, model, optimizer, data.get_state(), meta)
          ckpt.wait()
          raise Interrupted(stop[0], step, ckpt.directory)
        if step % c.checkpoint_every == 0 and step < total:
          ckpt.save(step, model, optimizer, data.get_state(), meta)
    if start < total:  # else a run stopped after its last update (e.g. in the held-out scoring): nothing new
      ckpt.save(total, model, optimizer, data.get_state(), meta | {"done": True})
    ckpt.wait()
  finally:
    telemetry.close()
    data.close()
  seconds = time.perf_counter() - began
  export_model(model, paths["model"], out / "model", c.name, Path(c.data.tokenizer))
  held_out = {}
  if multi and c.evaluate:
    log.info("%s: held-out scoring runs on one process; score %s with nanoemox_jax.infer", c.name, out / "model")
  elif c.evaluate and paths["eval"]:
    held_out = evaluate(model, tokenizer, {n: p for n, p in paths["eval"].items() if p.exists()},
                        c.eval_batch_size, c.eval_max_new_tokens)
  results = {"phase": c.name, "trainable": c.trainable, "steps": total, "resumed_from": start,
             "trainable_params": n_trainable, "seconds": seconds, "final": metrics, "held_out": held_out}
  if jax.process_index() == 0:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(summary(results))
  ckpt.close()
  return results


def summary(results: Mapping[str, Any]) -> str:
  """One screen: what trained, how long, the last logged metrics and the held-out scores."""
  r = results
  lines = [f"== {r['phase']}: {r['trainable_params']:,} trainable parameters (filter {r['trainable']}), "
           f"{r['steps']} steps" + (f" (resumed at {r['resumed_from']})" if r["resumed_from"] else "")
           + f", {r['seconds']:.0f} s",
           "   final: " + ", ".join(f"{k}={v:.4g}" for k, v in r["final"].items() if k in ("loss", "grad_norm", "lr"))]
  if r["held_out"]:
    rows = [(name, s["task"], s["n"], s["accuracy"], s["weighted_f1"], s["chance"], s["accuracy"] / s["chance"])
            for name, s in r["held_out"].items()]
    lines.append(format_table(("held-out set", "task", "n", "accuracy", "weighted F1", "chance", "x chance"), rows))
  return "\n".join(lines)


def baseline(first: ml_collections.ConfigDict, chain: list[ml_collections.ConfigDict], workdir: str | Path
             ) -> dict[str, Any]:
  """The held-out scores of the starting model (converted parts, fresh adapters) on every phase's eval
  sets: what P2E improves on. Kept in `workdir/baseline.json`."""
  path = Path(workdir).absolute() / "baseline.json"
  if path.exists():
    return json.loads(path.read_text())
  first = ml_collections.ConfigDict(first.to_dict())
  first.init_from = []
  tokenizer = Tokenizer(first.data.tokenizer)
  paths = resolve_paths(first, Path(workdir).absolute())
  if paths["corpus"] is not None:
    prepare_demo(first, paths, tokenizer)
  manifests = {name: p for c in chain for name, p in resolve_paths(c, Path(workdir).absolute())["eval"].items()
               if p.exists()}
  held_out = {}
  if jax.process_count() == 1 and first.evaluate:
    model = build_model(first, paths["model"], Path(workdir).absolute())
    held_out = evaluate(model, tokenizer, manifests, first.eval_batch_size, first.eval_max_new_tokens)
  result = {"phase": BEFORE, "seconds": 0.0, "held_out": held_out}
  if jax.process_index() == 0:
    path.write_text(json.dumps(result, indent=2))
  return result


def run_curriculum(c: ml_collections.ConfigDict, workdir: str | Path, resume: bool = False) -> list[dict[str, Any]]:
  """The phases of `c.strategy` in order; in `reverse`, each phase starts from the one before it."""
  if c.strategy not in phases.STRATEGIES:
    raise ValueError(f"config.strategy={c.strategy!r} is not one of {sorted(phases.STRATEGIES)}")
  order = phases.STRATEGIES[c.strategy]
  results = [baseline(c.phases[order[0]], [c.phases[name] for name in order], workdir)] if c.baseline else []
  for i, name in enumerate(order):
    pc = c.phases[name]
    if c.strategy == "reverse":
      pc = ml_collections.ConfigDict(pc.to_dict())
      pc.init_from = [c.phases[order[i - 1]].name] if i else []
    results.append(run_phase(pc, workdir, resume))
  if jax.process_index() == 0:
    print(f"\n== {c.strategy}: {len(order)} phases in {sum(r['seconds'] for r in results):.0f} s of training")
    rows = [(r["phase"], name, s["task"], s["accuracy"], s["chance"], s["accuracy"] / s["chance"])
            for r in results for name, s in r["held_out"].items()]
    if rows:
      print(format_table(("model after", "held-out set", "task", "accuracy", "chance", "x chance"), rows))
  return [r for r in results if r["phase"] != BEFORE]


def run(c: ml_collections.ConfigDict, workdir: str | Path, resume: bool = False) -> list[dict[str, Any]]:
  """A curriculum config (has `strategy`) or a single phase."""
  if "strategy" in c:
    return run_curriculum(c, workdir, resume)
  return [run_phase(c, workdir, resume)]

