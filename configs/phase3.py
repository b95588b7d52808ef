"""P2E phase 3 (DESIGN.md §2): `--config configs/phase3.py` (paper) or `configs/phase3.py:demo`."""

from configs.base import get_phase


def get_config(arg: str | None = None):
  return get_phase("3", arg)
