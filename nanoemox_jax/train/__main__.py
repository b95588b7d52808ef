"""python -m nanoemox_jax.train --config configs/phase2.py[:PRESET] --workdir DIR [--resume] [--config.x=y ...]

`configs/p2e.py` runs the whole curriculum (`--config.strategy=p2e|joint|reverse`); PRESET picks the model
preset (`full` by default). Every field of `train.config.Run` is a `--config.` flag: `--config.paths.parts=`,
`--config.model.fusion.weighting=average`, `--config.phases.phase3.optim.steps=10`. Exit codes: 0 done,
2 bad config or input (one line naming the file or field), 3 stopped by non-finite updates (state saved),
128+signal after SIGINT/SIGTERM (state saved; rerun with --resume).
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
  cli.parse(argv, lambda: cli.load_config_file(cli.config_file_arg(argv)))
  for name in ("config", "workdir"):
    if flags.FLAGS[name].value is None:
      print(f"error: --{name} is required", file=sys.stderr)
      return 2
  return cli.execute(_CONFIG.value, _WORKDIR.value, _RESUME.value)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
