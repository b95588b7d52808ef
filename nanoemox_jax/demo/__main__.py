"""python -m nanoemox_jax.demo [--workdir demo_out] [--seed 0] [--per_class 12] [--lm_steps 200] [--config.x=y ...]

The README's main command: writes the synthetic corpus and the stand-in parts into --workdir (once; see
`demo.parts`), then trains the whole P2E curriculum on them through the ordinary training entry point
(`train.cli.execute`) with the demo's config (`demo.config`), resuming whatever an earlier run left. Each phase
scores the validation split; then each phase's exported model is scored on the test split, once
(`--workdir/held_out_test.json`, printed as a table). Every field of that config is a `--config.` flag, as for
`python -m nanoemox_jax.train`. `--seed` draws everything anew: corpus media and texts, towers, the stand-in LM
and every phase's initialisation and data order (without it: phase 1a's seed, 0 by default).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

from nanoemox_jax.checkpoints import parts as model_parts
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.demo import config, corpus, parts
from nanoemox_jax.model import fields
from nanoemox_jax.train import cli, loop
from nanoemox_jax.train.config import Run, from_config_dict, to_config_dict
from nanoemox_jax.train.telemetry import format_table

_WORKDIR = flags.DEFINE_string("workdir", "demo_out", "output folder: corpus, parts, phases, results")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the corpus, the parts and every phase (overrides the phases' "
                             "--config.phases.*.seed); without it, phase 1a's seed draws corpus and parts")
_PER_CLASS = flags.DEFINE_integer("per_class", corpus.DEFAULT_PER_CLASS, "training items per label in the corpus")
_LM_STEPS = flags.DEFINE_integer("lm_steps", 200, "updates of the stand-in language model's pretraining")
_CONFIG = config_flags.DEFINE_config_dict("config", to_config_dict(config.demo_run()),
                                          "the demo's training config (empty paths: under --workdir)")


def score_test(run: Run, workdir: Path) -> dict[str, dict[str, Any]]:
  """phase -> `loop.evaluate` of its exported model (`workdir/<phase>/model`) on its held-out sets' test split;
  kept in `workdir/held_out_test.json` (read back when there)."""
  path = workdir / config.TEST_SCORES
  if path.exists():
    return json.loads(path.read_text())
  tokenizer, out = Tokenizer(run.paths.tokenizer_folder()), {}
  for name in run.order:
    phase = run.phases[name]
    test_phase = fields.replace(phase, {"data": {"eval_split": config.TEST_SPLIT}})
    sets = loop.held_out_sets(dataclasses.replace(run, phases=run.phases | {name: test_phase}), (name,))
    if not phase.evaluate or not sets:
      continue
    model = model_parts.load(workdir / name / "model", config=run.model, seed=phase.seed,
                             dtype=loop.DTYPES[run.precision.compute_dtype],
                             tower_dtype=loop.DTYPES[run.precision.tower_dtype])
    out[name] = loop.evaluate(model, tokenizer, sets, phase.eval_batch_size, phase.eval_max_new_tokens)
  path.write_text(json.dumps(out, indent=2))
  return out


def main(argv: list[str]) -> int:
  cli.parse(argv, lambda: to_config_dict(config.demo_run()))
  workdir, c = Path(_WORKDIR.value), _CONFIG.value
  if flags.FLAGS["seed"].present:
    for name in c.phases:
      c.phases[name].seed = _SEED.value
  under_workdir = config.demo_paths(workdir)
  c.paths.parts = c.paths.parts or under_workdir.parts
  c.paths.data = c.paths.data or under_workdir.data
  seed = c.phases.phase1a.seed
  try:
    manifests = parts.ensure_corpus(workdir / config.CORPUS, seed=seed, per_class=_PER_CLASS.value)
    tokenizer = Tokenizer(from_config_dict(c).paths.tokenizer_folder())
    parts.ensure_model(c.paths.parts, "demo", tokenizer, manifests.parent, lm_steps=_LM_STEPS.value, seed=seed)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  code = cli.execute(c, str(workdir), resume=True)
  if code:
    return code
  run = from_config_dict(c)
  scores = score_test(run, workdir.absolute())
  rows = [(name, held_out, s["task"], s["n"], s["accuracy"], s["chance"], s["accuracy"] / s["chance"])
          for name, sets in scores.items() for held_out, s in sets.items()]
  print(f"\n== held-out test split (settings chosen on {config.EVAL_SPLIT}; seed {seed})")
  print(format_table(("model after", "held-out set", "task", "n", "accuracy", "chance", "x chance"), rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
