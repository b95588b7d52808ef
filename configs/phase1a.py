"""P2E phase 1a (DESIGN.md §2): `--config configs/phase1a.py` (paper) or `configs/phase1a.py:demo`."""

from configs.base import get_phase


def get_config(arg: str | None = None):
  return get_phase("1a", arg)
