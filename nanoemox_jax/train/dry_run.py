"""`python -m nanoemox_jax.train --config ... --dry-run`: check a run's inputs and project its cost, without training.

For every phase of the run, in order: the manifests (`paths.data/<set>_train.jsonl`, held-out sets), the first
`MEDIA_PER_SOURCE` media items of each training set decoded as training decodes them, the mixture's per-task
shares over `DRAWS` draws of the training sampler, samples and updates, and, with `measure`, one timed update
of the phase (after two compiling calls) projected over `optim.steps`. The model is loaded once from
`paths.parts` with the run's model config, which checks every part's config and shapes and the tokenizer's
placeholder ids against it. Every problem is listed; none stops the others from being checked.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.checkpoints.params_io import param_count
from nanoemox_jax.data import media, pipeline
from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.model import fields
from nanoemox_jax.model import mesh as mesh_lib
from nanoemox_jax.model.nanoemox import NanoEmoX
from nanoemox_jax.train import loop, phases
from nanoemox_jax.train.config import TASK_ORDER, Run
from nanoemox_jax.train.step import make_optimizer, make_train_step

DRAWS = 10_000
MEDIA_PER_SOURCE = 3


def check_phase(run: Run, name: str, problems: list[str]) -> dict[str, Any]:
  """Manifests, media, mixture and budget of phase `name`; problems are appended to `problems`."""
  phase, data = run.phases[name], run.phases[name].data
  folder = Path(run.paths.data)
  manifests = {n: folder / f"{n}_train.jsonl" for n in data.train}
  report: dict[str, Any] = {"sources": {}, "held_out": {}}
  for n, path in manifests.items():
    if not path.exists():
      problems.append(f"phases.{name}.data.train: {path} does not exist (prepare it with nanoemox_jax.data.prepare)")
      continue
    records = read_jsonl(path)
    report["sources"][n] = {"records": len(records), "tasks": dict(collections.Counter(r.task for r in records))}
    for r in [r for r in records if r.video or r.audio][:MEDIA_PER_SOURCE]:
      decoded = media.decode_sample(r.video, r.audio, run.model.face_input)
      problems += [f"{path}: record {r.id!r}: {e}" for e in decoded.errors]
  for n in data.eval:
    path = folder / f"{n}_{data.eval_split}.jsonl"
    report["held_out"][n] = len(read_jsonl(path)) if path.exists() else None
  if report["sources"] and len(report["sources"]) == len(manifests):
    weights = dict(zip(TASK_ORDER, data.task_weights)) if data.task_weights else None
    mixed = pipeline.sources(manifests, phase.seed, task_weights=weights)
    drawn = pipeline.mixture(mixed, phase.seed)
    counts = collections.Counter(pipeline.TASK_GROUPS.get(r.task, r.task) for _, r in
                                 (drawn[i] for i in range(DRAWS)))
    report["shares"] = {task: counts[task] / DRAWS for task in sorted(counts)}
  per_update = data.batch_size * data.accumulation
  report |= {"updates": phase.optim.steps, "samples": phase.optim.steps * per_update, "per_update": per_update}
  return report


def time_update(run: Run, name: str, model: NanoEmoX, tokenizer: Tokenizer) -> float:
  """Seconds of one update of phase `name` on its first batch (the second call; the first compiles), with the
  state placed on the mesh as training places it. The trainable parameters are restored afterwards, so the next
  phase measures the same model."""
  phase = run.phases[name]
  light = dataclasses.replace(run, phases=run.phases | {name: fields.replace(
      phase, {"data": {"workers": 0, "cache_features": False}})})
  stream = iter(loop.make_data(light, name, model, tokenizer))
  batches = loop.stack(next(stream), phase.data.accumulation)
  stream.close()
  trainable = phases.trainable(phase.trainable)
  saved = jax.tree.map(lambda x: x.copy(), nnx.state(model, trainable))
  optimizer = nnx.Optimizer(model, make_optimizer(phase.optim), wrt=trainable)
  # Placed as `loop.run_phase` places it: every leaf committed to the mesh. A state of mixed leaves (restored
  # parameters are committed to a device, a fresh optimizer's zeros are not) would compile a second time on the
  # second call, whose donated inputs all come back committed.
  mesh = mesh_lib.make_mesh(run.mesh)
  mesh_lib.shard_model(model, optimizer, mesh, run.mesh)
  step = make_train_step(phase.trainable, mesh, run.mesh, remat=run.precision.remat)
  batches = mesh_lib.shard_batch(batches, mesh)
  jax.block_until_ready(step(model, optimizer, batches))  # compiles
  began = time.perf_counter()
  jax.block_until_ready(step(model, optimizer, batches))
  seconds = time.perf_counter() - began
  nnx.update(model, saved)
  return seconds


def dry_run(run: Run, measure: bool = True) -> tuple[str, list[str]]:
  """(the printed report, the problems found) for `run`; see the module docstring."""
  problems: list[str] = []
  for what, path in (("paths.parts", run.paths.parts), ("paths.data", run.paths.data)):
    if not Path(path).is_dir():
      problems.append(f"{what}: {path!r} is not a folder")
  tokenizer = model = None
  if not problems:
    try:
      tokenizer = Tokenizer(run.paths.tokenizer_folder())
      model = parts.load(run.paths.parts, config=run.model, dtype=loop.DTYPES[run.precision.compute_dtype],
                         tower_dtype=loop.DTYPES[run.precision.tower_dtype])
      tokenizer.check_model(model.config)
    except (FileNotFoundError, ValueError) as e:
      problems.append(str(e))
  lines = [f"dry run: {len(run.order)} phase(s) {', '.join(run.order)}; parts {run.paths.parts}; data "
           f"{run.paths.data}; tokenizer {run.paths.tokenizer_folder()}"]
  for name in run.order if Path(run.paths.data).is_dir() else ():
    found = len(problems)
    report = check_phase(run, name, problems)
    seconds = time_update(run, name, model, tokenizer) if measure and model is not None and len(problems) == found \
        else None
    shares = ", ".join(f"{t} {100 * s:.1f}%" for t, s in report.get("shares", {}).items())
    trained = "" if model is None else f", {param_count(nnx.state(model, phases.trainable(run.phases[name].trainable))):,} parameters"
    lines += [f"== {name}: trainable filter {run.phases[name].trainable}{trained}",
              "   sources: " + ", ".join(f"{n} {s['records']:,} records {s['tasks']}" for n, s in
                                        report["sources"].items()),
              "   held out: " + ", ".join(f"{n} {'missing' if k is None else f'{k:,}'}" for n, k in
                                         report["held_out"].items()),
              f"   tasks over {DRAWS:,} draws: {shares or '-'}",
              f"   {report['updates']:,} updates of {report['per_update']} = {report['samples']:,} samples"
              + (f"; one update {seconds:.2f} s -> {report['updates'] * seconds / 3600:.1f} h projected on "
                 f"{jax.devices()[0].device_kind}" if seconds is not None else "")]
  lines += [f"problems ({len(problems)}):", *(f"  - {p}" for p in problems)] if problems else ["no problems found"]
  return "\n".join(lines), problems
