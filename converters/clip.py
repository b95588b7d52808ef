"""HF CLIP checkpoint (vision tower) -> nanoemox_jax Orbax checkpoint.

    python -m converters.clip --src HF_DIR_OR_FILE --out OUT_DIR [--dtype bfloat16]

Takes a full `CLIPModel` (its `vision_model.*` keys; the text tower, `text_projection`,
`visual_projection` and `logit_scale` are skipped and counted) or a bare `CLIPVisionModel`, whose keys
carry the `vision_model.` prefix up to transformers 4.x and none from 5.x on. Buffers such as
`position_ids` are skipped and counted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    Rule, cli, conv_to_hwio, convert, expected_params, read_checkpoint, read_hf_config, transpose, write)
from nanoemox_jax.model.clip_vision import CLIPVisionConfig, abstract_model

PREFIX = "vision_model."
IGNORE = (r"text_model\..*", r"text_projection\.weight", r"visual_projection\.weight", r"logit_scale",
          r"(?:vision_model\.)?embeddings\.position_ids")


def rules(prefix: str) -> tuple[Rule, ...]:
  """The rename table for source keys that start with `prefix` ('vision_model.' or '')."""
  p = re.escape(prefix)
  layer, linear = p + r"encoder\.layers\.(\d+)\.", r"(self_attn\.(?:[qkv]|out)_proj|mlp\.fc[12])"
  to = PREFIX  # our paths always carry it
  return (
      Rule(p + r"embeddings\.class_embedding", to + "embeddings.class_embedding"),
      Rule(p + r"embeddings\.patch_embedding\.weight", to + "embeddings.patch_embedding.kernel", conv_to_hwio),
      Rule(p + r"embeddings\.position_embedding\.weight", to + "embeddings.position_embedding.embedding"),
      Rule(p + r"(pre_layrnorm|post_layernorm)\.(weight|bias)", to + r"\1.\2"),
      Rule(layer + linear + r"\.weight", to + r"encoder.layers.\1.\2.kernel", transpose),
      Rule(layer + linear + r"\.bias", to + r"encoder.layers.\1.\2.bias"),
      Rule(layer + r"(layer_norm[12])\.(weight|bias)", to + r"encoder.layers.\1.\2.\3"),
  )


def convert_clip(src: str | Path, out: str | Path, dtype: Any = np.float32) -> Path:
  src = Path(src)
  cfg = read_hf_config(src, CLIPVisionConfig.from_hf)
  expected = expected_params(abstract_model(cfg))
  tensors = read_checkpoint(src)
  prefix = PREFIX if any(k.startswith(PREFIX) for k in tensors) else ""
  params, report = convert(tensors, rules(prefix), expected, source=str(src), ignore=IGNORE, dtype=dtype)
  return write(out, params, cfg.to_hf(), report, str(src))


if __name__ == "__main__":
  cli(__doc__, convert_clip)
