"""Q-Former parity against transformers' PyTorch `Blip2QFormerModel` (same structure as LAVIS' Q-Former)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from converters.common import Rule, convert, flatten_paths, transpose
from nanoemox_jax.checkpoints.params_io import param_count
from nanoemox_jax.model.qformer import QFormer, QFormerConfig

# HF Blip2QFormerModel keys -> our paths: Linear `weight` becomes a transposed `kernel`; norms keep `weight`.
HF_RULES = (
    Rule(r"(.*(?:LayerNorm|layernorm))\.(weight|bias)", r"\1.\2"),
    Rule(r"(.*)\.bias", r"\1.bias"),
    Rule(r"(.*)\.weight", r"\1.kernel", transpose),
    Rule(r"query_tokens", "query_tokens"),
)


def load_hf_weights(model: QFormer, state: dict[str, torch.Tensor], query_tokens: np.ndarray) -> None:
  expected = flatten_paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  tensors = {k: v.numpy() for k, v in state.items()} | {"query_tokens": query_tokens}
  params, _ = convert(tensors, HF_RULES, expected, source="hf-blip2-qformer")
  target = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(target, params)
  nnx.update(model, target)


@pytest.mark.parametrize("layers,queries,source_len,masked", [(2, 5, 7, False), (1, 3, 8, True)])
def test_matches_hf_blip2_qformer(layers, queries, source_len, masked):
  torch.manual_seed(layers)
  hf_cfg = transformers.Blip2QFormerConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                           intermediate_size=48, cross_attention_frequency=1, encoder_hidden_size=24)
  hf = transformers.Blip2QFormerModel(hf_cfg).eval()
  with torch.no_grad():
    for name, p in hf.named_parameters():  # non-trivial norms and biases
      if "LayerNorm" in name or "layernorm" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  cfg = QFormerConfig(num_query_tokens=queries, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      intermediate_size=48, encoder_hidden_size=24)
  ours = QFormer(cfg, rngs=nnx.Rngs(0))
  query = np.random.RandomState(0).randn(1, queries, 32).astype(np.float32)
  load_hf_weights(ours, hf.state_dict(), query)
  ours.eval()
  states = np.random.RandomState(1).randn(2, source_len, 24).astype(np.float32)
  mask = np.ones((2, source_len), np.int64)
  if masked:
    mask[1, -3:] = 0
  with torch.no_grad():
    ref = hf(query_embeds=torch.from_numpy(query).expand(2, -1, -1), encoder_hidden_states=torch.from_numpy(states),
             encoder_attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
  out = np.asarray(ours(jnp.asarray(states), jnp.asarray(mask)))
  assert out.shape == (2, queries, 32)
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
  if masked:  # masked encoder slots really are ignored
    changed = states.copy()
    changed[1, -3:] = 100.0
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(changed), jnp.asarray(mask)))[1], out[1], atol=1e-5)


def test_full_size_parameter_count_matches_hf():
  hf_cfg = transformers.Blip2QFormerConfig(hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                                           intermediate_size=3072, cross_attention_frequency=1, encoder_hidden_size=1024)
  with torch.device("meta"):
    hf = transformers.Blip2QFormerModel(hf_cfg)
  abstract = nnx.eval_shape(lambda: QFormer(QFormerConfig(), rngs=nnx.Rngs(0)))
  ours = param_count(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
  assert ours == sum(p.numel() for p in hf.parameters()) + 32 * 768  # + the learned queries


def test_dropout_only_in_training():
  model = QFormer(QFormerConfig(num_query_tokens=4, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                                encoder_hidden_size=16), rngs=nnx.Rngs(0))
  states = jnp.asarray(np.random.RandomState(2).randn(2, 5, 16), jnp.float32)
  model.train()
  assert np.abs(np.asarray(model(states)) - np.asarray(model(states))).max() > 1e-3
  model.eval()
  np.testing.assert_array_equal(np.asarray(model(states)), np.asarray(model(states)))
