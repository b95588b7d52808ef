"""Model presets: `full` (the paper), `official_code` (the authors' public code), `tiny` (tests),
`demo` (trains on a 2-core CPU in minutes). Each returns a frozen `NanoEmoXConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from nanoemox_jax.model import fields
from nanoemox_jax.model.clip_vision import CLIPVisionConfig
from nanoemox_jax.model.face import FaceXFormerConfig
from nanoemox_jax.model.fusion import FusionConfig
from nanoemox_jax.model.hubert import HubertConfig
from nanoemox_jax.model.lora import LoRAConfig
from nanoemox_jax.model.nanoemox import NanoEmoXConfig
from nanoemox_jax.model.qformer import QFormerConfig
from nanoemox_jax.model.qwen2 import Qwen2Config
from nanoemox_jax.model.swin import SwinConfig


def full() -> NanoEmoXConfig:
  """CLIP-L/14, HuBERT-L, FaceXFormer (Swin-B), Qwen2.5-1.5B; LoRA r=32, alpha=16 (paper)."""
  return NanoEmoXConfig()


def official_code() -> NanoEmoXConfig:
  """The authors' code where it differs from the paper: LoRA r=16, alpha=32, dropout 0.05; whole raw frames
  into the face encoder."""
  return dataclasses.replace(full(), lora=LoRAConfig(rank=16, alpha=32.0, dropout=0.05), face_input="raw_frames")


def _small(width: int, llm_layers: int, vocab: int, lora_rank: int) -> NanoEmoXConfig:
  """Every branch at a reduced size, same structure and layer taps scaled to the towers' depth."""
  clip = CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=4,
                          num_attention_heads=4, image_size=224, patch_size=32)
  hub = HubertConfig(hidden_size=width, num_hidden_layers=4, num_attention_heads=4, intermediate_size=2 * width,
                     conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
  face_cfg = FaceXFormerConfig(swin=SwinConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)),
                               decoder_hidden_size=32)
  q = QFormerConfig(num_query_tokens=8, hidden_size=width, num_hidden_layers=1, num_attention_heads=4,
                    intermediate_size=2 * width, encoder_hidden_size=width)
  llm_width = 2 * width
  llm = Qwen2Config(vocab_size=vocab, hidden_size=llm_width, intermediate_size=2 * llm_width,
                    num_hidden_layers=llm_layers, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=llm_width // 4, max_position_embeddings=4096)
  return NanoEmoXConfig(
      llm=llm, clip=clip, hubert=hub, face=face_cfg, video_qformer=q, audio_qformer=q,
      fusion=FusionConfig(audio_dim=width, visual_dim=width, hidden_dim=width, num_heads=4, llm_dim=llm_width),
      lora=LoRAConfig(rank=lora_rank, alpha=2.0 * lora_rank), audio_layers=(2, 3, 4), visual_layers=(2, 3, 4),
      face_queries=4, face_heads=4, face_mlp_hidden=2 * width)


def tiny() -> NanoEmoXConfig:
  """For tests: seconds per forward on a CPU. Vocabulary 151,936 so the real tokenizer's ids fit."""
  return _small(width=32, llm_layers=2, vocab=151936, lora_rank=4)


def demo() -> NanoEmoXConfig:
  """For the CPU demo: small enough to train through P2E in minutes, large enough to learn the labels.

  Its Q-Formers start at init std 0.2 instead of BLIP-2's 0.02: with the real model they start from
  pretrained weights, while at 0.02 a random Q-Former's cross-attention is ~1% of its layer-normed queries
  and passes only ~0.1% of the towers' between-sample variation on (0.2: ~10%).
  """
  cfg = _small(width=64, llm_layers=2, vocab=151936, lora_rank=8)
  q = dataclasses.replace(cfg.video_qformer, initializer_range=0.2)
  return dataclasses.replace(cfg, video_qformer=q, audio_qformer=q)


PRESETS = {"full": full, "official_code": official_code, "tiny": tiny, "demo": demo}


def get(name: str, overrides: Mapping[str, Any] | None = None) -> NanoEmoXConfig:
  """Preset `name` with nested `overrides` ({"fusion": {"weighting": "average"}, "modalities": "AVFT"})."""
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
  return fields.replace(PRESETS[name](), overrides or {}, where=f"preset {name}")
