"""HF Qwen2 / Qwen2.5 checkpoint -> nanoemox_jax Orbax checkpoint.

    python -m converters.qwen2 --src HF_DIR --out OUT_DIR [--dtype bfloat16]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.common import Rule, cli, convert, expected_params, read_checkpoint, read_hf_config, transpose, write
from nanoemox_jax.model.qwen2 import Qwen2Config, abstract_model

_LAYER = r"model\.layers\.(\d+)\."
RULES = (
    Rule(r"model\.embed_tokens\.weight", "model.embed_tokens.embedding"),
    Rule(_LAYER + r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight", r"model.layers.\1.\2.kernel", transpose),
    Rule(_LAYER + r"self_attn\.([qkv])_proj\.bias", r"model.layers.\1.self_attn.\2_proj.bias"),
    Rule(_LAYER + r"(input_layernorm|post_attention_layernorm)\.weight", r"model.layers.\1.\2.weight"),
    Rule(r"model\.norm\.weight", "model.norm.weight"),
    Rule(r"lm_head\.weight", "lm_head.kernel", transpose),
)


def convert_qwen2(src: str | Path, out: str | Path, dtype: Any = np.float32) -> Path:
  src = Path(src)
  cfg = read_hf_config(src, Qwen2Config.from_hf)
  expected = expected_params(abstract_model(cfg))
  # A tied checkpoint may still carry lm_head.weight (a copy of the embedding): skipped and counted.
  ignore = [r"lm_head\.weight"] if cfg.tie_word_embeddings else []
  params, report = convert(read_checkpoint(src), RULES, expected, source=str(src), ignore=ignore, dtype=dtype)
  return write(out, params, cfg.to_hf(), report, str(src))


if __name__ == "__main__":
  cli(__doc__, convert_qwen2)
