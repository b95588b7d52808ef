"""Transformer pieces shared by the towers and the language model.

Parameter names mirror HF (`kernel` is the transpose of torch's `nn.Linear.weight`, RMSNorm keeps
`weight`) so converters are near-identity tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

DType = jnp.dtype | type

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {  # HF `ACT2FN` names
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # HF `GELUActivation` (erf), torch `nn.GELU()`
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # HF `QuickGELUActivation` (CLIP)
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


class Linear(nnx.Module):
  """y = x @ kernel + bias, kernel [in, out]. Corresponds to torch `nn.Linear` (weight [out, in])."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool, rngs: nnx.Rngs,
               dtype: DType = jnp.float32, param_dtype: DType = jnp.float32, init_std: float = 0.02):
    self.in_features, self.out_features = in_features, out_features
    self.kernel = nnx.Param(init_std * jax.random.normal(rngs.params(), (in_features, out_features), param_dtype))
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:  # [..., in] -> [..., out]
    y = x.astype(self.dtype) @ self.kernel[...].astype(self.dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class RMSNorm(nnx.Module):
  """x / rms(x) * weight, computed in fp32. Corresponds to HF `Qwen2RMSNorm`."""

  def __init__(self, dim: int, *, eps: float, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
    self.eps, self.dtype = eps, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x.astype(jnp.float32)
    h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.eps)
    return (self.weight[...].astype(jnp.float32) * h).astype(self.dtype)


class LayerNorm(nnx.Module):
  """(x - mean) / sqrt(var + eps) * weight + bias over the last axis, in fp32. Corresponds to torch `nn.LayerNorm`."""

  def __init__(self, dim: int, *, eps: float, use_bias: bool = True, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype)) if use_bias else None
    self.eps, self.dtype = eps, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x.astype(jnp.float32)
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
    h = (h - mean) * jax.lax.rsqrt(var + self.eps) * self.weight[...].astype(jnp.float32)
    if self.bias is not None:
      h = h + self.bias[...].astype(jnp.float32)
    return h.astype(self.dtype)


ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                         bias: jax.Array | None = None, dropout: nnx.Dropout | None = None,
                         implementation: str = "xla") -> jax.Array:
  """softmax(q k^T / sqrt(H) + bias) v with fp32 scores. q [B, Tq, N, H], k/v [B, Tk, K, H] -> [B, Tq, N, H].

  `jax.nn.dot_product_attention` (N = K x G query heads share a kv head): `implementation` "xla" runs
  everywhere, "cudnn" is cuDNN's fused flash attention (GPU, bf16/fp16, H <= 128). mask: bool, broadcastable
  to [B, N, Tq, Tk] (True = visible); bias: fp32, broadcastable to the same, added to the scores. An active
  `dropout` acts on the probabilities, which no fused kernel exposes: then the same math runs as einsums (K = N).
  """
  if dropout is None or dropout.deterministic or dropout.rate == 0:
    return jax.nn.dot_product_attention(q, k, v, bias, mask, implementation=None if implementation == "xla" else
                                        implementation)
  scores = jnp.einsum("bqnh,bknh->bnqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
  if bias is not None:
    scores = scores + bias
  if mask is not None:
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(scores, axis=-1))
  return jnp.einsum("bnqk,bknh->bqnh", probs.astype(v.dtype), v)


class MultiHeadAttention(nnx.Module):
  """Bidirectional attention with biased q/k/v/out projections.

  Corresponds to HF `CLIPAttention` / `HubertAttention` (self-attention) and torch
  `nn.MultiheadAttention(batch_first=True)` (cross-attention, its packed `in_proj` split into q/k/v).
  """

  def __init__(self, dim: int, num_heads: int, *, rngs: nnx.Rngs, context_dim: int | None = None,
               dropout: float = 0.0, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32):
    if dim % num_heads:
      raise ValueError(f"MultiHeadAttention: dim={dim} is not a multiple of num_heads={num_heads}")
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.q_proj, self.out_proj = Linear(dim, dim, **kw), Linear(dim, dim, **kw)
    self.k_proj, self.v_proj = Linear(context_dim or dim, dim, **kw), Linear(context_dim or dim, dim, **kw)
    self.num_heads = num_heads
    self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
    self.attention_implementation = "xla"  # model-wide: `NanoEmoX` sets every attention core's

  def __call__(self, x: jax.Array, context: jax.Array | None = None, mask: jax.Array | None = None) -> jax.Array:
    """x [B, T, D] attends to context [B, S, C] (default x); mask [B, S] bool (True = visible) -> [B, T, D]."""
    context = x if context is None else context
    split = lambda h: h.reshape(h.shape[0], h.shape[1], self.num_heads, -1)  # [B, L, N, H]
    out = multi_head_attention(split(self.q_proj(x)), split(self.k_proj(context)), split(self.v_proj(context)),
                               None if mask is None else mask[:, None, None, :].astype(bool),
                               dropout=self.dropout, implementation=self.attention_implementation)
    return self.out_proj(out.reshape(x.shape))


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
  """Rotary tables in fp32 for integer positions [B, T] -> cos, sin [B, T, head_dim]."""
  inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)  # [H/2]
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, H/2]
  freqs = jnp.concatenate([freqs, freqs], axis=-1)  # [B, T, H]
  return jnp.cos(freqs), jnp.sin(freqs)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotate-half RoPE (HF `apply_rotary_pos_emb`) in fp32. x [B, T, ..., H]; cos/sin [B, T, H]."""
  extra = x.ndim - cos.ndim
  cos = cos.reshape(cos.shape[:2] + (1,) * extra + cos.shape[2:])
  sin = sin.reshape(sin.shape[:2] + (1,) * extra + sin.shape[2:])
  h = x.astype(jnp.float32)
  x1, x2 = jnp.split(h, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return (h * cos + rotated * sin).astype(x.dtype)


def positions_from_mask(attention_mask: jax.Array, offset: jax.Array | int = 0) -> jax.Array:
  """Position ids that skip padding: offset + (cumsum(mask) - 1), clipped at offset. [B, T] -> [B, T].

  Equals what HF `generate` passes for left-padded batches (pad slots get a harmless position).
  """
  pos = jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1
  return jnp.asarray(offset, jnp.int32)[..., None] + jnp.maximum(pos, 0)


def causal_padding_mask(key_valid: jax.Array, query_slots: jax.Array) -> jax.Array:
  """Boolean attention mask [B, T, S]: key slot s is visible to query slot t iff s <= t and valid.

  key_valid [B, S] bool; query_slots [T] int (slot index of each query in the key axis).
  """
  key_slots = jnp.arange(key_valid.shape[-1])
  return key_valid[:, None, :] & (key_slots[None, None, :] <= query_slots[None, :, None])
