"""BLIP-2 Q-Former: learned queries that read encoder states through cross-attention.

Corresponds to HF `Blip2QFormerModel` (and LAVIS `BertLMHeadModel` as Video-LLaMA / AffectGPT /
Nano-EmoX use it: word and position embeddings removed, query-only feed-forward). Parameter paths
mirror HF: `encoder.layer.0.crossattention.attention.key.kernel` <- `...key.weight`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import DType, LayerNorm, Linear, multi_head_attention


@dataclasses.dataclass(frozen=True)
class QFormerConfig:
  """Defaults: the authors' 2-layer Q-Former (bert-base-uncased sizes), 32 queries, 1024-d inputs."""

  num_query_tokens: int = 32
  hidden_size: int = 768
  num_hidden_layers: int = 2
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  encoder_hidden_size: int = 1024
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"QFormerConfig: hidden_size={self.hidden_size} is not a multiple of "
                       f"num_attention_heads={self.num_attention_heads}")


class MultiHeadAttention(nnx.Module):
  """Scaled dot-product attention with biased q/k/v. Corresponds to HF `Blip2QFormerMultiHeadAttention`."""

  def __init__(self, cfg: QFormerConfig, kv_size: int, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype, init_std=cfg.initializer_range)
    self.query = Linear(cfg.hidden_size, cfg.hidden_size, **kw)
    self.key = Linear(kv_size, cfg.hidden_size, **kw)
    self.value = Linear(kv_size, cfg.hidden_size, **kw)
    self.heads = cfg.num_attention_heads
    self.dropout = nnx.Dropout(cfg.attention_probs_dropout_prob, rngs=rngs)
    self.attention_implementation = "xla"  # model-wide: `NanoEmoX` sets every attention core's

  def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array | None) -> jax.Array:
    """x [B, Q, D] attends to context [B, S, C]; context_mask [B, S] (1 = visible) -> [B, Q, D]."""
    b, q, d = x.shape
    split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, d // self.heads)  # [B, L, N, H]
    mask = None if context_mask is None else context_mask[:, None, None, :].astype(bool)
    out = multi_head_attention(split(self.query(x)), split(self.key(context)), split(self.value(context)), mask,
                               dropout=self.dropout, implementation=self.attention_implementation)
    return out.reshape(b, q, d)


class AddNorm(nnx.Module):
  """LayerNorm(dropout(dense(h)) + residual). Corresponds to HF `Blip2QFormerSelfOutput` / `...Output`."""

  def __init__(self, in_size: int, cfg: QFormerConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.dense = Linear(in_size, cfg.hidden_size, use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                        init_std=cfg.initializer_range)
    self.LayerNorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
    self.dropout = nnx.Dropout(cfg.hidden_dropout_prob, rngs=rngs)

  def __call__(self, h: jax.Array, residual: jax.Array) -> jax.Array:
    return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class Attention(nnx.Module):
  """Attention + AddNorm. Corresponds to HF `Blip2QFormerAttention`."""

  def __init__(self, cfg: QFormerConfig, kv_size: int, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.attention = MultiHeadAttention(cfg, kv_size, **kw)
    self.output = AddNorm(cfg.hidden_size, cfg, **kw)

  def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array | None = None) -> jax.Array:
    return self.output(self.attention(x, context, context_mask), x)


class Intermediate(nnx.Module):
  """gelu(dense(x)) (exact erf GELU, as BERT). Corresponds to HF `Blip2QFormerIntermediate`."""

  def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, use_bias=True, rngs=rngs, dtype=dtype,
                        param_dtype=param_dtype, init_std=cfg.initializer_range)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.gelu(self.dense(x), approximate=False)


class QFormerLayer(nnx.Module):
  """Self-attention over queries, cross-attention to the encoder, query feed-forward.

  Corresponds to HF `Blip2QFormerLayer` with `cross_attention_frequency=1` and no text input.
  """

  def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.attention = Attention(cfg, cfg.hidden_size, **kw)
    self.crossattention = Attention(cfg, cfg.encoder_hidden_size, **kw)
    self.intermediate_query = Intermediate(cfg, **kw)
    self.output_query = AddNorm(cfg.intermediate_size, cfg, **kw)

  def __call__(self, x: jax.Array, encoder_states: jax.Array, encoder_mask: jax.Array | None) -> jax.Array:
    x = self.attention(x, x)
    x = self.crossattention(x, encoder_states, encoder_mask)
    return self.output_query(self.intermediate_query(x), x)


class QFormerEncoder(nnx.Module):
  def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.layer = nnx.List([QFormerLayer(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                           for _ in range(cfg.num_hidden_layers)])


class QFormer(nnx.Module):
  """Learned `query_tokens` [1, Q, D] -> LayerNorm -> dropout -> layers. Returns [B, Q, D].

  Corresponds to HF `Blip2QFormerModel(query_embeds=query_tokens, encoder_hidden_states=...)`.
  """

  def __init__(self, cfg: QFormerConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    self.config = cfg
    shape = (1, cfg.num_query_tokens, cfg.hidden_size)
    self.query_tokens = nnx.Param(cfg.initializer_range * jax.random.normal(rngs.params(), shape, param_dtype))
    self.layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
    self.dropout = nnx.Dropout(cfg.hidden_dropout_prob, rngs=rngs)
    self.encoder = QFormerEncoder(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, encoder_states: jax.Array, encoder_mask: jax.Array | None = None) -> jax.Array:
    """encoder_states [B, S, C] (C = encoder_hidden_size); encoder_mask [B, S] -> [B, Q, D]."""
    b = encoder_states.shape[0]
    x = self.dropout(self.layernorm(jnp.broadcast_to(self.query_tokens[...], (b,) + self.query_tokens.shape[1:])))
    for layer in self.encoder.layer:
      x = layer(x, encoder_states, encoder_mask)
    return x
