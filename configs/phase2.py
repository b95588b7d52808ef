"""P2E phase 2 (DESIGN.md §2): `--config configs/phase2.py` (paper) or `configs/phase2.py:demo`."""

from configs.base import get_phase


def get_config(arg: str | None = None):
  return get_phase("2", arg)
