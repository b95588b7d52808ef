"""The command-line layer shared by `python -m nanoemox_jax.train` and `python -m nanoemox_jax.demo`: absl flag
parsing whose bad `--config.` overrides become one line naming the nearest field, and `execute`, which types
the ConfigDict once (`train.config.from_config_dict`) and maps user-facing failures to exit codes.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
from absl import flags
from absl import logging as absl_logging

from nanoemox_jax.data.media import MediaError
from nanoemox_jax.data.sources.common import SourceError
from nanoemox_jax.model.fields import nearest
from nanoemox_jax.train import dry_run as dry_run_lib
from nanoemox_jax.train import loop
from nanoemox_jax.train.config import Run, from_config_dict
from nanoemox_jax.model.mesh import initialize_distributed

_OVERRIDE = re.compile(r"^--?config\.([\w.]+)(=|$)")


def unknown_override(config: ml_collections.ConfigDict, argv: list[str]) -> str | None:
  """The first `--config.a.b=...` of `argv` that names no field of `config`, with the nearest valid name."""
  for arg in argv:
    match = _OVERRIDE.match(arg)
    if not match:
      continue
    node, walked = config, []
    for key in match.group(1).split("."):
      if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        where = ".".join(["config", *walked])
        hint = nearest(key, list(node.keys())) if isinstance(node, ml_collections.ConfigDict) else " (not a group)"
        return f"--config.{match.group(1)}: {where} has no field {key!r}{hint}"
      node, walked = node[key], walked + [key]
  return None


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`path.py[:arg]` -> its `get_config(arg)`, as `config_flags` loads it."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_training_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def config_file_arg(argv: list[str]) -> str | None:
  """The value of `--config` in `argv` (`--config=F` or `--config F`)."""
  for i, arg in enumerate(argv):
    name, eq, value = arg.partition("=")
    if name in ("--config", "-config"):
      return value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
  return None


def parse(argv: list[str], config: Callable[[], ml_collections.ConfigDict]) -> None:
  """absl flag parsing; a bad flag or `--config.` override is one line on stderr and exit code 2. `config`
  gives the ConfigDict the overrides act on (to name the nearest field of a misspelled one)."""
  try:
    flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    try:
      reason = unknown_override(config(), argv)
    except (OSError, ImportError, SyntaxError, AttributeError, TypeError, ValueError):  # the file itself is bad
      reason = None
    message = str(e).strip()
    if "Traceback (most recent call last)" in message:  # config_flags quotes get_config's traceback: its last line
      message = f"{message.splitlines()[0].rstrip(':')}: {message.splitlines()[-1]}"
    print(f"error: {reason or message}", file=sys.stderr)
    sys.exit(2)
  spec = config_file_arg(argv)
  if spec and not Path(spec.partition(":")[0]).is_file():
    print(f"error: --config: {spec.partition(':')[0]} is not a file", file=sys.stderr)
    sys.exit(2)
  absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax and XLA are chatty at INFO
  logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
  logging.getLogger("nanoemox_jax").setLevel(logging.INFO)


def typed(config: ml_collections.ConfigDict) -> Run | None:
  """The typed run of `config`, or None after one line on stderr naming what is wrong."""
  try:
    return from_config_dict(config)
  except (TypeError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return None


def dry_run(config: ml_collections.ConfigDict) -> int:
  """`train.dry_run` of the typed config: its report on stdout, exit 2 when it found a problem."""
  run = typed(config)
  if run is None:
    return 2
  report, problems = dry_run_lib.dry_run(run)
  print(report, flush=True)
  return 2 if problems else 0


def execute(config: ml_collections.ConfigDict, workdir: str, resume: bool) -> int:
  """Type the config, start the processes, run; exceptions with a user-facing cause become exit codes."""
  run = typed(config)
  if run is None:
    return 2
  dist = run.distributed
  initialize_distributed(dist.coordinator or None, dist.num_processes if dist.coordinator else None,
                         dist.process_id if dist.coordinator else None)
  print(f"jax {jax.__version__}: {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es); workdir {workdir}", flush=True)
  try:
    loop.run(run, workdir, resume)
  except loop.Interrupted as e:
    print(f"\n{e}", file=sys.stderr)
    return 128 + e.signum
  except loop.NonFiniteError as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 3
  except (FileNotFoundError, FileExistsError, ValueError, SourceError, MediaError) as e:
    print(f"\nerror: {e}", file=sys.stderr)
    return 2
  except OSError as e:  # the machine's, not the input's: a full disk (ENOSPC) while saving or exporting
    print(f"\nerror: {e}", file=sys.stderr)
    return 1
  return 0
