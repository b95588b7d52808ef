"""python -m nanoemox_jax.train --config configs/phase2.py[:PRESET] --workdir DIR [--resume] [--config.x=y ...]

`configs/p2e.py` runs the whole curriculum (`--config.strategy=p2e|joint|reverse`); PRESET picks the model
preset (`full` by default). Every field of `train.config.Run` is a `--config.` flag: `--config.paths.parts=`,
`--config.model.fusion.weighting=average`, `--config.phases.phase3.optim.steps=10`. Exit codes: 0 done,
2 bad config or input (one line naming the file or field), 3 stopped by non-finite updates (state saved),
128+signal after SIGINT/SIGTERM (state saved; rerun with --resume).

--dry-run (no --workdir needed) checks every path, manifest, part and the tokenizer, decodes the first media
items of each training set, and prints per phase the sources, the task shares over 10,000 draws, samples,
updates and the time projected from one measured update; exit 2 when it found a problem.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from nanoemox_jax.train import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file (configs/phase*.py, configs/p2e.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (phases, checkpoints, logs, exported models)")
_RESUME = flags.DEFINE_bool("resume", False, "continue the run in --workdir from its last checkpoints")


def main(argv: list[str]) -> int:
  dry = "--dry-run" in argv
  argv = [a for a in argv if a != "--dry-run"]
  cli.parse(argv, lambda: cli.load_config_file(cli.config_file_arg(argv)))
  for name in ("config",) if dry else ("config", "workdir"):
    if flags.FLAGS[name].value is None:
      print(f"error: --{name} is required", file=sys.stderr)
      return 2
  if dry:
    return cli.dry_run(_CONFIG.value)
  return cli.execute(_CONFIG.value, _WORKDIR.value, _RESUME.value)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
