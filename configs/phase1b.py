"""P2E phase 1b alone: `--config configs/phase1b.py[:PRESET]` (see `nanoemox_jax.train.config.PAPER`)."""

import ml_collections

from nanoemox_jax.train.config import paper, to_config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return to_config_dict(paper(("1b",), preset=arg or "full"))
