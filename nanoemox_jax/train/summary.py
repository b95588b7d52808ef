"""Parameter counts of a Nano-EmoX preset by group and the trainable count of each P2E phase.

    python -m nanoemox_jax.train.summary --preset full

Built with `nnx.eval_shape`: nothing is allocated, so the full 2.3B model is counted on any machine.
"""

from __future__ import annotations

import argparse

from flax import nnx

from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model import nanoemox
from nanoemox_jax.model.nanoemox import NanoEmoX, abstract_model
from nanoemox_jax.checkpoints.params_io import param_count
from nanoemox_jax.train import phases

GROUPS = {  # group name -> top-level attributes of NanoEmoX
    "CLIP ViT tower (frozen)": ("clip",),
    "HuBERT tower (frozen)": ("hubert",),
    "FaceXFormer tower (frozen)": ("face",),
    "Qwen2 LM base (frozen)": ("llm",),
    "audio adapter (positions, Q-Former, projection)": nanoemox.AUDIO_ADAPTER,
    "video adapter (positions, Q-Former, projection)": nanoemox.VIDEO_ADAPTER,
    "face adapter (temporal queries, MLP)": nanoemox.FACE_ADAPTER,
    "fusion encoder": nanoemox.FUSION,
}


WEIGHTS = nnx.Any(nnx.Param, FrozenParam)  # not RNG state or other variables


def count(model: NanoEmoX, *filters: nnx.filterlib.Filter) -> int:
  return param_count(nnx.to_pure_dict(nnx.state(model, nnx.All(*filters))))


def group_counts(model: NanoEmoX) -> dict[str, int]:
  """Scalars per group; LoRA adapters are their own group (they live inside the LM)."""
  counts = {name: count(model, WEIGHTS, nnx.Not(nnx.LoRAParam), lambda path, _, a=attrs: path[0] in a)
            for name, attrs in GROUPS.items()}
  counts["LoRA adapters"] = count(model, nnx.LoRAParam)
  return counts


def phase_counts(model: NanoEmoX) -> dict[str, int]:
  return {p: count(model, phases.trainable(p)) for p in phases.PHASES}


def main(argv: list[str] | None = None) -> None:
  from nanoemox_jax.model.presets import PRESETS, get

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
  args = parser.parse_args(argv)
  model = abstract_model(get(args.preset))
  groups, total = group_counts(model), count(model, WEIGHTS)
  width = max(map(len, groups))
  print(f"Nano-EmoX preset {args.preset!r}")
  for name, n in groups.items():
    print(f"  {name:<{width}}  {n:>15,}")
  print(f"  {'total':<{width}}  {total:>15,}")
  print("trainable per P2E phase:")
  for p, n in phase_counts(model).items():
    print(f"  phase {p:<{width - 6}}  {n:>15,}")


if __name__ == "__main__":
  main()
