"""HF HuBERT checkpoint (`HubertModel`, or `HubertForCTC` etc. with a `hubert.` prefix) -> nanoemox_jax.

    python -m converters.hubert --src HF_DIR_OR_FILE --out OUT_DIR [--dtype bfloat16]

The positional conv keeps its weight norm: `weight_g`/`weight_v` (torch < 2.1) or
`parametrizations.weight.original0`/`original1` become `conv.weight_g` [K] and `conv.weight_v`
[K, in/groups, out]. Task heads are skipped and counted in conversion.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.common import (
    Rule, cli, convert, expected_params, read_checkpoint, read_hf_config, transpose, write)
from nanoemox_jax.model.hubert import HubertConfig, abstract_model

_P = r"(?:hubert\.)?"  # HubertForCTC / HubertForSequenceClassification keep the model under `hubert.`
_LAYER = _P + r"encoder\.layers\.(\d+)\."
_CONV = _P + r"(feature_extractor\.conv_layers\.\d+)\.conv\."
_POS = _P + r"encoder\.pos_conv_embed\.conv\."


def conv_kernel(x: np.ndarray) -> np.ndarray:  # torch Conv1d weight [out, in/groups, K] -> kernel [K, in/groups, out]
  return x.transpose(2, 1, 0)


def weight_norm_gain(x: np.ndarray) -> np.ndarray:  # torch weight_norm(dim=2) g [1, 1, K] -> [K]
  return x.reshape(-1) if x.ndim == 3 and x.shape[:2] == (1, 1) else x


RULES = (
    Rule(_CONV + r"weight", r"\1.conv.kernel", conv_kernel),
    Rule(_CONV + r"bias", r"\1.conv.bias"),
    Rule(_POS + r"(?:weight_g|parametrizations\.weight\.original0)", "encoder.pos_conv_embed.conv.weight_g",
         weight_norm_gain),
    Rule(_POS + r"(?:weight_v|parametrizations\.weight\.original1)", "encoder.pos_conv_embed.conv.weight_v",
         conv_kernel),
    Rule(_POS + r"bias", "encoder.pos_conv_embed.conv.bias"),
    Rule(_P + r"masked_spec_embed", "masked_spec_embed"),
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
IGNORE = (r"lm_head\.(weight|bias)", r"(projector|classifier)\.(weight|bias)",
          r"layer_weights")
def convert_hubert(src: str | Path, out: str | Path, dtype: Any = np.float32) -> Path:
  src = Path(src)
  cfg = read_hf_config(src, HubertConfig.from_hf)
  expected = expected_params(abstract_model(cfg))
  tensors = read_checkpoint(src)
  params, report = convert(tensors, RULES, expected, source=str(src), ignore=IGNORE, dtype=dtype)
  return write(out, params, cfg.to_hf(), report, str(src))


if __name__ == "__main__":
  cli(__doc__, convert_hubert)
