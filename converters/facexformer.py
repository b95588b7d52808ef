"""FaceXFormer `model.pt` -> nanoemox_jax Orbax checkpoint of the face encoder (Swin backbone + fusion).

    python -m converters.facexformer --src model.pt --out OUT_DIR [--dtype bfloat16]

The file is read with `torch.load(weights_only=True)`; its `state_dict_backbone` entry is FaceXFormer's
whole state dict: the torchvision Swin under `backbone.0.` (`features`) and `backbone.1.` (final norm),
the fusion `linear_c.*` and `linear_fuse.weight`. The task decoder (`face_decoder.*`, `pe_layer.*`) and
the `relative_position_index` buffers are skipped and counted. The model size is read from the shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from converters.common import (
    ConversionError, Rule, cli, conv_to_hwio, convert, expected_params, read_torch_bin, transpose, write)
from nanoemox_jax.model.face import FaceXFormerConfig, abstract_model
from nanoemox_jax.model.swin import SwinConfig

STATE_DICT = "state_dict_backbone"
IGNORE = (r"face_decoder\..*", r"pe_layer\..*", r"backbone\.0\.\d+\.\d+\.attn\.relative_position_index")


_BLOCK, _LINEAR = r"backbone\.0\.(\d+)\.(\d+)\.", r"(attn\.(?:qkv|proj)|mlp\.[03])"
RULES = (
    Rule(r"backbone\.0\.0\.0\.weight", "backbone.features.0.0.kernel", conv_to_hwio),
    Rule(r"backbone\.0\.0\.0\.bias", "backbone.features.0.0.bias"),
    Rule(r"backbone\.0\.0\.2\.(weight|bias)", r"backbone.features.0.2.\1"),
    Rule(_BLOCK + r"(norm[12])\.(weight|bias)", r"backbone.features.\1.\2.\3.\4"),
    Rule(_BLOCK + _LINEAR + r"\.weight", r"backbone.features.\1.\2.\3.kernel", transpose),
    Rule(_BLOCK + _LINEAR + r"\.bias", r"backbone.features.\1.\2.\3.bias"),
    Rule(_BLOCK + r"attn\.relative_position_bias_table", r"backbone.features.\1.\2.attn.relative_position_bias_table"),
    Rule(r"backbone\.0\.(\d+)\.reduction\.weight", r"backbone.features.\1.reduction.kernel", transpose),
    Rule(r"backbone\.0\.(\d+)\.norm\.(weight|bias)", r"backbone.features.\1.norm.\2"),
    Rule(r"backbone\.1\.(weight|bias)", r"backbone.norm.\1"),
    Rule(r"linear_c\.(\d+)\.proj\.weight", r"linear_c.\1.proj.kernel", transpose),
    Rule(r"linear_c\.(\d+)\.proj\.bias", r"linear_c.\1.proj.bias"),
    Rule(r"linear_fuse\.weight", "linear_fuse.kernel", conv_to_hwio),
)


def read_state_dict(src: Path) -> dict[str, np.ndarray]:
  """The `state_dict_backbone` entry of a FaceXFormer checkpoint as float32 / integer numpy arrays."""
  if not src.is_file():
    raise ConversionError(f"{src}: no such file (expected FaceXFormer's model.pt)")
  top = read_torch_bin(src)
  if not isinstance(top.get(STATE_DICT), Mapping):
    raise ConversionError(f"{src}: no '{STATE_DICT}' state dict in the file (top-level entries: {sorted(top)}); "
                          "expected FaceXFormer's model.pt")
  out = {}
  for key, value in top[STATE_DICT].items():
    if not isinstance(value, np.ndarray):
      raise ConversionError(f"{src}: {STATE_DICT}[{key!r}] is a {type(value).__name__}, not a tensor")
    out[key] = value.astype(np.float32) if value.dtype.kind == "f" or value.dtype == ml_dtypes.bfloat16 else value
  return out


def infer_config(tensors: Mapping[str, np.ndarray], source: str) -> FaceXFormerConfig:
  """Swin sizes from the shapes: patch conv, blocks per stage, bias tables (window, heads), MLP width."""

  def shape(key: str) -> tuple[int, ...]:
    if key not in tensors:
      raise ConversionError(f"{source}: {STATE_DICT} has no {key}, which gives the model size")
    return tuple(tensors[key].shape)

  def indices(pattern: str) -> set[int]:
    return {int(m.group(1)) for k in tensors if (m := re.match(pattern, k))}

  embed_dim, channels, patch, patch_w = shape("backbone.0.0.0.weight")
  rows = shape("backbone.0.1.0.attn.relative_position_bias_table")[0]
  side = math.isqrt(rows)
  if patch != patch_w or side * side != rows or side % 2 == 0:
    raise ConversionError(f"{source}: only square patches and windows are supported (patch {patch}x{patch_w}, "
                          f"{rows} relative positions)")
  n_stages = (max(indices(r"backbone\.0\.(\d+)\.")) + 1) // 2
  depths = [max(indices(rf"backbone\.0\.{2 * i + 1}\.(\d+)\."), default=-1) + 1 for i in range(n_stages)]
  heads = [shape(f"backbone.0.{2 * i + 1}.0.attn.relative_position_bias_table")[1] for i in range(n_stages)]
  try:
    swin = SwinConfig(embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(heads), window_size=(side + 1) // 2,
                      patch_size=patch, mlp_ratio=shape("backbone.0.1.0.mlp.0.weight")[0] / embed_dim,
                      num_channels=channels)
  except ValueError as e:
    raise ConversionError(f"{source}: {e}") from None
  return FaceXFormerConfig(swin=swin, decoder_hidden_size=shape("linear_c.0.proj.weight")[0])


def convert_facexformer(src: str | Path, out: str | Path, dtype: Any = np.float32) -> Path:
  src = Path(src)
  tensors = read_state_dict(src)
  cfg = infer_config(tensors, str(src))
  expected = expected_params(abstract_model(cfg))
  params, report = convert(tensors, RULES, expected, source=str(src), ignore=IGNORE, dtype=dtype)
  return write(out, params, cfg.to_dict(), report, str(src))


if __name__ == "__main__":
  cli(__doc__, convert_facexformer)
