"""Gated multi-scale audio-visual fusion: one cross-modal expert per (speech layer, vision layer) pair.

Corresponds to the authors' `MultiScaleCrossModalFusion` (`models/MoE_fusion.py`) followed by
`multi_llama_proj` on the time-mean: expert i lets speech features (queries) read visual features
(keys/values) through multi-head attention with an audio residual, then a pre-norm feed-forward
with a residual; a gate (softmax over experts, from the time-mean of the concatenated expert
outputs) weighs them. Names: `cross_attns.i.{q,k,v,out}_proj` split torch's packed `in_proj_weight`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import DType, LayerNorm, Linear, MultiHeadAttention


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  """Paper defaults. `weighting`: "gate" (learned) or "average" (Fig. 6 ablation)."""

  audio_dim: int = 1024
  visual_dim: int = 1024
  hidden_dim: int = 512
  num_heads: int = 8
  num_experts: int = 3
  weighting: str = "gate"
  dropout: float = 0.1
  llm_dim: int = 1536

  def __post_init__(self):
    if self.weighting not in ("gate", "average"):
      raise ValueError(f"FusionConfig: weighting={self.weighting!r}, expected 'gate' or 'average'")
    if self.hidden_dim % self.num_heads:
      raise ValueError(f"FusionConfig: hidden_dim={self.hidden_dim} is not a multiple of num_heads={self.num_heads}")
    if self.num_experts < 1:
      raise ValueError(f"FusionConfig: num_experts={self.num_experts} must be >= 1")


class FeedForward(nnx.Module):
  """LayerNorm -> Linear -> GELU -> dropout -> Linear (torch `nn.Sequential` indices 0, 1, 4)."""

  def __init__(self, dim: int, dropout: float, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.norm = LayerNorm(dim, eps=1e-5, dtype=dtype, param_dtype=param_dtype)
    self.fc1, self.fc2 = Linear(dim, dim, **kw), Linear(dim, dim, **kw)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(self.dropout(jax.nn.gelu(self.fc1(self.norm(x)), approximate=False)))


class Gate(nnx.Module):
  """Linear(E*D -> D), GELU, dropout, Linear(D -> E), softmax: one weight per expert."""

  def __init__(self, cfg: FusionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.fc1 = Linear(cfg.num_experts * cfg.hidden_dim, cfg.hidden_dim, **kw)
    self.fc2 = Linear(cfg.hidden_dim, cfg.num_experts, **kw)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, pooled: jax.Array) -> jax.Array:  # [B, E*D] -> [B, E], fp32
    logits = self.fc2(self.dropout(jax.nn.gelu(self.fc1(pooled), approximate=False)))
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


class MultiScaleFusion(nnx.Module):
  """Fuses E (speech, vision) layer pairs into one LM token. Returns (token [B, 1, L], weights [B, E])."""

  def __init__(self, cfg: FusionConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.config = cfg
    self.audio_proj = Linear(cfg.audio_dim, cfg.hidden_dim, use_bias=True, **kw)  # shared by all experts
    self.visual_proj = Linear(cfg.visual_dim, cfg.hidden_dim, use_bias=True, **kw)
    self.cross_attns = nnx.List([MultiHeadAttention(cfg.hidden_dim, cfg.num_heads, dropout=cfg.dropout, **kw)
                                 for _ in range(cfg.num_experts)])
    self.ffns = nnx.List([FeedForward(cfg.hidden_dim, cfg.dropout, **kw) for _ in range(cfg.num_experts)])
    self.gate_mlp = Gate(cfg, **kw) if cfg.weighting == "gate" else None
    self.llm_proj = Linear(cfg.hidden_dim, cfg.llm_dim, use_bias=True, **kw)

  def __call__(self, audio: jax.Array, visual: jax.Array) -> tuple[jax.Array, jax.Array]:
    """audio [B, E, Ta, Da] (time-mean per clip, one slice per tapped speech layer);
    visual [B, E, Tv, Dv] (CLS per frame, one slice per tapped vision layer)."""
    e = self.config.num_experts
    if audio.shape[1] != e or visual.shape[1] != e:
      raise ValueError(f"MultiScaleFusion: expected {e} layer slices, got audio {audio.shape} visual {visual.shape}")
    experts = []
    for i in range(e):
      a, v = self.audio_proj(audio[:, i]), self.visual_proj(visual[:, i])  # [B, Ta, D], [B, Tv, D]
      h = self.cross_attns[i](a, v) + a
      experts.append(self.ffns[i](h) + h)
    stacked = jnp.stack(experts, axis=1)  # [B, E, Ta, D]
    if self.gate_mlp is None:
      weights = jnp.full(stacked.shape[:2], 1.0 / e, jnp.float32)
    else:
      pooled = jnp.concatenate(experts, axis=-1).mean(axis=1)  # [B, E*D]: time-mean of the concatenation
      weights = self.gate_mlp(pooled)
    fused = jnp.einsum("be,betd->btd", weights.astype(stacked.dtype), stacked)  # [B, Ta, D]
    return self.llm_proj(fused.mean(axis=1))[:, None, :], weights
