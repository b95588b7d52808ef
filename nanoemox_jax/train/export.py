"""python -m nanoemox_jax.train.export --workdir W --phase P (--step N | --all) --out DIR

Turns kept training checkpoints (`W/<phase>/checkpoints/`, Orbax) into model folders that
`nanoemox_jax.infer --checkpoint` loads, for scoring a checkpoint other than the phase's final `model/`
(the best-of-range protocol of `nanoemox_jax.evaluate --select best`). `--step N` writes DIR itself;
`--all` writes `DIR/step_<N>` for every kept step. The model is rebuilt from the run's `W/config.json`
(written by the training run): the same parts, model config and `init_from` phases, then the checkpoint's
trainable parameters. Exit 2 with one line for a missing workdir, phase or step, or an --out that is not a model
folder; exit 1 with one line when writing fails (a full disk: the previous folder at that path is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flax import nnx

from nanoemox_jax.train import loop, phases
from nanoemox_jax.train.checkpoint import Checkpointer
from nanoemox_jax.train.config import Run, from_config_dict
from nanoemox_jax.train.step import make_optimizer


def read_run(workdir: Path) -> Run:
  """The typed config a training run wrote to `workdir/config.json`."""
  path = workdir / loop.CONFIG
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: --workdir is not a training run's folder")
  return from_config_dict(json.loads(path.read_text()))


def export_steps(workdir: str | Path, phase: str, steps: list[int] | None, out: str | Path) -> list[Path]:
  """Model folders of phase `phase`'s checkpoints `steps` (None: every kept one) under `out` (one step and
  `steps` given: `out` itself). Returns the folders written."""
  workdir, out = Path(workdir).absolute(), Path(out).absolute()
  run = read_run(workdir)
  if phase not in run.phases:
    raise ValueError(f"--phase {phase}: {workdir / loop.CONFIG} has phases {sorted(run.phases)}")
  ckpt = Checkpointer(workdir / phase / "checkpoints", keep=run.phases[phase].keep_checkpoints, asynchronous=False)
  kept = ckpt.all_steps()
  missing = sorted(set(steps or ()) - set(kept))
  if missing or not kept:
    raise ValueError(f"{ckpt.directory}: no checkpoint of step(s) {missing or steps}; kept: {kept}")
  model = loop.build_model(run, phase, workdir)
  optimizer = nnx.Optimizer(model, make_optimizer(run.phases[phase].optim),
                            wrt=phases.trainable(run.phases[phase].trainable))
  folders = []
  for step in steps or kept:
    ckpt.restore(model, optimizer, step)
    folder = out if steps and len(steps) == 1 else out / f"step_{step}"
    folders.append(loop.export(run, phase, model, folder))
    print(f"{phase} step {step} -> {folder}", flush=True)
  ckpt.close()
  return folders


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.train.export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="the training run's --workdir")
  parser.add_argument("--phase", required=True, help="the phase's folder under --workdir (phase1a, ..., joint)")
  which = parser.add_mutually_exclusive_group(required=True)
  which.add_argument("--step", type=int, action="append", help="a kept checkpoint's step (repeatable)")
  which.add_argument("--all", action="store_true", help="every kept checkpoint, as DIR/step_<N>")
  parser.add_argument("--out", required=True, help="the model folder to write (with --all: their parent)")
  args = parser.parse_args(argv)
  try:
    export_steps(args.workdir, args.phase, None if args.all else args.step, args.out)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # a full disk (ENOSPC): the model folder being written is removed, an older one kept
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
