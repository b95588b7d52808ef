"""HF HuBERT checkpoint (`HubertModel`, or `HubertForCTC` etc. with a `hubert.` prefix) -> nanoemox_jax.

    python -m converters.hubert --src HF_DIR_OR_FILE --out OUT_DIR [--dtype bfloat16]

The positional conv's weight norm (`weight_g`/`weight_v`, or torch's newer
`parametrizations.weight.original0`/`original1`) is folded into one effective weight. Task heads and
`masked_spec_embed` (training-time masking only) are skipped and counted in conversion.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    ConversionError, Rule, cli, convert, expected_params, read_checkpoint, read_hf_config, transpose, write)
from nanoemox_jax.model.hubert import HubertConfig, abstract_model

_P = r"(?:hubert\.)?"  # HubertForCTC / HubertForSequenceClassification keep the model under `hubert.`
_LAYER = _P + r"encoder\.layers\.(\d+)\."
_CONV = _P + r"(feature_extractor\.conv_layers\.\d+|encoder\.pos_conv_embed)\.conv\."


def conv_kernel(x: np.ndarray) -> np.ndarray:  # torch Conv1d weight [out, in/groups, K] -> kernel [K, in/groups, out]
  return x.transpose(2, 1, 0)


RULES = (
    Rule(_CONV + r"weight", r"\1.conv.kernel", conv_kernel),
    Rule(_CONV + r"bias", r"\1.conv.bias"),
    Rule(_P + r"(feature_extractor\.conv_layers\.\d+\.layer_norm|feature_projection\.layer_norm|encoder\.layer_norm)"
         r"\.(weight|bias)", r"\1.\2"),
    Rule(_P + r"feature_projection\.projection\.weight", "feature_projection.projection.kernel", transpose),
    Rule(_P + r"feature_projection\.projection\.bias", "feature_projection.projection.bias"),
    Rule(_LAYER + r"(attention\.(?:[qkv]|out)_proj|feed_forward\.(?:intermediate|output)_dense)\.weight",
         r"encoder.layers.\1.\2.kernel", transpose),
    Rule(_LAYER + r"(attention\.(?:[qkv]|out)_proj|feed_forward\.(?:intermediate|output)_dense)\.bias",
         r"encoder.layers.\1.\2.bias"),
    Rule(_LAYER + r"(layer_norm|final_layer_norm)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
)
# Skipped and counted: SpecAugment's mask vector and the heads of HubertForCTC / HubertForSequenceClassification.
IGNORE = (_P + r"masked_spec_embed", r"lm_head\.(weight|bias)", r"(projector|classifier)\.(weight|bias)",
          r"layer_weights")
_WEIGHT_NORM_PAIRS = (("weight_g", "weight_v"),
                      ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
  """torch `weight_norm(conv, dim=2)`: w = v * (g / ||v||), the norm over every axis but 2 (the kernel taps)."""
  g, v = np.asarray(g, np.float32), np.asarray(v, np.float32)
  return v * (g / np.sqrt(np.sum(v * v, axis=(0, 1), keepdims=True)))


def fold_weight_norm(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Replace each complete (g, v) pair of the positional conv by its effective `...conv.weight`.

  A lone half of a pair is left in place, so `convert` names it as unexpected.
  """
  out = dict(tensors)
  for key in tensors:
    for g_name, v_name in _WEIGHT_NORM_PAIRS:
      base = key.removesuffix(g_name)
      if base != key and base.endswith("pos_conv_embed.conv.") and base + v_name in out:
        if base + "weight" in out:
          raise ConversionError(f"{base}weight is stored twice: plain and as a weight-norm pair {key}")
        out[base + "weight"] = weight_norm(out.pop(key), out.pop(base + v_name))
  return out


def convert_hubert(src: str | Path, out: str | Path, dtype: Any = np.float32) -> Path:
  src = Path(src)
  cfg = read_hf_config(src, HubertConfig.from_hf)
  expected = expected_params(abstract_model(cfg))
  tensors = fold_weight_norm(read_checkpoint(src))
  params, report = convert(tensors, RULES, expected, source=str(src), ignore=IGNORE, dtype=dtype)
  return write(out, params, cfg.to_hf(), report, str(src))


if __name__ == "__main__":
  cli(__doc__, convert_hubert)
