"""FaceXFormer face encoder (frozen in Nano-EmoX): Swin-B stages fused at stage-1 resolution, then pooled.

Corresponds to the encoder half of FaceXFormer (`backbone`, `linear_c`, `linear_fuse`); the task
decoder is not part of it. Parameter paths mirror FaceXFormer's state dict, with torchvision's
`nn.Sequential` indices named: `backbone.0.*` -> `backbone.features.*`, `backbone.1.*` ->
`backbone.norm.*`; `linear_c.2.proj.kernel` is the transpose of `linear_c.2.proj.weight`;
`linear_fuse.kernel` is the 1x1 conv stored [1, 1, in, out].
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import DType, Linear
from nanoemox_jax.model.swin import SwinConfig, SwinTransformer

MODEL_TYPE = "facexformer_encoder"


@dataclasses.dataclass(frozen=True)
class FaceXFormerConfig:
  """The Swin backbone and the fusion width. Defaults: FaceXFormer (Swin-B, 256)."""

  swin: SwinConfig = dataclasses.field(default_factory=SwinConfig)
  decoder_hidden_size: int = 256

  def to_dict(self) -> dict[str, Any]:
    return {"model_type": MODEL_TYPE, "swin": self.swin.to_dict(), "decoder_hidden_size": self.decoder_hidden_size}

  @classmethod
  def from_dict(cls, d: dict[str, Any], source: str = "config") -> FaceXFormerConfig:
    if d.get("model_type") != MODEL_TYPE:
      raise ValueError(f"{source}: model_type {d.get('model_type')!r} is not {MODEL_TYPE!r}")
    if "swin" not in d or "decoder_hidden_size" not in d:
      raise ValueError(f"{source}: needs the fields 'swin' and 'decoder_hidden_size'")
    return cls(swin=SwinConfig.from_dict(d["swin"], source), decoder_hidden_size=d["decoder_hidden_size"])


class FaceFeatures(NamedTuple):
  """stages: the Swin stage outputs, each [B, H_i, W_i, C_i]; pooled: [B, decoder_hidden_size] face vectors."""

  stages: tuple[jax.Array, ...]
  pooled: jax.Array


class FaceXFormerMLP(nnx.Module):
  """Per-token Linear C_i -> 256. Corresponds to FaceXFormer's `FaceXFormerMLP`."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.proj = Linear(in_features, out_features, use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C_i] -> [B, H, W, 256]
    return self.proj(x)


class FaceXFormerEncoder(nnx.Module):
  """Corresponds to Nano-EmoX's `FaceXFormerEncoderOnly` (FaceXFormer's backbone and multi-scale fusion,
  then global average pooling). Deterministic: no stochastic depth at inference."""

  def __init__(self, cfg: FaceXFormerConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    hidden, n = cfg.decoder_hidden_size, len(cfg.swin.depths)
    self.backbone = SwinTransformer(cfg.swin, **kw)
    self.linear_c = nnx.List([FaceXFormerMLP(dim, hidden, **kw) for dim in cfg.swin.dims])
    self.linear_fuse = nnx.Conv(n * hidden, hidden, kernel_size=(1, 1), use_bias=False, **kw)
    self.config, self.dtype = cfg, dtype

  def __call__(self, pixel_values: jax.Array) -> FaceFeatures:
    """pixel_values [B, 3, H, W] (224x224 face crops for FaceXFormer's weights).

    Each stage goes through its `linear_c`, is upsampled bilinearly (align_corners=False) to the
    stage-1 resolution, the maps are concatenated deepest stage first and fused by the 1x1 conv
    (nothing in between); the fused map [B, H/4, W/4, 256] is averaged over space.
    """
    stages = self.backbone(pixel_values)
    b, h, w, _ = stages[0].shape
    maps = []
    for x, mlp in zip(stages, self.linear_c):
      x = mlp(x)  # [B, H_i, W_i, 256]
      maps.append(jax.image.resize(x, (b, h, w, x.shape[-1]), method="bilinear", antialias=False))
    fused = self.linear_fuse(jnp.concatenate(maps[::-1], axis=-1))  # [B, H/4, W/4, 256]
    pooled = jnp.mean(fused.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    return FaceFeatures(stages, pooled)


def abstract_model(cfg: FaceXFormerConfig, dtype: DType = jnp.float32,
                   param_dtype: DType = jnp.float32) -> FaceXFormerEncoder:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: FaceXFormerEncoder(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
