"""Qwen2 decoder parity against transformers' PyTorch `Qwen2ForCausalLM` (through the real converter)."""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import lora, qwen2
from nanoemox_jax.checkpoints.params_io import param_count
from tests.hf_models import random_qwen2, save_and_convert, tiny_qwen2_config

# (tied, heads, kv heads): q/kv ratios 1, 2 and 6.
CONFIGS = [(True, 6, 6), (False, 6, 3), (True, 6, 1), (False, 4, 2)]


def left_padded(lengths: list[int], vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rs = np.random.RandomState(seed)
  t = max(lengths)
  ids, mask = np.zeros((len(lengths), t), np.int64), np.zeros((len(lengths), t), np.int64)
  for row, n in enumerate(lengths):
    ids[row, t - n:], mask[row, t - n:] = rs.randint(1, vocab, n), 1
  return ids, mask


def hf_positions(mask: np.ndarray) -> np.ndarray:
  """What HF `generate` passes: cumsum(mask) - 1 with pads at 1."""
  pos = mask.cumsum(-1) - 1
  return np.where(mask == 0, 1, pos)


@pytest.mark.parametrize("tied,heads,kv", CONFIGS)
def test_logits_match_hf(tmp_path, tied, heads, kv):
  cfg = tiny_qwen2_config(tie_word_embeddings=tied, num_attention_heads=heads, num_key_value_heads=kv)
  hf = random_qwen2(cfg)
  model = save_and_convert(hf, tmp_path)
  assert (model.lm_head is None) == tied
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(model)))  # not numpy: no copy per call
  ids, mask = left_padded([13, 7, 1], cfg.vocab_size)  # odd lengths, left padding, a 1-token row
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
             position_ids=torch.tensor(hf_positions(mask))).logits.numpy()
  ours = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)))
  assert ours.dtype == np.float32 and ours.shape == ref.shape
  valid = mask.astype(bool)
  np.testing.assert_allclose(ours[valid], ref[valid], atol=1e-4, rtol=0)


def test_unpadded_defaults_and_embeddings_input(tmp_path):
  cfg = tiny_qwen2_config()
  hf = random_qwen2(cfg, seed=1)
  model = save_and_convert(hf, tmp_path)
  ids = np.random.RandomState(1).randint(0, cfg.vocab_size, (2, 9))
  with torch.no_grad():
    ref = hf(torch.tensor(ids)).logits.numpy()  # HF default: positions arange(T), no mask
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), ref, atol=1e-4, rtol=0)
  embeds = model.embed(jnp.asarray(ids))
  np.testing.assert_allclose(np.asarray(model(inputs_embeds=embeds)), ref, atol=1e-4, rtol=0)
  # explicit position ids are honoured: shifting them changes RoPE exactly like HF
  pos = np.arange(9)[None].repeat(2, 0) + 5
  with torch.no_grad():
    ref_shift = hf(torch.tensor(ids), position_ids=torch.tensor(pos)).logits.numpy()
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids), position_ids=jnp.asarray(pos))), ref_shift,
                             atol=1e-4, rtol=0)


def test_bf16_compute_tracks_fp32(tmp_path):
  cfg = tiny_qwen2_config()
  model32 = save_and_convert(random_qwen2(cfg), tmp_path)
  model16 = load_part("llm", tmp_path / "jax", dtype=jnp.bfloat16)
  ids = jnp.asarray(np.random.RandomState(2).randint(0, cfg.vocab_size, (2, 11)), jnp.int32)
  a, b = np.asarray(model32(ids)), np.asarray(model16(ids))
  assert b.dtype == np.float32
  err = np.abs(a - b).max() / np.abs(a).max()
  assert 0 < err < 0.05, err  # bf16 differs (it really ran in bf16) but stays close


def test_kv_cache_decode_equals_full_forward(tmp_path):
  cfg = tiny_qwen2_config(num_attention_heads=6, num_key_value_heads=2)
  model = save_and_convert(random_qwen2(cfg), tmp_path)
  ids, mask = left_padded([12, 5, 9], cfg.vocab_size, seed=3)
  ids, mask = jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32)
  full = np.asarray(model(ids, mask))
  prefill = 4  # the first 4 slots at once (row 1 is still all padding), then one token per step
  cache = qwen2.KVCache.zeros(model.config, 3, 16, jnp.float32)
  hidden, cache = model.hidden_states(ids[:, :prefill], mask[:, :prefill], cache=cache)
  steps = [np.asarray(model.logits(hidden))]
  for t in range(prefill, ids.shape[1]):
    hidden, cache = model.hidden_states(ids[:, t:t + 1], mask[:, t:t + 1], cache=cache)
    steps.append(np.asarray(model.logits(hidden)))
  cached = np.concatenate(steps, axis=1)
  valid = np.asarray(mask).astype(bool)
  np.testing.assert_allclose(cached[valid], full[valid], atol=1e-5, rtol=0)
  assert int(cache.index) == ids.shape[1]


def test_full_config_parameter_count_matches_hf_meta():
  hf_cfg = transformers.Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                                    num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                                    max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                                    tie_word_embeddings=True)
  with torch.device("meta"):
    hf = transformers.Qwen2ForCausalLM(hf_cfg)
  expected = sum(p.numel() for p in hf.parameters())
  cfg = qwen2.Qwen2Config.from_hf(hf_cfg.to_dict())
  assert cfg == qwen2.Qwen2Config()  # the defaults are Qwen2.5-1.5B
  abstract = qwen2.abstract_model(cfg)
  ours = param_count(jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)))
  assert ours == expected == 1_543_714_304


def test_config_refuses_unsupported_fields():
  base = tiny_qwen2_config().to_dict()
  with pytest.raises(ValueError, match="use_sliding_window"):
    qwen2.Qwen2Config.from_hf(base | {"use_sliding_window": True})
  with pytest.raises(ValueError, match="yarn"):
    qwen2.Qwen2Config.from_hf(base | {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}})
  with pytest.raises(ValueError, match="num_key_value_heads"):
    qwen2.Qwen2Config.from_hf(base | {"num_attention_heads": 6, "num_key_value_heads": 4})


def test_attention_implementation_is_checked_by_name():
  with pytest.raises(ValueError, match="attention_implementation='flash' is not one of"):
    qwen2.Qwen2ForCausalLM(qwen2.Qwen2Config.from_hf(tiny_qwen2_config().to_dict()), rngs=nnx.Rngs(0),
                           attention_implementation="flash")


@functools.cache
def lora_dropout_steps(**options) -> tuple[list, list[int]]:
  """(loss, LoRA gradients) of two training-mode calls of a 4-layer model with LoRA dropout 0.25, and each dropout
  stream's count afterwards."""
  cfg = qwen2.Qwen2Config(vocab_size=211, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8)
  ids, mask = map(jnp.asarray, left_padded([9, 6], 211))
  model = qwen2.Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0), **options)
  lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8, dropout=0.25), rngs=nnx.Rngs(1))
  for i, layer in enumerate(lora.lora_layers(model)):
    layer.lora_b[...] = 0.1 * jax.random.normal(jax.random.key(i), layer.lora_b[...].shape)
  grad = nnx.jit(nnx.value_and_grad(lambda m: (m(ids, mask) ** 2).mean(), argnums=nnx.DiffState(0, nnx.LoRAParam)))
  steps = [grad(model) for _ in range(2)]
  return steps, [int(c[...]) for c in jax.tree.leaves(nnx.state(model, nnx.RngCount))]


@pytest.mark.parametrize("options", [dict(scan_layers=True), dict(remat_layers=True),
                                     dict(scan_layers=True, remat_layers=True)],
                         ids=["scan", "remat", "scan+remat"])
def test_scanned_and_rematerialised_layers_equal_the_loop(options):
  """Two training-mode gradient steps with LoRA dropout 0.25 on: the same losses and adapter gradients as the
  plain layer loop (same dropout masks: each layer's RNG streams advance as in the loop)."""
  (plain, plain_counts), (other, other_counts) = lora_dropout_steps(), lora_dropout_steps(**options)
  assert other_counts == plain_counts and set(plain_counts) == {2}
  for (loss, grads), (ref_loss, ref_grads) in zip(other, plain):
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  assert float(plain[0][0]) != float(plain[1][0])  # the weights did not change: dropout drew new masks


def test_scan_layers_refuses_layers_of_different_structure():
  cfg = qwen2.Qwen2Config(vocab_size=211, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8)
  model = qwen2.Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0), scan_layers=True)
  lora.apply_lora(model, lora.LoRAConfig(rank=4, targets=r"model\.layers\.0\..*q_proj"), rngs=nnx.Rngs(1))
  with pytest.raises(ValueError, match="layer 1 differs from layer 0"):
    model(jnp.zeros((1, 4), jnp.int32))
