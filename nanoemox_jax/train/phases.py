"""What each P2E phase trains (DESIGN.md §2), as NNX filters over the Nano-EmoX parameter tree.

1a speech alignment: the audio adapter. 1b vision + face alignment: the video and face adapters.
2 fusion pre-training: every adapter + the fusion encoder. 3 multitask tuning: 2 + LoRA.
Tower and LM base weights are `FrozenParam` and never match.
"""

from __future__ import annotations

from flax import nnx

from nanoemox_jax.model.nanoemox import AUDIO_ADAPTER, FACE_ADAPTER, FUSION, VIDEO_ADAPTER

PHASES = ("1a", "1b", "2", "3")
_MODULES = {"1a": AUDIO_ADAPTER, "1b": VIDEO_ADAPTER + FACE_ADAPTER,
            "2": AUDIO_ADAPTER + VIDEO_ADAPTER + FACE_ADAPTER + FUSION,
            "3": AUDIO_ADAPTER + VIDEO_ADAPTER + FACE_ADAPTER + FUSION}


def trainable(phase: str) -> nnx.filterlib.Filter:
  """Filter of the parameters phase `phase` updates (LoRA adapters only in phase 3)."""
  if phase not in _MODULES:
    raise ValueError(f"unknown P2E phase {phase!r}; choose one of {PHASES}")
  modules = _MODULES[phase]

  def selected(path: tuple, value: object) -> bool:
    if isinstance(value, nnx.LoRAParam):
      return phase == "3"
    return isinstance(value, nnx.Param) and bool(path) and path[0] in modules

  return selected
