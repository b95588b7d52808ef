"""Run the P2E phases of a `train.config.Run`: a short list of named steps.

  run(run, workdir, resume)              the phases in the strategy's order, after the baseline scores
  run_phase(run, name, workdir, resume)  build_model -> restore -> make_data -> fit -> export -> score

A phase writes under `workdir/<name>/`: `checkpoints/` (Orbax, for `--resume`), `metrics.jsonl`,
`tensorboard/`, `loss.png`, and at the end `model/` (a model folder, `checkpoints.parts`: the trained
adapters and LoRA, links to the frozen parts) and `results.json` (steps, time, final metrics, held-out scores).
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
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.data import pipeline
from nanoemox_jax.data.features import build_cache
from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.evaluate.classification import chance, extract_label, scores
from nanoemox_jax.infer.predict import predict
from nanoemox_jax.model import fields
from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, num_targets_for
from nanoemox_jax.checkpoints.params_io import param_count, restore_into
from nanoemox_jax.model import mesh as mesh_lib
from nanoemox_jax.train import phases
from nanoemox_jax.train.checkpoint import Checkpointer
from nanoemox_jax.train.config import TASK_ORDER, Run
from nanoemox_jax.train.step import make_optimizer, make_train_step, nonfinite_counts, schedule
from nanoemox_jax.train.telemetry import Telemetry, format_table

log = logging.getLogger(__name__)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CONFIG = "config.json"  # the run's config, under --workdir
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


def held_out_sets(run: Run, names: tuple[str, ...]) -> dict[str, Path]:
  """`<name>_<split>` -> its manifest under `paths.data`, for the held-out sets of phases `names` that exist."""
  sets = {f"{n}_{run.phases[p].data.eval_split}": Path(run.paths.data) / f"{n}_{run.phases[p].data.eval_split}.jsonl"
          for p in names for n in run.phases[p].data.eval}
  return {key: path for key, path in sets.items() if path.exists()}


def build_model(run: Run, name: str, workdir: Path) -> NanoEmoX:
  """The converted parts with the run's model config, its trainable state started from the phases in
  `init_from`: everything trainable from the first, then from each further one the parameters its own
  phase trained."""
  phase = run.phases[name]
  model = parts.load(run.paths.parts, config=run.model, dtype=DTYPES[run.precision.compute_dtype],
                     tower_dtype=DTYPES[run.precision.tower_dtype], seed=phase.seed)
  for i, source in enumerate(phase.init_from):
    params = workdir / source / "model" / "adapters" / "params"
    if not params.exists():
      raise FileNotFoundError(f"phases.{name}.init_from: {params} does not exist; run {source} first in this "
                              "--workdir")
    trained = json.loads((workdir / source / "results.json").read_text())["trainable"]
    only = None if i == 0 else phases.trainable(trained)
    written = restore_into(model, params, nnx.Param, only=only)
    log.info("%s: %d parameter arrays from %s", name, len(written), source)
  return model


def make_data(run: Run, name: str, model: NanoEmoX, tokenizer: Tokenizer, store: Path | None = None
              ) -> pipeline.Pipeline:
  """The phase's training batches of `accumulation x batch_size` (per process), from the feature store `store`
  (`data.features`; missing entries are computed first) when `data.cache_features` (one process only)."""
  data = run.phases[name].data
  if data.batch_size % jax.process_count():
    raise ValueError(f"phases.{name}.data.batch_size={data.batch_size} is not divisible by the "
                     f"{jax.process_count()} processes")
  multi = jax.process_count() > 1  # every process must pad to the same length: one bucket
  manifests = {n: Path(run.paths.data) / f"{n}_train.jsonl" for n in data.train}
  features = None
  if data.cache_features and multi:
    log.warning("%s: data.cache_features is for one process; %d processes decode media in the pipeline", name,
                jax.process_count())
  elif data.cache_features:
    records = [r for path in manifests.values() for r in read_jsonl(path)]
    features = build_cache(store, model, records, batch_size=run.phases[name].eval_batch_size, workers=data.workers)
  weights = dict(zip(TASK_ORDER, data.task_weights)) if data.task_weights else None
  return pipeline.build(manifests, tokenizer, model.config, pipeline.PipelineConfig(
      batch_size=data.accumulation * data.batch_size // jax.process_count(),
      buckets=data.buckets[-1:] if multi else data.buckets, seed=run.phases[name].seed, workers=data.workers,
      media_failure=data.media_failure), task_weights=weights, features=features)


def fit(run: Run, name: str, model: NanoEmoX, optimizer: nnx.Optimizer, mesh: jax.sharding.Mesh,
        data: Iterator, ckpt: Checkpointer, start: int, telemetry: Telemetry, out: Path) -> dict[str, float]:
  """Updates start+1 .. optim.steps, logging, checkpointing, exporting every `export_every` updates under
  `out/exports/`, and stopping cleanly on SIGINT/SIGTERM or a run of non-finite updates (the state is saved
  first). Returns the last logged metrics."""
  phase = run.phases[name]
  k, total = phase.data.accumulation, phase.optim.steps
  step_fn = make_train_step(phase.trainable, mesh, run.mesh, remat=run.precision.remat)
  lr = schedule(phase.optim)
  meta = {"phase": name, "config": fields.to_dict(phase)}
  save = lambda step, **extra: ckpt.save(step, model, optimizer, data.get_state(), meta | extra)
  metrics: dict[str, float] = {}
  with _stop_requests() as stop:
    for step in range(start + 1, total + 1):
      batches = stack(next(data), k)
      num_targets = num_targets_for(batches.labels)
      if jax.process_count() > 1:  # a static argument: the same on every process
        num_targets = int(multihost_utils.process_allgather(np.int32(num_targets)).max())
      device_metrics = step_fn(model, optimizer, mesh_lib.shard_batch(batches, mesh), num_targets)
      if step % phase.log_every == 0 or step == total:
        metrics = {key: float(v) for key, v in jax.device_get(device_metrics).items()}
        consecutive, skipped = nonfinite_counts(optimizer)
        metrics |= {"lr": float(lr(step - 1)), "skipped_nonfinite": skipped} | data.stats.flat()
        telemetry.log(step, metrics)
        if consecutive >= phase.optim.max_nonfinite:
          save(step)
          ckpt.wait()
          raise NonFiniteError(f"{name}: {consecutive} consecutive non-finite updates at step {step}; the last "
                               f"good state is saved in {ckpt.directory}")
      if stop:
        save(step)
        ckpt.wait()
        raise Interrupted(stop[0], step, ckpt.directory)
      if step % phase.checkpoint_every == 0 and step < total:
        save(step)
      if phase.export_every and step % phase.export_every == 0:
        export(run, name, model, out / "exports" / f"step_{step}")
  if start < total:  # else a run stopped after its last update (e.g. in the held-out scoring): nothing new
    save(total, done=True)
  ckpt.wait()
  return metrics


def export(run: Run, name: str, model: NanoEmoX, folder: Path) -> Path:
  """`folder` becomes a model folder (`checkpoints.parts.export`) of `model` as trained by phase `name`; every
  process calls it."""
  return parts.export(model, run.paths.parts, folder, name, run.paths.tokenizer_folder(),
                      write_files=jax.process_index() == 0)


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


def run_phase(run: Run, name: str, workdir: str | Path, resume: bool = False) -> dict[str, Any]:
  """Train phase `name` of `run` (see the module docstring); returns its results (also in `results.json`)."""
  workdir = Path(workdir).absolute()
  phase, out = run.phases[name], Path(workdir) / name
  if (out / "results.json").exists() and resume:
    log.info("%s: already finished (%s)", name, out / "results.json")
    return json.loads((out / "results.json").read_text())
  ckpt = Checkpointer(out / "checkpoints", keep=phase.keep_checkpoints)
  if ckpt.latest_step() is not None and not resume:
    raise FileExistsError(f"{out / 'checkpoints'} already holds step {ckpt.latest_step()}: pass --resume to "
                          "continue it, or choose another --workdir")
  tokenizer = Tokenizer(run.paths.tokenizer_folder())
  model = build_model(run, name, workdir)
  trainable = phases.trainable(phase.trainable)
  optimizer = nnx.Optimizer(model, make_optimizer(phase.optim), wrt=trainable)
  mesh = mesh_lib.make_mesh(run.mesh)
  mesh_lib.shard_model(model, optimizer, mesh, run.mesh)
  data = iter(make_data(run, name, model, tokenizer, run.paths.features_folder(workdir)))
  start = 0
  restored = ckpt.restore(model, optimizer) if resume else None
  if restored is not None:
    start, data_state, _ = restored
    data.set_state(data_state)
    log.info("%s: resumed at step %d", name, start)
  telemetry = Telemetry(workdir, name, phase.optim.steps, start_step=start,
                        samples_per_step=phase.data.accumulation * phase.data.batch_size,
                        enabled=jax.process_index() == 0)
  began = time.perf_counter()
  try:
    metrics = fit(run, name, model, optimizer, mesh, data, ckpt, start, telemetry, out)
  finally:
    telemetry.close()
    data.close()
  seconds = time.perf_counter() - began
  export(run, name, model, out / "model")
  results = {"phase": name, "trainable": phase.trainable, "steps": phase.optim.steps, "resumed_from": start,
             "trainable_params": param_count(nnx.state(model, trainable)), "seconds": seconds, "final": metrics,
             "held_out": score(run, name, model, tokenizer)}
  if jax.process_index() == 0:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(summary(results))
  ckpt.close()
  return results


def score(run: Run, name: str, model: NanoEmoX, tokenizer: Tokenizer) -> dict[str, dict[str, float]]:
  """`evaluate` on the phase's held-out sets that exist (one process only)."""
  phase = run.phases[name]
  if not phase.evaluate or not phase.data.eval:
    return {}
  if jax.process_count() > 1:
    log.info("%s: held-out scoring runs on one process; score %s/model with nanoemox_jax.infer", name, name)
    return {}
  return evaluate(model, tokenizer, held_out_sets(run, (name,)), phase.eval_batch_size, phase.eval_max_new_tokens)

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


def baseline(run: Run, workdir: str | Path) -> dict[str, Any]:
  """The held-out scores of the starting model (converted parts, fresh adapters) on every phase's held-out
  sets: what the curriculum improves on. Kept in `workdir/baseline.json`."""
  path = Path(workdir).absolute() / "baseline.json"
  if path.exists():
    return json.loads(path.read_text())
  first = run.order[0]
  start = dataclasses.replace(run, phases=run.phases | {first: dataclasses.replace(run.phases[first], init_from=())})
  held_out = {}
  if jax.process_count() == 1 and run.phases[first].evaluate:
    model = build_model(start, first, Path(workdir).absolute())
    tokenizer = Tokenizer(run.paths.tokenizer_folder())
    held_out = evaluate(model, tokenizer, held_out_sets(run, run.order), run.phases[first].eval_batch_size,
                        run.phases[first].eval_max_new_tokens)
  result = {"phase": BEFORE, "seconds": 0.0, "held_out": held_out}
  if jax.process_index() == 0:
    path.write_text(json.dumps(result, indent=2))
  return result


def ordered(run: Run) -> Run:
  """`run` with each phase of the `reverse` strategy starting from the one before it."""
  if run.strategy != "reverse":
    return run
  order = run.order
  chained = {n: dataclasses.replace(run.phases[n], init_from=(order[i - 1],) if i else ()) for i, n in enumerate(order)}
  return dataclasses.replace(run, phases=run.phases | chained)


def run(config: Run, workdir: str | Path, resume: bool = False) -> list[dict[str, Any]]:
  """The phases of `config` in its strategy's order (the baseline first when `config.baseline`); their results."""
  config = ordered(config)
  if jax.process_index() == 0:  # what `python -m nanoemox_jax.train.export` rebuilds the model from
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / CONFIG).write_text(json.dumps(fields.to_dict(config), indent=1))
  results = [baseline(config, workdir)] if config.baseline else []
  results += [run_phase(config, name, workdir, resume) for name in config.order]
  if jax.process_index() == 0 and len(config.order) > 1:
    print(f"\n== {config.strategy}: {len(config.order)} phases in {sum(r['seconds'] for r in results):.0f} s of "
          "training")
    rows = [(r["phase"], name, s["task"], s["accuracy"], s["chance"], s["accuracy"] / s["chance"])
            for r in results for name, s in r["held_out"].items()]
    if rows:
      print(format_table(("model after", "held-out set", "task", "accuracy", "chance", "x chance"), rows))
  return [r for r in results if r["phase"] != BEFORE]
