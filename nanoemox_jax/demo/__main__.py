"""python -m nanoemox_jax.demo [--workdir demo_out] [--per_class 12] [--lm_steps 200] [--config.x=y ...]

The README's main command: writes the synthetic corpus and the stand-in parts into --workdir (once; see
`demo.parts`), then trains the whole P2E curriculum on them through the ordinary training entry point
(`train.cli.execute`) with the demo's config (`demo.config`), resuming whatever an earlier run left.
Every field of that config is a `--config.` flag, as for `python -m nanoemox_jax.train`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.demo import config, corpus, parts
from nanoemox_jax.train import cli
from nanoemox_jax.train.config import from_config_dict, to_config_dict

_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "output folder: corpus, parts, phases, results")
_PER_CLASS = flags.DEFINE_integer("per_class", corpus.DEFAULT_PER_CLASS, "training items per label in the corpus")
_LM_STEPS = flags.DEFINE_integer("lm_steps", 200, "updates of the stand-in language model's pretraining")
_CONFIG = config_flags.DEFINE_config_dict("config", to_config_dict(config.demo_run()),
                                          "the demo's training config (empty paths: under --workdir)")


def main(argv: list[str]) -> int:
  cli.parse(argv, lambda: to_config_dict(config.demo_run()))
  workdir, c = _WORKDIR.value, _CONFIG.value
  under_workdir = config.demo_paths(workdir)
  c.paths.parts = c.paths.parts or under_workdir.parts
  c.paths.data = c.paths.data or under_workdir.data
  seed = c.phases.phase1a.seed
  manifests = parts.ensure_corpus(Path(workdir) / config.CORPUS, seed=seed, per_class=_PER_CLASS.value)
  tokenizer = Tokenizer(from_config_dict(c).paths.tokenizer_folder())
  parts.ensure_model(c.paths.parts, "demo", tokenizer, manifests.parent, lm_steps=_LM_STEPS.value, seed=seed)
  return cli.execute(c, workdir, resume=True)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
