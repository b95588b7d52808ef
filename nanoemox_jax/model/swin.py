"""Swin Transformer v1 in Flax NNX. Corresponds to torchvision `SwinTransformer` (`torchvision.models.swin_b`).

Parameter paths mirror torchvision's state dict: `features.1.0.attn.qkv.kernel` is the transpose of
`features.1.0.attn.qkv.weight`; the patch conv kernel `features.0.0.kernel` is stored [p, p, C, D]
(torch's [D, C, p, p] transposed). `features` alternates stages (odd indices, lists of blocks) and
patch merging (even indices >= 2), as in torchvision. Slots of torchvision's `nn.Sequential`s that hold
no weights (Permute, GELU, Dropout) are `None`. The relative position index is computed, not stored.
Inference is deterministic: torchvision's stochastic depth and dropouts are not modelled.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanoemox_jax.model.layers import DType, LayerNorm, Linear, multi_head_attention

_MASKED = -100.0  # what torchvision adds to scores across shifted-window region borders


@dataclasses.dataclass(frozen=True)
class SwinConfig:
  """The arguments of torchvision `SwinTransformer` the network uses (square patches and windows).

  Defaults: `swin_b` (patch 4, window 7, dims 128-256-512-1024, depths 2-2-18-2).
  """

  embed_dim: int = 128
  depths: tuple[int, ...] = (2, 2, 18, 2)
  num_heads: tuple[int, ...] = (4, 8, 16, 32)
  window_size: int = 7
  patch_size: int = 4
  mlp_ratio: float = 4.0
  num_channels: int = 3
  layer_norm_eps: float = 1e-5

  def __post_init__(self):
    object.__setattr__(self, "depths", tuple(self.depths))
    object.__setattr__(self, "num_heads", tuple(self.num_heads))
    if len(self.depths) != len(self.num_heads):
      raise ValueError(f"SwinConfig: depths {self.depths} and num_heads {self.num_heads} differ in length")
    for dim, heads in zip(self.dims, self.num_heads):
      if dim % heads:
        raise ValueError(f"SwinConfig: stage width {dim} is not a multiple of its num_heads={heads}")

  @property
  def dims(self) -> tuple[int, ...]:
    """Channels of each stage output: embed_dim * 2**i."""
    return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any], source: str = "config") -> SwinConfig:
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f"{source}: unknown Swin field(s) {unknown}")
    try:
      return cls(**d)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{source}: {e}") from None


@functools.cache
def relative_position_index(window: int) -> np.ndarray:
  """[N, N] index into the bias table for every (query, key) pair of a window (N = window**2)."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)  # [2, N]
  rel = coords[:, :, None] - coords[:, None, :] + window - 1  # [2, N, N], each in [0, 2 * window - 2]
  return rel[0] * (2 * window - 1) + rel[1]


@functools.cache
def shifted_window_mask(height: int, width: int, window: int, shift: tuple[int, int]) -> np.ndarray:
  """Additive mask [nW, N, N] for a padded [height, width] map rolled by -shift (torchvision's `attn_mask`).

  Tokens of one window that came from different regions of the unrolled map do not attend to each other.
  """

  def regions(size: int, s: int) -> np.ndarray:  # [size] region id of each row (or column)
    pos = np.arange(size)
    return np.zeros(size, np.int64) if s == 0 else (pos >= size - window).astype(np.int64) + (pos >= size - s)

  label = regions(height, shift[0])[:, None] * 3 + regions(width, shift[1])[None, :]  # [H, W]
  label = label.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
  label = label.reshape(-1, window * window)  # [nW, N]
  return np.where(label[:, :, None] == label[:, None, :], 0.0, _MASKED).astype(np.float32)


def window_partition(x: jax.Array, window: int) -> jax.Array:  # [B, H, W, C] -> [B, nW, N, C]
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, -1, window * window, c)


def window_merge(x: jax.Array, window: int, height: int, width: int) -> jax.Array:  # [B, nW, N, C] -> [B, H, W, C]
  b, c = x.shape[0], x.shape[-1]
  x = x.reshape(b, height // window, width // window, window, window, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, height, width, c)


class ShiftedWindowAttention(nnx.Module):
  """(Shifted) window multi-head self-attention with a relative position bias. Corresponds to torchvision
  `ShiftedWindowAttention` (v1).

  Like torchvision, the map is zero-padded on the bottom/right to a multiple of the window (padded
  tokens are attended to, unmasked) and an axis is not shifted when the window covers it.
  """

  def __init__(self, dim: int, num_heads: int, window: int, shift: int, *, rngs: nnx.Rngs, dtype: DType,
               param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.qkv = Linear(dim, 3 * dim, **kw)
    self.proj = Linear(dim, dim, **kw)
    self.relative_position_bias_table = nnx.Param(
        0.02 * jax.random.truncated_normal(rngs.params(), -2.0, 2.0, ((2 * window - 1) ** 2, num_heads), param_dtype))
    self.num_heads, self.window, self.shift, self.dtype = num_heads, window, shift, dtype
    self.attention_implementation = "xla"  # model-wide: `NanoEmoX` sets every attention core's

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, H, W, C]
    b, h, w, c = x.shape
    ws, heads = self.window, self.num_heads
    x = jnp.pad(x, ((0, 0), (0, -h % ws), (0, -w % ws), (0, 0)))
    hp, wp = x.shape[1:3]
    shift = (self.shift if ws < hp else 0, self.shift if ws < wp else 0)
    if any(shift):
      x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    windows = window_partition(x, ws)  # [B, nW, N, C]
    nw, n = windows.shape[1:3]
    qkv = self.qkv(windows).reshape(b, nw, n, 3, heads, c // heads)  # [B, nW, N, 3, heads, hd]
    q, k, v = (qkv[:, :, :, i].reshape(b * nw, n, heads, c // heads) for i in range(3))  # [B*nW, N, heads, hd]
    bias = self.relative_position_bias_table[...].astype(jnp.float32)[relative_position_index(ws)].transpose(2, 0, 1)
    bias = bias[None]  # [1, heads, N, N]
    if any(shift):
      bias = bias + shifted_window_mask(hp, wp, ws, shift)[:, None]  # + [nW, 1, N, N]
      bias = jnp.broadcast_to(bias[None], (b,) + bias.shape).reshape(b * nw, heads, n, n)
    out = multi_head_attention(q, k, v.astype(q.dtype), bias=bias, implementation=self.attention_implementation)
    out = out.reshape(b, nw, n, c)
    x = window_merge(self.proj(out), ws, hp, wp)
    if any(shift):
      x = jnp.roll(x, shift, axis=(1, 2))
    return x[:, :h, :w]


class SwinTransformerBlock(nnx.Module):
  """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)) with an erf-GELU MLP. Corresponds to
  torchvision `SwinTransformerBlock` (`mlp.0` and `mlp.3` are the Linears of its `MLP` Sequential)."""

  def __init__(self, cfg: SwinConfig, dim: int, num_heads: int, shift: int, *, rngs: nnx.Rngs, dtype: DType,
               param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    hidden = int(dim * cfg.mlp_ratio)
    self.norm1 = LayerNorm(dim, eps=cfg.layer_norm_eps, **kw)
    self.attn = ShiftedWindowAttention(dim, num_heads, cfg.window_size, shift, rngs=rngs, **kw)
    self.norm2 = LayerNorm(dim, eps=cfg.layer_norm_eps, **kw)
    self.mlp = nnx.List([Linear(dim, hidden, use_bias=True, rngs=rngs, **kw), None, None,
                         Linear(hidden, dim, use_bias=True, rngs=rngs, **kw)])

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C]
    x = x + self.attn(self.norm1(x))
    fc1, fc2 = self.mlp[0], self.mlp[3]
    return x + fc2(jax.nn.gelu(fc1(self.norm2(x)), approximate=False))


class PatchMerging(nnx.Module):
  """2x2 neighbours concatenated (odd sizes zero-padded), LayerNorm, Linear 4C -> 2C without bias.
  Corresponds to torchvision `PatchMerging`."""

  def __init__(self, dim: int, *, eps: float, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.reduction = Linear(4 * dim, 2 * dim, use_bias=False, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.norm = LayerNorm(4 * dim, eps=eps, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
    return self.reduction(self.norm(x))


class SwinTransformer(nnx.Module):
  """Corresponds to torchvision `SwinTransformer` without its classification `head`."""

  def __init__(self, cfg: SwinConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    p, eps = cfg.patch_size, cfg.layer_norm_eps
    patch_embed = nnx.Conv(cfg.num_channels, cfg.embed_dim, kernel_size=(p, p), strides=(p, p), padding="VALID",
                           use_bias=True, rngs=rngs, **kw)
    features: list[Any] = [nnx.List([patch_embed, None, LayerNorm(cfg.embed_dim, eps=eps, **kw)])]
    for i, (dim, depth, heads) in enumerate(zip(cfg.dims, cfg.depths, cfg.num_heads)):
      if i:
        features.append(PatchMerging(cfg.dims[i - 1], eps=eps, rngs=rngs, **kw))
      features.append(nnx.List([
          SwinTransformerBlock(cfg, dim, heads, 0 if j % 2 == 0 else cfg.window_size // 2, rngs=rngs, **kw)
          for j in range(depth)]))
    self.features = nnx.List(features)
    self.norm = LayerNorm(cfg.dims[-1], eps=eps, **kw)
    self.config, self.dtype = cfg, dtype

  def __call__(self, pixel_values: jax.Array) -> tuple[jax.Array, ...]:
    """The output of every stage, each [B, H_i, W_i, C_i], before the final `norm`.

    pixel_values [B, C, H, W], any H and W (torchvision pads windows and merges the same way);
    at 224 the swin_b stages are 56x56x128, 28x28x256, 14x14x512, 7x7x1024.
    """
    if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
      raise ValueError(f"SwinTransformer: pixel_values of shape {pixel_values.shape}, expected "
                       f"[B, {self.config.num_channels}, H, W]")
    conv, _, norm = self.features[0]
    x = norm(conv(pixel_values.astype(self.dtype).transpose(0, 2, 3, 1)))  # [B, H/p, W/p, D]
    stages = []
    for i in range(len(self.config.depths)):
      if i:
        x = self.features[2 * i](x)  # PatchMerging
      for block in self.features[2 * i + 1]:
        x = block(x)
      stages.append(x)
    return tuple(stages)

  def pooled(self, last_stage: jax.Array) -> jax.Array:
    """`norm`, then the spatial mean: [B, H, W, C] -> [B, C]. What torchvision feeds its `head`."""
    return jnp.mean(self.norm(last_stage).astype(jnp.float32), axis=(1, 2)).astype(self.dtype)


def abstract_model(cfg: SwinConfig, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32) -> SwinTransformer:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: SwinTransformer(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
