"""The whole curriculum: `--config configs/p2e.py[:PRESET]`, run by `python -m nanoemox_jax.train`.
`--config.strategy=` picks the order (DESIGN.md §2):

  p2e      1a, 1b, 2 (from 1a + 1b), 3 (from 2)      the paper's Perception-to-Empathy curriculum
  joint    one phase: every task at once (Jo-T), adapters + fusion + LoRA
  reverse  3, 2, 1b, 1a, each from the one before    the ablation of the order

Paths are given once (`--config.paths.parts=... --config.paths.data=...`); each phase's settings live
under `phases.<name>` (`--config.phases.phase3.optim.steps=...`). PRESET: a `model.presets` name.
"""

import ml_collections

from nanoemox_jax.train.config import paper, to_config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return to_config_dict(paper(("1a", "1b", "2", "3", "joint"), preset=arg or "full", strategy="p2e"))
