"""P2E phase 1a alone: `--config configs/phase1a.py[:PRESET]` (see `nanoemox_jax.train.config.PAPER`)."""

import ml_collections

from nanoemox_jax.train.config import paper, to_config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return to_config_dict(paper(("1a",), preset=arg or "full"))
