"""CLIP vision tower parity against transformers' PyTorch `CLIPVisionModel` / `CLIPModel`, and `converters.clip`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from converters.clip import convert_clip
from converters.common import ConversionError, read_checkpoint
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import clip_vision
from nanoemox_jax.checkpoints.params_io import param_count
from tests.test_convert_qwen2 import edited_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LAYERS = 3


def tiny_vision_config(**overrides) -> transformers.CLIPVisionConfig:
  kw = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=LAYERS,
            num_attention_heads=4, layer_norm_eps=1e-5, attn_implementation="eager")
  kw.update(overrides)
  return transformers.CLIPVisionConfig(**kw)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Norm weights away from 1 and every bias away from 0 (HF initialises them to 1 and 0), in eval mode."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith(".weight"):
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
      elif name.endswith(".bias"):
        p.copy_(0.1 * torch.randn_like(p))
  return model.eval()


def random_vision_model(config: transformers.CLIPVisionConfig, seed: int = 0) -> transformers.CLIPVisionModel:
  torch.manual_seed(seed)
  return perturbed(transformers.CLIPVisionModel(config), seed)


def pixels(batch: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
  return np.random.RandomState(seed).randn(batch, 3, size, size).astype(np.float32)


def hf_outputs(vision: torch.nn.Module, px: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
  """All hidden states and the pooler output of an HF vision tower."""
  with torch.no_grad():
    out = vision(pixel_values=torch.tensor(px), output_hidden_states=True)
  return [h.float().numpy() for h in out.hidden_states], out.pooler_output.float().numpy()


def assert_states_close(ours: tuple[jax.Array, ...], ref: list[np.ndarray], atol: float = 1e-5) -> None:
  assert len(ours) == len(ref)
  for i, (a, b) in enumerate(zip(ours, ref)):
    assert a.shape == b.shape, (i, a.shape, b.shape)
    np.testing.assert_allclose(np.asarray(a), b, atol=atol, rtol=0, err_msg=f"hidden state {i}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[transformers.CLIPVisionModel, Path]:
  """A tiny random HF `CLIPVisionModel`, saved by transformers 5 (unprefixed keys) and converted."""
  tmp = tmp_path_factory.mktemp("clip")
  hf = random_vision_model(tiny_vision_config())
  hf.save_pretrained(tmp / "hf")
  convert_clip(tmp / "hf", tmp / "jax")
  return hf, tmp


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_every_hidden_state_matches_hf(tmp_path, act):
  hf = random_vision_model(tiny_vision_config(hidden_act=act), seed=1)
  hf.save_pretrained(tmp_path / "hf")
  convert_clip(tmp_path / "hf", tmp_path / "jax")
  model = load_part("clip", tmp_path / "jax")
  assert model.config.hidden_act == act
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(model)))
  px = pixels(seed=1)
  ref, ref_pooled = hf_outputs(hf, px)
  ours = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(px))
  assert len(ours) == LAYERS + 1 and ours[0].shape == (2, 1 + 16, 32) and ours[0].dtype == jnp.float32
  assert_states_close(ours, ref)
  np.testing.assert_allclose(np.asarray(model.pooler_output(ours[-1])), ref_pooled, atol=1e-4, rtol=0)


def test_full_clip_model_checkpoint(tmp_path):
  text = dict(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2,
              max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=1)
  config = transformers.CLIPConfig(text_config=text, vision_config=tiny_vision_config().to_dict(), projection_dim=8)
  torch.manual_seed(2)
  hf = perturbed(transformers.CLIPModel(config), seed=2)
  hf.save_pretrained(tmp_path / "hf")
  convert_clip(tmp_path / "hf", tmp_path / "jax")
  report = json.loads((tmp_path / "jax" / "conversion.json").read_text())
  non_vision = sorted(k for k in read_checkpoint(tmp_path / "hf") if not k.startswith("vision_model."))
  assert sorted(report["ignored"]) == non_vision
  assert {"logit_scale", "text_projection.weight", "visual_projection.weight"} <= set(non_vision)
  assert report["converted"] == sum(1 for _ in hf.vision_model.parameters())
  assert json.loads((tmp_path / "jax" / "config.json").read_text())["model_type"] == "clip_vision_model"
  px = pixels(seed=2)
  ref, _ = hf_outputs(hf.vision_model, px)
  assert_states_close(load_part("clip", tmp_path / "jax")(jnp.asarray(px)), ref)


def test_legacy_prefixed_pytorch_bin_with_position_ids(tmp_path, converted):
  """A transformers-4 `CLIPVisionModel` `.bin`: `vision_model.` keys plus the `position_ids` buffer."""
  hf, _ = converted
  state = {f"vision_model.{k}": v for k, v in hf.state_dict().items()}
  state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
  (tmp_path / "hf").mkdir()
  torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
  (tmp_path / "hf" / "config.json").write_text(hf.config.to_json_string())
  convert_clip(tmp_path / "hf" / "pytorch_model.bin", tmp_path / "jax")
  assert json.loads((tmp_path / "jax" / "conversion.json").read_text())["ignored"] == [
      "vision_model.embeddings.position_ids"]
  px = pixels(seed=3)
  assert_states_close(load_part("clip", tmp_path / "jax")(jnp.asarray(px)), hf_outputs(hf, px)[0])


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("encoder.layers.1.mlp.fc1.weight"),
     r"missing tensor for vision_model\.encoder\.layers\.1\.mlp\.fc1\.kernel"),
    (lambda t: t.update({"encoder.layers.0.self_attn.rotary.weight": np.zeros(3, np.float32)}),
     r"unexpected tensor encoder\.layers\.0\.self_attn\.rotary\.weight"),
    (lambda t: t.update({f"encoder.layers.{LAYERS}.layer_norm1.weight": np.zeros(32, np.float32)}),
     rf"unexpected tensor encoder\.layers\.{LAYERS}\.layer_norm1\.weight .*which the model lacks"),
    (lambda t: t.update({"embeddings.position_embedding.weight": np.zeros((10, 32), np.float32)}),
     r"mis-shaped tensor embeddings\.position_embedding\.weight: checkpoint \(10, 32\), "
     r"model vision_model\.embeddings\.position_embedding\.embedding expects \(17, 32\)"),
    (lambda t: t.update({"encoder.layers.2.self_attn.out_proj.weight": np.zeros((32, 16), np.float32)}),
     r"mis-shaped tensor encoder\.layers\.2\.self_attn\.out_proj\.weight: checkpoint \(32, 16\), "
     r"model vision_model\.encoder\.layers\.2\.self_attn\.out_proj\.kernel expects \(32, 32\) after transposing"),
])
def test_refuses_bad_checkpoints(tmp_path, converted, edit, message):
  src = edited_checkpoint(tmp_path, converted[0], edit)
  with pytest.raises(ConversionError, match=message):
    convert_clip(src, tmp_path / "jax")
  assert not (tmp_path / "jax").exists()  # nothing half-written


def test_up_to_stops_early_with_the_same_states(converted):
  model = load_part("clip", converted[1] / "jax")
  px = jnp.asarray(pixels(seed=4))
  full = model(px)
  for up_to, n in [(-2, LAYERS), (1, 2), (0, 1), (LAYERS, LAYERS + 1), (-(LAYERS + 1), 1)]:
    part = model(px, up_to=up_to)
    assert len(part) == n, up_to
    for a, b in zip(part, full):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(np.asarray(nnx.jit(lambda m, x: m(x, up_to=-2))(model, px)[-1]), np.asarray(full[-2]),
                             atol=1e-6, rtol=0)
  for bad in (LAYERS + 1, -(LAYERS + 2)):
    with pytest.raises(ValueError, match="up_to"):
      model(px, up_to=bad)
  with pytest.raises(ValueError, match=r"expected \[B, 3, 32, 32\]"):
    model(jnp.zeros((1, 3, 24, 24)))


def test_bf16_compute_tracks_fp32(converted):
  hf, tmp = converted
  model16 = load_part("clip", tmp / "jax", dtype=jnp.bfloat16)
  px = pixels(seed=5)
  ours = model16(jnp.asarray(px))
  assert ours[-1].dtype == jnp.bfloat16
  ref = hf_outputs(hf, px)[0][-1]
  err = np.abs(np.asarray(ours[-1], np.float32) - ref).max() / np.abs(ref).max()
  assert 0 < err < 0.05, err  # bf16 differs (it really ran in bf16) but stays close


def test_full_config_parameter_count_matches_hf_meta():
  hf_cfg = transformers.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                         num_attention_heads=16, image_size=224, patch_size=14)
  with torch.device("meta"):
    hf = transformers.CLIPVisionModel(hf_cfg)
  expected = sum(p.numel() for p in hf.parameters())
  cfg = clip_vision.CLIPVisionConfig.from_hf(hf_cfg.to_dict())
  assert cfg == clip_vision.CLIPVisionConfig()  # the defaults are CLIP ViT-L/14 @224
  full = transformers.CLIPConfig(vision_config=hf_cfg.to_dict()).to_dict()
  assert clip_vision.CLIPVisionConfig.from_hf(full) == cfg  # a full CLIPConfig dict: its vision_config
  abstract = clip_vision.abstract_model(cfg)
  ours = param_count(jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)))
  assert ours == expected == 303_179_776


def test_config_defaults_round_trip_and_refusals():
  from_hf = clip_vision.CLIPVisionConfig.from_hf
  hf_default = transformers.CLIPVisionConfig()
  # A config.json that omits fields means HF's class defaults (ViT-B/32), not ours.
  assert from_hf(hf_default.to_diff_dict()) == from_hf(hf_default.to_dict())
  assert from_hf(hf_default.to_dict()).patch_size == hf_default.patch_size == 32
  cfg = from_hf(tiny_vision_config(hidden_act="gelu", layer_norm_eps=1e-6).to_dict())
  assert from_hf(transformers.CLIPVisionConfig.from_dict(cfg.to_hf()).to_dict()) == cfg
  base = tiny_vision_config().to_dict()
  for bad, message in [({"hidden_act": "tanh"}, "hidden_act"), ({"image_size": [32, 32]}, "image_size"),
                       ({"num_attention_heads": 5}, "num_attention_heads"), ({"patch_size": 5}, "patch_size"),
                       ({"model_type": "siglip_vision_model"}, "model_type")]:
    with pytest.raises(ValueError, match=message):
      from_hf(base | bad)


def test_cli_converts_to_bf16_and_reports_errors(tmp_path, converted):
  hf, tmp = converted
  run = subprocess.run([sys.executable, "-m", "converters.clip", "--src", str(tmp / "hf"), "--out",
                        str(tmp_path / "jax"), "--dtype", "bfloat16"], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  model = load_part("clip", tmp_path / "jax", param_dtype=jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.bfloat16)}
  px = pixels(seed=6)
  ours = np.asarray(model(jnp.asarray(px))[-1])
  ref = hf_outputs(hf, px)[0][-1]
  assert np.abs(ours - ref).max() / np.abs(ref).max() < 0.05
  bad = subprocess.run([sys.executable, "-m", "converters.clip", "--src", str(tmp_path / "nowhere"), "--out",
                        str(tmp_path / "bad")], cwd=ROOT, capture_output=True, text=True)
  assert bad.returncode == 2 and "nowhere: no such file or folder" in bad.stderr and "Traceback" not in bad.stderr
