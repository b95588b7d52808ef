"""The whole curriculum: `--config configs/p2e.py` (paper) or `configs/p2e.py:demo`, run by
`python -m nanoemox_jax.train`. `--config.strategy=` picks the order (DESIGN.md §2):

  p2e      1a, 1b, 2 (from 1a + 1b), 3 (from 2)      the paper's Progressive Expertise curriculum
  joint    one phase: every task at once (Jo-T), adapters + fusion + LoRA
  reverse  3, 2, 1b, 1a, each from the one before    the ablation of the order

Each phase's settings live under `phases.<folder name>` (`--config.phases.phase3.optim.steps=...`).
"""

import ml_collections

from configs.base import get_phase


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.strategy = "p2e"
  c.baseline = True  # score the starting model on every phase's held-out sets first (the table's first rows)
  c.phases = {}
  for name in ("1a", "1b", "2", "3", "joint"):
    phase = get_phase(name, arg)
    c.phases[phase.name] = phase
  return c
