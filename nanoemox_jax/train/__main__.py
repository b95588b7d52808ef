"""python -m nanoemox_jax.train --config configs/phase2.py[:demo] --workdir DIR [--resume] [--config.x=y ...]

`configs/p2e.py` runs the whole curriculum (`--config.strategy=p2e|joint|reverse`). Exit codes: 0 done,
2 bad config or input (the message names the file or field), 3 stopped by non-finite updates (state
saved), 128+signal after SIGINT/SIGTERM (state saved; rerun with --resume).
"""

from __future__ import annotations

import logging
import sys

import jax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from nanoemox_jax.data.media import MediaError
from nanoemox_jax.data.sources.common import SourceError
from nanoemox_jax.train import loop
from nanoemox_jax.train.mesh import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file (configs/phase*.py, configs/p2e.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (phases, checkpoints, logs, exported model)")
_RESUME = flags.DEFINE_bool("resume", False, "continue the run in --workdir from its last checkpoints")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax and XLA are chatty at INFO
  logging.getLogger("nanoemox_jax").setLevel(logging.INFO)
  c = _CONFIG.value
  dist = (c.phases[next(iter(c.phases))] if "strategy" in c else c).distributed
  initialize_distributed(dist.coordinator or None, dist.num_processes if dist.coordinator else None,
                         dist.process_id if dist.coordinator else None)
  print(f"jax {jax.__version__}: {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es); workdir {_WORKDIR.value}", flush=True)
  try:
    loop.run(c, _WORKDIR.value, _RESUME.value)
  except loop.Interrupted as e:
    print(f"\n{e}", file=sys.stderr)
    return 128 + e.signum
  except loop.NonFiniteError as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 3
  except (FileNotFoundError, FileExistsError, ValueError, SourceError, MediaError) as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
