"""HuBERT speech encoder in Flax NNX (inference only). Corresponds to HF `HubertModel`.

Parameter paths mirror HF's state dict: `encoder.layers.3.attention.q_proj.kernel` is the transpose of
`encoder.layers.3.attention.q_proj.weight`; a conv `kernel` [K, in/groups, out] is torch's
`conv.weight` [out, in/groups, K] transposed. Activations are channels-last, [B, T, C]. The positional
conv holds the effective weight (the converter folds torch's weight norm). `masked_spec_embed`
(training-time SpecAugment only) is left out. Dropout and LayerDrop are training-only and absent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import ACTIVATIONS, DType, LayerNorm, Linear, MultiHeadAttention

# HF `HubertConfig` class defaults (hubert-base): what HF assumes for a field a config.json omits.
_HF_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    layer_norm_eps=1e-5, feat_extract_norm="group", feat_extract_activation="gelu", conv_dim=(512,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
    feat_proj_layer_norm=True, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
    do_stable_layer_norm=False)


@dataclasses.dataclass(frozen=True)
class HubertConfig:
  """The fields of HF `HubertConfig` the network uses. Defaults: HuBERT-Large (chinese-hubert-large)."""

  hidden_size: int = 1024
  num_hidden_layers: int = 24
  num_attention_heads: int = 16
  intermediate_size: int = 4096
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-5
  feat_extract_norm: str = "layer"  # "group": GroupNorm after the first conv only; "layer": LayerNorm after each
  feat_extract_activation: str = "gelu"
  conv_dim: tuple[int, ...] = (512,) * 7
  conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
  conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
  conv_bias: bool = True
  feat_proj_layer_norm: bool = True
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  do_stable_layer_norm: bool = True  # pre-norm layers + a final encoder LayerNorm
  masked_spec_embed: bool = True  # HF builds it when mask_time_prob or mask_feature_prob > 0 (training-time only)

  def __post_init__(self):
    problems = []
    if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
      problems.append(f"conv_dim/conv_stride/conv_kernel lengths differ: {len(self.conv_dim)}, "
                      f"{len(self.conv_stride)}, {len(self.conv_kernel)}")
    if self.feat_extract_norm not in ("group", "layer"):
      problems.append(f"feat_extract_norm={self.feat_extract_norm!r} is not 'group' or 'layer'")
    problems += [f"{name}={act!r} is not one of {sorted(ACTIVATIONS)}" for name, act in
                 (("hidden_act", self.hidden_act), ("feat_extract_activation", self.feat_extract_activation))
                 if act not in ACTIVATIONS]
    problems += [f"hidden_size={self.hidden_size} is not a multiple of {name}={n}" for name, n in
                 (("num_attention_heads", self.num_attention_heads),
                  ("num_conv_pos_embedding_groups", self.num_conv_pos_embedding_groups)) if self.hidden_size % n]
    if problems:
      raise ValueError("HubertConfig: " + "; ".join(problems))

  @classmethod
  def from_hf(cls, hf: dict[str, Any], source: str = "config") -> HubertConfig:
    """From an HF `config.json` dict; absent fields take HF's class defaults, as HF itself does."""
    if hf.get("model_type", "hubert") != "hubert":
      raise ValueError(f"{source}: model_type={hf['model_type']!r} is not 'hubert'")
    if hf.get("conv_pos_batch_norm"):
      raise ValueError(f"{source}: conv_pos_batch_norm=true is not supported (HuBERT checkpoints use weight norm)")
    if hf.get("adapter_attn_dim") is not None:
      raise ValueError(f"{source}: adapter_attn_dim={hf['adapter_attn_dim']} (attention adapters) is not supported")
    kw = {k: hf.get(k, default) for k, default in _HF_DEFAULTS.items()}
    kw.update({k: tuple(kw[k]) for k in ("conv_dim", "conv_stride", "conv_kernel")})
    kw["masked_spec_embed"] = hf.get("mask_time_prob", 0.05) > 0 or hf.get("mask_feature_prob", 0.0) > 0
    try:
      return cls(**kw)
    except ValueError as e:
      raise ValueError(f"{source}: {e}") from None

  def to_hf(self) -> dict[str, Any]:
    """An HF-loadable `config.json` dict (model_type hubert)."""
    d = dataclasses.asdict(self)
    d.update({k: list(d[k]) for k in ("conv_dim", "conv_stride", "conv_kernel")})
    d["mask_time_prob"], d["mask_feature_prob"] = (0.05 if d.pop("masked_spec_embed") else 0.0), 0.0
    return {"model_type": "hubert", "architectures": ["HubertModel"], **d}


def feature_lengths(cfg: HubertConfig, num_samples: jax.Array | int) -> jax.Array | int:
  """Frames the conv feature encoder makes of `num_samples` samples (HF `_get_feat_extract_output_lengths`)."""
  for kernel, stride in zip(cfg.conv_kernel, cfg.conv_stride):
    num_samples = (num_samples - kernel) // stride + 1
  return num_samples


def frame_mask(cfg: HubertConfig, attention_mask: jax.Array, num_frames: int) -> jax.Array:
  """Sample mask [B, S] -> frame mask [B, T] bool. HF `_get_feature_vector_attention_mask`.

  Like HF, the first `feature_lengths(mask.sum())` frames are valid; HF marks frame (length - 1) and
  fills backwards, so a row too short for a single frame (length 0) comes out all valid.
  """
  lengths = feature_lengths(cfg, attention_mask.astype(jnp.int32).sum(-1))  # [B]
  return jnp.arange(num_frames) <= jnp.mod(lengths - 1, num_frames)[:, None]


def normalize_waveform(input_values: jax.Array, attention_mask: jax.Array | None = None,
                       padding_value: float = 0.0) -> jax.Array:
  """Zero-mean unit-variance per utterance, float32 [B, S]. HF `Wav2Vec2FeatureExtractor(do_normalize=True)`.

  Statistics cover the valid samples (`attention_mask` [B, S], right padding) and padding is set back to
  `padding_value`; without a mask a row is normalised whole (what HF does when it returns no mask).
  """
  x = jnp.asarray(input_values, jnp.float32)
  valid = jnp.ones(x.shape, bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
  count = valid.sum(-1, keepdims=True)
  mean = jnp.where(valid, x, 0).sum(-1, keepdims=True) / count
  var = jnp.where(valid, jnp.square(x - mean), 0).sum(-1, keepdims=True) / count
  return jnp.where(valid, (x - mean) / jnp.sqrt(var + 1e-7), padding_value)


class Conv1d(nnx.Module):
  """Channels-last 1-D convolution, kernel [K, in/groups, out]. Corresponds to torch `nn.Conv1d`."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, use_bias: bool, rngs: nnx.Rngs,
               stride: int = 1, padding: int = 0, groups: int = 1, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    fan_in = in_features // groups * kernel_size
    self.kernel = nnx.Param(fan_in**-0.5 * jax.random.normal(
        rngs.params(), (kernel_size, in_features // groups, out_features), param_dtype))
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None
    self.stride, self.padding, self.groups, self.dtype = stride, padding, groups, dtype

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, in] -> [B, T', out]
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), self.kernel[...].astype(self.dtype), window_strides=(self.stride,),
        padding=[(self.padding, self.padding)], dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=self.groups)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class ChannelGroupNorm(nnx.Module):
  """Each channel normalised over time, in fp32. Corresponds to torch `nn.GroupNorm(C, C)` (eps 1e-5)."""

  def __init__(self, dim: int, *, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32):
    self.weight = nnx.Param(jnp.ones((dim,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, C]
    h = x.astype(jnp.float32)
    mean = jnp.mean(h, axis=1, keepdims=True)
    var = jnp.mean(jnp.square(h - mean), axis=1, keepdims=True)
    h = (h - mean) * jax.lax.rsqrt(var + 1e-5)
    return (h * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(self.dtype)


class HubertConvLayer(nnx.Module):
  """conv -> norm -> activation. HF `Hubert{GroupNorm,LayerNorm,NoLayerNorm}ConvLayer`.

  `norm` is "group", "layer" (torch default eps 1e-5) or None; the norm is called `layer_norm` in all cases.
  """

  def __init__(self, cfg: HubertConfig, layer_id: int, norm: str | None, *, rngs: nnx.Rngs, dtype: DType,
               param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    in_dim, out_dim = cfg.conv_dim[layer_id - 1] if layer_id else 1, cfg.conv_dim[layer_id]
    self.conv = Conv1d(in_dim, out_dim, cfg.conv_kernel[layer_id], stride=cfg.conv_stride[layer_id],
                       use_bias=cfg.conv_bias, rngs=rngs, **kw)
    self.layer_norm = (ChannelGroupNorm(out_dim, **kw) if norm == "group" else
                       LayerNorm(out_dim, eps=1e-5, **kw) if norm == "layer" else None)
    self.activation = cfg.feat_extract_activation

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, in] -> [B, T', out]
    x = self.conv(x)
    if self.layer_norm is not None:
      x = self.layer_norm(x)
    return ACTIVATIONS[self.activation](x)


class HubertFeatureEncoder(nnx.Module):
  """The conv stack over the raw waveform. Corresponds to HF `HubertFeatureEncoder`."""

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    def norm(i: int) -> str | None:
      return "layer" if cfg.feat_extract_norm == "layer" else ("group" if i == 0 else None)

    self.conv_layers = nnx.List([HubertConvLayer(cfg, i, norm(i), rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                                 for i in range(len(cfg.conv_dim))])

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, S, 1] -> [B, T, C]
    for layer in self.conv_layers:
      x = layer(x)
    return x


class HubertFeatureProjection(nnx.Module):
  """[LayerNorm] + Linear conv_dim[-1] -> hidden. Corresponds to HF `HubertFeatureProjection`."""

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.layer_norm = LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps, **kw) if cfg.feat_proj_layer_norm else None
    self.projection = Linear(cfg.conv_dim[-1], cfg.hidden_size, use_bias=True, rngs=rngs, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, C] -> [B, T, D]
    return self.projection(x if self.layer_norm is None else self.layer_norm(x))


class WeightNormConv1d(nnx.Module):
  """Grouped 1-D conv with torch's `weight_norm(dim=2)`: w = g * v / ||v||, the norm over all axes but the taps.

  Parameters `weight_g` [K] and `weight_v` [K, in/groups, out] (channels-last) + `bias`, so the count equals HF's.
  """

  def __init__(self, dim: int, kernel_size: int, groups: int, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.weight_v = nnx.Param((dim // groups * kernel_size) ** -0.5 * jax.random.normal(
        rngs.params(), (kernel_size, dim // groups, dim), param_dtype))
    self.weight_g = nnx.Param(jnp.ones((kernel_size,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype))
    self.padding, self.groups, self.dtype = kernel_size // 2, groups, dtype

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, D] -> [B, T + 1 - K % 2, D]
    v = self.weight_v[...].astype(jnp.float32)
    w = self.weight_g[...].astype(jnp.float32)[:, None, None] * v * jax.lax.rsqrt(jnp.sum(v * v, axis=(1, 2),
                                                                                         keepdims=True))
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), w.astype(self.dtype), window_strides=(1,),
                                     padding=[(self.padding, self.padding)], dimension_numbers=("NWC", "WIO", "NWC"),
                                     feature_group_count=self.groups)
    return y + self.bias[...].astype(self.dtype)


class HubertPositionalConvEmbedding(nnx.Module):
  """Grouped same-padded weight-normalised conv + activation. Corresponds to HF `HubertPositionalConvEmbedding`.

  torch pads K // 2 on both sides; for an even K that makes one frame too many, which `HubertSamePadLayer`
  drops from the end.
  """

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.conv = WeightNormConv1d(cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups,
                                 rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.activation = cfg.feat_extract_activation

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, D] -> [B, T, D]
    return ACTIVATIONS[self.activation](self.conv(x)[:, :x.shape[1]])


class HubertFeedForward(nnx.Module):
  """Linear -> activation -> Linear. Corresponds to HF `HubertFeedForward`."""

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.intermediate_dense = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
    self.output_dense = Linear(cfg.intermediate_size, cfg.hidden_size, **kw)
    self.activation = cfg.hidden_act

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.output_dense(ACTIVATIONS[self.activation](self.intermediate_dense(x)))


class HubertEncoderLayer(nnx.Module):
  """Post-norm block (HF `HubertEncoderLayer`) or pre-norm block (HF `HubertEncoderLayerStableLayerNorm`)."""

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.attention = MultiHeadAttention(cfg.hidden_size, cfg.num_attention_heads, rngs=rngs, **kw)  # HF `HubertAttention`
    self.layer_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.feed_forward = HubertFeedForward(cfg, rngs=rngs, **kw)
    self.final_layer_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.stable = cfg.do_stable_layer_norm

  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:  # [B, T, D]
    if self.stable:
      x = x + self.attention(self.layer_norm(x), mask=mask)
      return x + self.feed_forward(self.final_layer_norm(x))
    x = self.layer_norm(x + self.attention(x, mask=mask))
    return self.final_layer_norm(x + self.feed_forward(x))


class HubertEncoder(nnx.Module):
  """Positional conv, encoder norm and layers. HF `HubertEncoder` / `HubertEncoderStableLayerNorm`.

  The post-norm encoder applies `layer_norm` before the first layer, the stable one after the last.
  """

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.pos_conv_embed = HubertPositionalConvEmbedding(cfg, rngs=rngs, **kw)
    self.layer_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.layers = nnx.List([HubertEncoderLayer(cfg, rngs=rngs, **kw) for _ in range(cfg.num_hidden_layers)])
    self.stable = cfg.do_stable_layer_norm

  def __call__(self, x: jax.Array, mask: jax.Array | None,
               num_layers: int) -> tuple[tuple[jax.Array, ...], jax.Array | None]:
    """x [B, T, D] -> (the input of layer 0 and the output of each of the first `num_layers` layers,
    the HF `last_hidden_state` when every layer ran, else None)."""
    if mask is not None:
      x = jnp.where(mask[..., None], x, 0).astype(x.dtype)  # HF zeroes padded frames before the positional conv
    x = x + self.pos_conv_embed(x)
    if not self.stable:
      x = self.layer_norm(x)
    states = [x]
    for layer in self.layers[:num_layers]:
      states.append(layer(states[-1], mask))
    if num_layers < len(self.layers):
      return tuple(states), None
    return tuple(states), (self.layer_norm(states[-1]) if self.stable else states[-1])


class HubertOutput(NamedTuple):
  """hidden_states: HF-indexed ([0] = input of layer 0, [i] = output of layer i), each [B, T, D].

  last_hidden_state [B, T, D]: HF's (after the final LayerNorm of a stable-layer-norm encoder), None
  when the model stopped early. frame_mask [B, T] bool: the valid frames.
  With stable layer norm, hidden_states[-1] is the last layer's output before the final LayerNorm, as in
  transformers 5; transformers 4.x put last_hidden_state (normalised) there instead.
  """

  hidden_states: tuple[jax.Array, ...]
  last_hidden_state: jax.Array | None
  frame_mask: jax.Array


class HubertModel(nnx.Module):
  """Corresponds to HF `HubertModel`. `masked_spec_embed` (SpecAugment's mask vector) is kept so checkpoints
  and parameter counts match HF; nothing here uses it (no training-time masking: the tower is frozen)."""

  def __init__(self, cfg: HubertConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.config, self.dtype = cfg, dtype
    self.feature_extractor = HubertFeatureEncoder(cfg, **kw)
    self.feature_projection = HubertFeatureProjection(cfg, **kw)
    self.encoder = HubertEncoder(cfg, **kw)
    if cfg.masked_spec_embed:
      self.masked_spec_embed = nnx.Param(jax.random.uniform(rngs.params(), (cfg.hidden_size,), param_dtype))

  def __call__(self, input_values: jax.Array, attention_mask: jax.Array | None = None, *,
               num_layers: int | None = None) -> HubertOutput:
    """input_values float [B, S] (normalised waveform, see `normalize_waveform`); attention_mask [B, S].

    `num_layers` stops after that many encoder layers (hidden_states then has num_layers + 1 entries).
    """
    num_layers = self.config.num_hidden_layers if num_layers is None else num_layers
    if not 0 <= num_layers <= self.config.num_hidden_layers:
      raise ValueError(f"HubertModel: num_layers={num_layers} is not in [0, {self.config.num_hidden_layers}]")
    features = self.feature_extractor(input_values.astype(self.dtype)[..., None])  # [B, T, C]
    b, t, _ = features.shape
    mask = None if attention_mask is None else frame_mask(self.config, attention_mask, t)  # [B, T]
    states, last = self.encoder(self.feature_projection(features), mask, num_layers)
    return HubertOutput(states, last, jnp.ones((b, t), bool) if mask is None else mask)


def abstract_model(cfg: HubertConfig, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32) -> HubertModel:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: HubertModel(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
