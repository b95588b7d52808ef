"""CLIP ViT vision tower in Flax NNX. Corresponds to HF `CLIPVisionModel`.

Parameter paths mirror the `vision_model.*` keys of an HF `CLIPModel` checkpoint:
`vision_model.encoder.layers.3.self_attn.q_proj.kernel` is the transpose of
`vision_model.encoder.layers.3.self_attn.q_proj.weight`; the patch embedding conv kernel is stored
[p, p, C, D] (Flax `Conv` layout, torch's [D, C, p, p] transposed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import ACTIVATIONS, DType, LayerNorm, Linear, MultiHeadAttention

# HF `CLIPVisionConfig` class defaults (ViT-B/32): what HF assumes for a field a config.json omits.
_HF_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
  """The fields of HF `CLIPVisionConfig` the network uses. Defaults: CLIP ViT-L/14 @224."""

  hidden_size: int = 1024
  intermediate_size: int = 4096
  num_hidden_layers: int = 24
  num_attention_heads: int = 16
  num_channels: int = 3
  image_size: int = 224
  patch_size: int = 14
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(f"CLIPVisionConfig: hidden_size={self.hidden_size} is not a multiple of "
                       f"num_attention_heads={self.num_attention_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"CLIPVisionConfig: hidden_act={self.hidden_act!r} is not supported, only {sorted(ACTIVATIONS)}")
    if self.image_size % self.patch_size:
      raise ValueError(f"CLIPVisionConfig: image_size={self.image_size} is not a multiple of "
                       f"patch_size={self.patch_size}")

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @classmethod
  def from_hf(cls, hf: dict[str, Any], source: str = "config") -> CLIPVisionConfig:
    """From an HF `CLIPVisionConfig` dict or a full `CLIPConfig` dict (its `vision_config` is read).

    Absent fields take HF's class defaults (ViT-B/32), as HF itself does when it reads the file.
    """
    model_type = hf.get("model_type")
    if model_type == "clip":
      hf, source = hf.get("vision_config") or {}, f"{source} (vision_config)"
    elif model_type not in (None, "clip_vision_model"):
      raise ValueError(f"{source}: model_type {model_type!r} is not a CLIP config ('clip' or 'clip_vision_model')")
    fields = {k: hf.get(k, default) for k, default in _HF_DEFAULTS.items()}
    for k in ("image_size", "patch_size"):
      if not isinstance(fields[k], int):
        raise ValueError(f"{source}: {k}={fields[k]!r} is not supported, only a single int (square images)")
    try:
      return cls(**fields)
    except ValueError as e:
      raise ValueError(f"{source}: {e}") from None

  def to_hf(self) -> dict[str, Any]:
    """An HF-loadable `config.json` dict (model_type clip_vision_model)."""
    return {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], **dataclasses.asdict(self)}


class CLIPVisionEmbeddings(nnx.Module):
  """Patch conv (no bias) + a class token + learned positions. Corresponds to HF `CLIPVisionEmbeddings`."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    d, p = cfg.hidden_size, cfg.patch_size
    self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (d,), param_dtype) * d**-0.5)
    self.patch_embedding = nnx.Conv(cfg.num_channels, d, kernel_size=(p, p), strides=(p, p), padding="VALID",
                                    use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.position_embedding = nnx.Embed(cfg.num_patches + 1, d, dtype=dtype, param_dtype=param_dtype,
                                        embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.image_size, self.num_channels, self.dtype = cfg.image_size, cfg.num_channels, dtype

  def __call__(self, pixel_values: jax.Array) -> jax.Array:  # [B, C, H, W] -> [B, 1 + N, D]
    b, c, h, w = pixel_values.shape
    if (c, h, w) != (self.num_channels, self.image_size, self.image_size):
      raise ValueError(f"CLIPVisionEmbeddings: pixel_values of shape {pixel_values.shape}, expected "
                       f"[B, {self.num_channels}, {self.image_size}, {self.image_size}]")
    patches = self.patch_embedding(pixel_values.astype(self.dtype).transpose(0, 2, 3, 1))  # [B, H/p, W/p, D]
    patches = patches.reshape(b, -1, patches.shape[-1])  # [B, N, D], row-major like HF's flatten(2)
    cls = jnp.broadcast_to(self.class_embedding[...].astype(self.dtype), (b, 1, patches.shape[-1]))  # [B, 1, D]
    x = jnp.concatenate([cls, patches], axis=1)
    return x + self.position_embedding.embedding[...].astype(self.dtype)


class CLIPMLP(nnx.Module):
  """fc2(act(fc1(x))). Corresponds to HF `CLIPMLP`."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.fc1 = Linear(cfg.hidden_size, cfg.intermediate_size, **kw)
    self.fc2 = Linear(cfg.intermediate_size, cfg.hidden_size, **kw)
    self.act = ACTIVATIONS[cfg.hidden_act]

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
  """Pre-norm block. Corresponds to HF `CLIPEncoderLayer`."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.self_attn = MultiHeadAttention(cfg.hidden_size, cfg.num_attention_heads, rngs=rngs, **kw)  # HF `CLIPAttention`
    self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.mlp = CLIPMLP(cfg, rngs=rngs, **kw)
    self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, D]
    x = x + self.self_attn(self.layer_norm1(x))
    return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
  """The layer stack. Corresponds to HF `CLIPEncoder`."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    self.layers = nnx.List([CLIPEncoderLayer(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                            for _ in range(cfg.num_hidden_layers)])


class CLIPVisionTransformer(nnx.Module):
  """Embeddings, `pre_layrnorm` (HF's spelling), encoder, `post_layernorm`. The `vision_model` of HF `CLIPModel`."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.embeddings = CLIPVisionEmbeddings(cfg, rngs=rngs, **kw)
    self.pre_layrnorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)
    self.encoder = CLIPEncoder(cfg, rngs=rngs, **kw)
    self.post_layernorm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, **kw)


class CLIPVisionModel(nnx.Module):
  """Corresponds to HF `CLIPVisionModel` (parameters under `vision_model`, as in `CLIPModel` checkpoints)."""

  def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32):
    self.config = cfg
    self.vision_model = CLIPVisionTransformer(cfg, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, pixel_values: jax.Array, *, up_to: int | None = None) -> tuple[jax.Array, ...]:
    """Hidden states, indexed like HF's `output_hidden_states=True`: each [B, 1 + N, D], in the compute dtype.

    pixel_values float32 [B, C, H, W] as the HF image processor gives them. Index 0 is the embeddings
    after `pre_layrnorm` (the input of layer 0); index i is the output of layer i (1-based); the last
    is HF's `last_hidden_state` (no `post_layernorm`: that only feeds `pooler_output`).

    up_to: index of the last hidden state needed, negative counting from the end of the full run
      (e.g. -2 for the penultimate layer, as LLaVA-style feature selection uses). The layers after it
      are skipped and the tuple ends there: it has `up_to + 1` entries (for `up_to >= 0`), each equal
      to the full run's entry at the same index. None runs every layer.
    """
    n_states = self.config.num_hidden_layers + 1
    if up_to is not None and not -n_states <= up_to < n_states:
      raise ValueError(f"CLIPVisionModel: up_to={up_to} is out of range for {n_states} hidden states")
    n_layers = n_states - 1 if up_to is None else up_to % n_states
    vm = self.vision_model
    x = vm.pre_layrnorm(vm.embeddings(pixel_values))  # [B, T, D]
    states = [x]
    for layer in vm.encoder.layers[:n_layers]:
      x = layer(x)
      states.append(x)
    return tuple(states)

  def pooler_output(self, last_hidden_state: jax.Array) -> jax.Array:
    """`post_layernorm` of the class token: [B, T, D] -> [B, D]. HF's `pooler_output`."""
    return self.vision_model.post_layernorm(last_hidden_state[:, 0])


def abstract_model(cfg: CLIPVisionConfig, dtype: DType = jnp.float32,
                   param_dtype: DType = jnp.float32) -> CLIPVisionModel:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: CLIPVisionModel(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype))
