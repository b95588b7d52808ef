"""Tiny random transformers models, saved with `save_pretrained` and converted by the real CLI code."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from converters.qwen2 import convert_qwen2
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import qwen2


def tiny_qwen2_config(**overrides) -> transformers.Qwen2Config:
  kw = dict(vocab_size=211, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
            num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-6,
            tie_word_embeddings=True, attn_implementation="eager")
  kw.update(overrides)
  return transformers.Qwen2Config(**kw)


def random_qwen2(config: transformers.Qwen2Config, seed: int = 0) -> transformers.Qwen2ForCausalLM:
  """A random HF model with non-trivial norms and biases (HF initialises them to 1 and 0)."""
  torch.manual_seed(seed)
  model = transformers.Qwen2ForCausalLM(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("norm.weight"):
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      elif name.endswith(".bias"):
        p.copy_(0.1 * torch.randn_like(p))
  return model


def save_and_convert(hf_model: transformers.PreTrainedModel, tmp: Path) -> qwen2.Qwen2ForCausalLM:
  hf_model.save_pretrained(tmp / "hf")
  convert_qwen2(tmp / "hf", tmp / "jax")
  return load_part("llm", tmp / "jax")
