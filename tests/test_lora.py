"""LoRA against an HF PyTorch model that carries the merged weights W + (alpha/r) B A."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from nanoemox_jax.model import lora
from tests.hf_models import random_qwen2, save_and_convert, tiny_qwen2_config

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture
def models(tmp_path):
  hf = random_qwen2(tiny_qwen2_config(tie_word_embeddings=False))
  return hf, save_and_convert(hf, tmp_path)


def randomise_adapters(model, seed: int) -> None:
  key = jax.random.key(seed)
  for layer in lora.lora_layers(model):
    key, ka, kb = jax.random.split(key, 3)
    layer.lora_a[...] = 0.2 * jax.random.normal(ka, layer.lora_a[...].shape)
    layer.lora_b[...] = 0.2 * jax.random.normal(kb, layer.lora_b[...].shape)


def test_adapters_sit_beside_base_kernels(models):
  _, model = models
  base_paths = {p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  adapted = lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8), rngs=nnx.Rngs(0))
  assert len(adapted) == 2 * len(TARGETS)
  assert all(p.rsplit(".", 1)[-1] in TARGETS for p in adapted)
  flat = {p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  lora_paths = {p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))}
  assert len(lora_paths) == 2 * len(adapted)
  assert base_paths <= flat  # every base kernel keeps its path
  assert ("model", "layers", 0, "self_attn", "q_proj", "kernel") in flat
  assert ("model", "layers", 0, "self_attn", "q_proj", "lora_a") in lora_paths
  with pytest.raises(ValueError, match="no Linear layer matches"):
    lora.apply_lora(model, lora.LoRAConfig(targets=r".*\.nothing"), rngs=nnx.Rngs(0))


def test_zero_b_leaves_logits_unchanged(models):
  _, model = models
  ids = jnp.asarray(np.random.RandomState(0).randint(0, 211, (2, 9)), jnp.int32)
  before = np.asarray(model(ids))
  lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8, dropout=0.1), rngs=nnx.Rngs(0))
  model.eval()
  np.testing.assert_array_equal(np.asarray(model(ids)), before)


@pytest.mark.parametrize("rank,alpha", [(4, 8.0), (8, 2.0)])
def test_random_adapters_equal_hf_with_merged_weights(models, rank, alpha):
  hf, model = models
  lora.apply_lora(model, lora.LoRAConfig(rank=rank, alpha=alpha), rngs=nnx.Rngs(0))
  randomise_adapters(model, seed=rank)
  model.eval()
  with torch.no_grad():  # torch weight [out, in] += (alpha / r) * (A B)^T
    for path, layer in nnx.iter_modules(model):
      if not isinstance(layer, lora.LoRALinear):
        continue
      torch_name = ".".join(map(str, path)) + ".weight"
      delta = (alpha / rank) * np.asarray(layer.lora_a[...]) @ np.asarray(layer.lora_b[...])
      hf.get_parameter(torch_name).add_(torch.from_numpy(delta.T.copy()))
  ids = np.random.RandomState(1).randint(0, 211, (2, 10))
  with torch.no_grad():
    ref = hf(torch.tensor(ids)).logits.numpy()
  ours = np.asarray(model(jnp.asarray(ids, jnp.int32)))
  assert np.abs(ref).max() > 0.1
  np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_merge_equals_unmerged_forward_and_unmerge_restores(models):
  _, model = models
  lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=16), rngs=nnx.Rngs(0))
  randomise_adapters(model, seed=3)
  model.eval()
  ids = jnp.asarray(np.random.RandomState(2).randint(0, 211, (3, 7)), jnp.int32)
  kernel_before = np.asarray(model.model.layers[1].mlp.down_proj.kernel[...])
  unmerged = np.asarray(model(ids))
  lora.merge(model)
  assert all(layer.merged for layer in lora.lora_layers(model))
  np.testing.assert_allclose(np.asarray(model(ids)), unmerged, atol=1e-5, rtol=0)
  lora.unmerge(model)
  np.testing.assert_allclose(np.asarray(model.model.layers[1].mlp.down_proj.kernel[...]), kernel_before, atol=1e-6)
  np.testing.assert_allclose(np.asarray(model(ids)), unmerged, atol=1e-5, rtol=0)


def test_dropout_is_active_in_training_mode(models):
  _, model = models
  lora.apply_lora(model, lora.LoRAConfig(rank=4, alpha=8, dropout=0.5), rngs=nnx.Rngs(0))
  randomise_adapters(model, seed=5)
  ids = jnp.asarray(np.random.RandomState(3).randint(0, 211, (2, 6)), jnp.int32)
  model.train()
  a, b = np.asarray(model(ids)), np.asarray(model(ids))
  model.eval()
  c, d = np.asarray(model(ids)), np.asarray(model(ids))
  assert np.abs(a - b).max() > 1e-3  # fresh dropout masks per call
  np.testing.assert_array_equal(c, d)
