"""What each P2E phase trains (DESIGN.md §2), as NNX filters over the Nano-EmoX parameter tree.

1a speech alignment: the audio adapter. 1b vision + face alignment: the video and face adapters.
2 fusion pre-training: every adapter + the fusion encoder. 3 multitask tuning: 2 + LoRA.
Tower and LM base weights are `FrozenParam` and never match.
"""

from __future__ import annotations

from flax import nnx

AUDIO_ADAPTER = ("audio_position_embedding", "audio_qformer", "audio_proj")
VIDEO_ADAPTER = ("frame_position_embedding", "video_qformer", "video_proj")
FACE_ADAPTER = ("face_temporal",)
FUSION = ("fusion",)
PHASES = ("1a", "1b", "2", "3")
# Curriculum strategy -> phase order (configs/p2e.py); "joint" trains phase 3's parameters on every task at once.
# Keys are the phases' folder names (`configs/p2e.py` `phases.<key>`).
STRATEGIES = {"p2e": ("phase1a", "phase1b", "phase2", "phase3"), "joint": ("joint",),
              "reverse": ("phase3", "phase2", "phase1b", "phase1a")}
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
