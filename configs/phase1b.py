"""P2E phase 1b (DESIGN.md §2): `--config configs/phase1b.py` (paper) or `configs/phase1b.py:demo`."""

from configs.base import get_phase


def get_config(arg: str | None = None):
  return get_phase("1b", arg)
