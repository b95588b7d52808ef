"""Fusion experts against a PyTorch reference of the authors' `MultiScaleCrossModalFusion` structure."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from nanoemox_jax.model.fusion import FusionConfig, MultiScaleFusion
from tests.official_refs import TorchFusion


def copy_weights(ref: TorchFusion, llm_proj: nn.Linear, ours: MultiScaleFusion) -> None:
  t = lambda x: jnp.asarray(x.detach().numpy())
  lin = lambda dst, src: (dst.kernel.set_value(t(src.weight).T), dst.bias.set_value(t(src.bias)))
  lin(ours.audio_proj, ref.audio_proj)
  lin(ours.visual_proj, ref.visual_proj)
  lin(ours.llm_proj, llm_proj)
  for i, (att, ffn) in enumerate(zip(ref.cross_attns, ref.ffns)):
    d = att.embed_dim
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):  # packed in_proj = [q; k; v]
      getattr(ours.cross_attns[i], name).kernel.set_value(t(att.in_proj_weight[j * d:(j + 1) * d]).T)
      getattr(ours.cross_attns[i], name).bias.set_value(t(att.in_proj_bias[j * d:(j + 1) * d]))
    lin(ours.cross_attns[i].out_proj, att.out_proj)
    ours.ffns[i].norm.weight.set_value(t(ffn[0].weight))
    ours.ffns[i].norm.bias.set_value(t(ffn[0].bias))
    lin(ours.ffns[i].fc1, ffn[1])
    lin(ours.ffns[i].fc2, ffn[4])
  if ref.gate_mlp is not None:
    lin(ours.gate_mlp.fc1, ref.gate_mlp[0])
    lin(ours.gate_mlp.fc2, ref.gate_mlp[3])


@pytest.mark.parametrize("weighting,experts,ta,tv", [("gate", 3, 8, 8), ("average", 3, 8, 8), ("gate", 2, 5, 7)])
def test_matches_torch_reference(weighting, experts, ta, tv):
  torch.manual_seed(experts + ta)
  ref = TorchFusion(24, 20, 16, 4, experts, gate=weighting == "gate").eval()
  llm_proj = nn.Linear(16, 12)
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if "ffns" in name and name.endswith(".0.weight"):
        p.add_(0.2 * torch.randn_like(p))
      if "gate_mlp" in name:
        p.mul_(8.0)  # make the gate far from uniform
  ours = MultiScaleFusion(FusionConfig(audio_dim=24, visual_dim=20, hidden_dim=16, num_heads=4, num_experts=experts,
                                       weighting=weighting, llm_dim=12), rngs=nnx.Rngs(0))
  copy_weights(ref, llm_proj, ours)
  ours.eval()
  audio = np.random.RandomState(0).randn(3, experts, ta, 24).astype(np.float32)
  visual = np.random.RandomState(1).randn(3, experts, tv, 20).astype(np.float32)
  with torch.no_grad():
    fused, w_ref = ref([torch.from_numpy(audio[:, i]) for i in range(experts)],
                       [torch.from_numpy(visual[:, i]) for i in range(experts)])
    token_ref = llm_proj(fused.mean(1))[:, None]
  token, w = ours(jnp.asarray(audio), jnp.asarray(visual))
  assert token.shape == (3, 1, 12) and w.shape == (3, experts)
  np.testing.assert_allclose(np.asarray(w), w_ref.numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(token), token_ref.numpy(), atol=1e-5)
  np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)
  if weighting == "gate":
    assert np.abs(np.asarray(w) - 1.0 / experts).max() > 0.05  # the gate really weighs experts


def test_bad_config_and_inputs_are_named():
  with pytest.raises(ValueError, match="weighting"):
    FusionConfig(weighting="max")
  model = MultiScaleFusion(FusionConfig(audio_dim=8, visual_dim=8, hidden_dim=8, num_heads=2, llm_dim=4),
                           rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="expected 3 layer slices"):
    model(jnp.zeros((1, 2, 8, 8)), jnp.zeros((1, 3, 8, 8)))
