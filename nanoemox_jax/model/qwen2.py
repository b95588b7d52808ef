"""Qwen2 / Qwen2.5 decoder in Flax NNX. Corresponds to HF `Qwen2ForCausalLM`.

Parameter paths mirror HF: `model.layers.3.self_attn.q_proj.kernel` is the transpose of
`model.layers.3.self_attn.q_proj.weight`. Grouped-query attention never repeats K/V
(`jax.nn.dot_product_attention` views the N query heads as K kv heads x G).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import (ATTENTION_IMPLEMENTATIONS, DType, Linear, RMSNorm, apply_rope, causal_padding_mask,
                                      multi_head_attention, positions_from_mask, rope_cos_sin)


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
  """The fields of HF `Qwen2Config` the network uses. Defaults: Qwen2.5-1.5B-Instruct."""

  vocab_size: int = 151936
  hidden_size: int = 1536
  intermediate_size: int = 8960
  num_hidden_layers: int = 28
  num_attention_heads: int = 12
  num_key_value_heads: int = 2
  head_dim: int = 128
  rope_theta: float = 1_000_000.0
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = True
  max_position_embeddings: int = 32768

  def __post_init__(self):
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f"Qwen2Config: num_attention_heads={self.num_attention_heads} is not a multiple of "
                       f"num_key_value_heads={self.num_key_value_heads}")

  @classmethod
  def from_hf(cls, hf: dict[str, Any], source: str = "config") -> Qwen2Config:
    """From an HF `config.json` dict (transformers 4.x `rope_theta` or 5.x `rope_parameters`)."""
    if hf.get("use_sliding_window"):
      raise ValueError(f"{source}: use_sliding_window=true is not supported (Qwen2.5 checkpoints leave it off)")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
      raise ValueError(f"{source}: rope type {rope.get('rope_type', rope.get('type'))!r} is not supported, only 'default'")
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
               if k not in hf]
    if missing:
      raise ValueError(f"{source}: missing field(s) {missing}")
    heads = hf["num_attention_heads"]
    return cls(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
        num_hidden_layers=hf["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        rms_norm_eps=hf.get("rms_norm_eps", 1e-6), tie_word_embeddings=hf.get("tie_word_embeddings", False),
        max_position_embeddings=hf.get("max_position_embeddings", 32768))

  def to_hf(self) -> dict[str, Any]:
    """An HF-loadable `config.json` dict (model_type qwen2)."""
    d = dataclasses.asdict(self)
    d["rope_parameters"] = {"rope_type": "default", "rope_theta": d.pop("rope_theta")}
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", **d}


class KVCache(NamedTuple):
  """Per-layer key/value slots plus which slots hold real tokens (a pytree).

  k, v: one [B, S, K, H] array per layer; valid: [B, S] bool; index: [] int32, first free slot.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  valid: jax.Array
  index: jax.Array

  @classmethod
  def zeros(cls, cfg: Qwen2Config, batch: int, length: int, dtype: DType) -> KVCache:
    shape = (batch, length, cfg.num_key_value_heads, cfg.head_dim)
    layers = range(cfg.num_hidden_layers)
    return cls(tuple(jnp.zeros(shape, dtype) for _ in layers), tuple(jnp.zeros(shape, dtype) for _ in layers),
               jnp.zeros((batch, length), bool), jnp.zeros((), jnp.int32))

  @property
  def seen_tokens(self) -> jax.Array:  # [B] real tokens already cached (the next position id)
    return self.valid.sum(-1).astype(jnp.int32)


class Qwen2Attention(nnx.Module):
  """Corresponds to HF `Qwen2Attention` (q/k/v with bias, o without).

  The core is `layers.multi_head_attention` (`jax.nn.dot_product_attention`, GQA without repeating K/V):
  `implementation` "xla" runs everywhere; "cudnn" is cuDNN's fused flash attention (GPU, bf16/fp16).
  """

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType,
               implementation: str = "xla"):
    n, k, h, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.q_proj = Linear(d, n * h, use_bias=True, **kw)
    self.k_proj = Linear(d, k * h, use_bias=True, **kw)
    self.v_proj = Linear(d, k * h, use_bias=True, **kw)
    self.o_proj = Linear(n * h, d, use_bias=False, **kw)
    self.num_heads, self.num_kv, self.head_dim, self.dtype = n, k, h, dtype
    self.attention_implementation = implementation

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array,
               cache_kv: tuple[jax.Array, jax.Array] | None, index: jax.Array | None):
    """x [B, T, D]; mask [B, T, S] bool; cache_kv ([B, S, K, H] x2) written at slot `index`."""
    b, t, _ = x.shape
    q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)  # [B, T, N, H], N = K * G
    k = self.k_proj(x).reshape(b, t, self.num_kv, self.head_dim)  # [B, T, K, H]
    v = self.v_proj(x).reshape(b, t, self.num_kv, self.head_dim)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if cache_kv is not None:
      k = jax.lax.dynamic_update_slice(cache_kv[0], k.astype(cache_kv[0].dtype), (0, index, 0, 0))  # [B, S, K, H]
      v = jax.lax.dynamic_update_slice(cache_kv[1], v.astype(cache_kv[1].dtype), (0, index, 0, 0))
    out = multi_head_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask[:, None],
                               implementation=self.attention_implementation)
    return self.o_proj(out.reshape(b, t, -1)), (k, v)  # out [B, T, N, H]


class Qwen2MLP(nnx.Module):
  """SwiGLU: down(silu(gate(x)) * up(x)). Corresponds to HF `Qwen2MLP`."""

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=False, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
    self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
    self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nnx.Module):
  """Pre-norm block. Corresponds to HF `Qwen2DecoderLayer`."""

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType,
               attention_implementation: str = "xla"):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.self_attn = Qwen2Attention(cfg, rngs=rngs, implementation=attention_implementation, **kw)
    self.mlp = Qwen2MLP(cfg, rngs=rngs, **kw)
    self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, **kw)
    self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, **kw)

  def __call__(self, x, cos, sin, mask, cache_kv, index):
    h, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache_kv, index)
    x = x + h
    return x + self.mlp(self.post_attention_layernorm(x)), kv


class Qwen2Model(nnx.Module):
  """Embedding, decoder stack and final norm. Corresponds to HF `Qwen2Model`."""

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType,
               attention_implementation: str = "xla"):
    self.embed_tokens = nnx.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dtype, param_dtype=param_dtype,
                                  embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.layers = nnx.List([Qwen2DecoderLayer(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                                              attention_implementation=attention_implementation)
                            for _ in range(cfg.num_hidden_layers)])
    self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)


class Qwen2ForCausalLM(nnx.Module):
  """Corresponds to HF `Qwen2ForCausalLM`; `lm_head` exists only when embeddings are untied.

  Execution options (none changes a parameter or a result beyond float rounding):
  `attention_implementation` "xla" or "cudnn" (see `Qwen2Attention`); `scan_layers` runs the decoder stack
  without a cache as one `jax.lax.scan` over the layers' weights stacked at call time (one layer body to
  compile; costs one extra copy of the decoder weights while it runs); `remat_layers` recomputes each decoder
  layer in the backward pass, keeping only its input (`jax.checkpoint`).
  """

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32, attention_implementation: str = "xla",
               scan_layers: bool = False, remat_layers: bool = False):
    if attention_implementation not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"Qwen2ForCausalLM: attention_implementation={attention_implementation!r} is not one of "
                       f"{ATTENTION_IMPLEMENTATIONS}")
    self.config, self.dtype = cfg, dtype
    self.scan_layers, self.remat_layers = scan_layers, remat_layers
    self.model = Qwen2Model(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                            attention_implementation=attention_implementation)
    self.lm_head = None if cfg.tie_word_embeddings else Linear(
        cfg.hidden_size, cfg.vocab_size, use_bias=False, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def embed(self, input_ids: jax.Array) -> jax.Array:  # [B, T] -> [B, T, D]
    return self.model.embed_tokens(input_ids)

  def hidden_states(self, input_ids: jax.Array | None = None, attention_mask: jax.Array | None = None, *,
                    inputs_embeds: jax.Array | None = None, position_ids: jax.Array | None = None,
                    cache: KVCache | None = None) -> tuple[jax.Array, KVCache | None]:
    """Final-norm hidden states [B, T, D] and the updated cache.

    Give `input_ids` [B, T] or `inputs_embeds` [B, T, D]. `attention_mask` [B, T] marks real tokens
    (left padding allowed); default position ids count only real tokens (and those already cached).
    With a cache, the T new tokens are written at slots [cache.index, cache.index + T).
    """
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("Qwen2ForCausalLM: give exactly one of input_ids and inputs_embeds")
    x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)
    b, t, _ = x.shape
    valid = jnp.ones((b, t), bool) if attention_mask is None else attention_mask.astype(bool)
    if cache is None:
      offset, index, key_valid, query_slots = 0, None, valid, jnp.arange(t)
    else:
      offset, index = cache.seen_tokens, cache.index
      key_valid = jax.lax.dynamic_update_slice(cache.valid, valid, (0, index))
      query_slots = index + jnp.arange(t)
    if position_ids is None:
      position_ids = positions_from_mask(valid, offset)
    cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta)
    mask = causal_padding_mask(key_valid, query_slots)  # [B, T, S]
    if cache is None and (self.scan_layers or self.remat_layers):
      return self.model.norm(self._decoder_stack(x, cos, sin, mask)), None
    new_k, new_v = [], []
    for i, layer in enumerate(self.model.layers):
      layer_kv = None if cache is None else (cache.k[i], cache.v[i])
      x, (k, v) = layer(x, cos, sin, mask, layer_kv, index)
      new_k.append(k)
      new_v.append(v)
    x = self.model.norm(x)
    if cache is None:
      return x, None
    return x, KVCache(tuple(new_k), tuple(new_v), key_valid, index + t)

  def _decoder_stack(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array) -> jax.Array:
    """The decoder layers without a cache, scanned and/or rematerialised: x [B, T, D] -> [B, T, D].

    Each layer is split into its graph, its RNG state (the LoRA dropout streams, one per layer) and its
    weights; the layer function returns the advanced RNG state, which is written back, so dropout draws the
    same masks as the plain loop.
    """
    layers = list(self.model.layers)
    parts = [nnx.split(layer, nnx.RngState, ...) for layer in layers]  # (graphdef, rng state, weights) per layer

    def apply(graphdef: nnx.GraphDef, rng: nnx.State, weights: nnx.State, x: jax.Array):
      layer = nnx.merge(graphdef, rng, weights)
      x, _ = layer(x, cos, sin, mask, None, None)
      return x, nnx.state(layer, nnx.RngState)

    if self.remat_layers:
      apply = jax.checkpoint(apply, static_argnums=(0,))
    if not self.scan_layers:
      for layer, (graphdef, rng, weights) in zip(layers, parts):
        x, rng = apply(graphdef, rng, weights, x)
        nnx.update(layer, rng)
      return x
    graphdef = parts[0][0]
    odd = next((i for i, (g, _, _) in enumerate(parts) if g != graphdef), None)
    if odd is not None:
      raise ValueError(f"Qwen2ForCausalLM: scan_layers needs decoder layers of one structure; layer {odd} differs "
                       "from layer 0 (LoRA targets only some layers?)")
    stack = lambda states: jax.tree.map(lambda *a: jnp.stack(a), *states)  # [L, ...] per leaf
    rngs, weights = stack([p[1] for p in parts]), stack([p[2] for p in parts])
    x, rngs = jax.lax.scan(lambda x, s: apply(graphdef, s[0], s[1], x), x, (rngs, weights))
    for i, layer in enumerate(layers):
      nnx.update(layer, jax.tree.map(lambda a: a[i], rngs))
    return x

  def logits(self, hidden: jax.Array) -> jax.Array:
    """[..., D] -> float32 [..., V]; the tied head reads the embedding table."""
    if self.lm_head is None:
      table = self.model.embed_tokens.embedding[...].astype(self.dtype)
      return jnp.einsum("...d,vd->...v", hidden.astype(self.dtype), table, preferred_element_type=jnp.float32)
    return self.lm_head(hidden).astype(jnp.float32)

  def __call__(self, input_ids: jax.Array | None = None, attention_mask: jax.Array | None = None, *,
               inputs_embeds: jax.Array | None = None, position_ids: jax.Array | None = None) -> jax.Array:
    """Logits float32 [B, T, V] for a whole sequence (no cache)."""
    hidden, _ = self.hidden_states(input_ids, attention_mask, inputs_embeds=inputs_embeds, position_ids=position_ids)
    return self.logits(hidden)


def abstract_model(cfg: Qwen2Config, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32) -> Qwen2ForCausalLM:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
