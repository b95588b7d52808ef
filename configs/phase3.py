"""P2E phase 3 alone: `--config configs/phase3.py[:PRESET]` (see `nanoemox_jax.train.config.PAPER`)."""

import ml_collections

from nanoemox_jax.train.config import paper, to_config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return to_config_dict(paper(("3",), preset=arg or "full"))
