"""FaceXFormer face encoder: Swin parity against torchvision, the fusion against a PyTorch reference written
here, and `converters.facexformer` (FaceXFormer's `model.pt` layout, strict refusals, the CLI)."""

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
import torchvision
from flax import nnx
from torchvision.models.swin_transformer import SwinTransformer

from converters.common import ConversionError
from converters.facexformer import convert_facexformer
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import face, swin
from nanoemox_jax.checkpoints.params_io import param_count
from tests.official_refs import TorchFaceXFormer

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
HIDDEN = 32  # FaceXFormer's is 256; the converter reads it from the shapes
DECODER = {"face_decoder.landmarks_token.weight": (1, HIDDEN),  # task decoder keys the converter skips
           "face_decoder.output_upscaling.0.weight": (HIDDEN, 8, 2, 2),
           "pe_layer.positional_encoding_gaussian_matrix": (2, HIDDEN // 2)}


def tiny_reference(seed: int = 0) -> TorchFaceXFormer:
  """Random tiny Swin (no stochastic depth) + fusion, with LayerNorms and biases moved away from 1 and 0."""
  torch.manual_seed(seed)
  tv = SwinTransformer(patch_size=[4, 4], window_size=[7, 7], stochastic_depth_prob=0.0, **TINY)
  ref = TorchFaceXFormer(tv, HIDDEN)
  with torch.no_grad():
    for name, p in ref.named_parameters():
      if p.ndim == 1:  # LayerNorm weights and biases, Linear and conv biases
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
  return ref.eval()


def save_model_pt(path: Path, state_dict: dict[str, torch.Tensor]) -> Path:
  """FaceXFormer's checkpoint layout: the whole state dict (task decoder included) under `state_dict_backbone`."""
  decoder = {k: torch.randn(shape) for k, shape in DECODER.items()}
  torch.save({"state_dict_backbone": state_dict | decoder, "epoch": 7}, path)
  return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[TorchFaceXFormer, Path]:
  tmp = tmp_path_factory.mktemp("facexformer")
  ref = tiny_reference()
  convert_facexformer(save_model_pt(tmp / "model.pt", ref.state_dict()), tmp / "jax")
  return ref, tmp / "jax"


def run(model: face.FaceXFormerEncoder, px: np.ndarray) -> face.FaceFeatures:
  return nnx.jit(lambda m, x: m(x))(model, jnp.asarray(px))


# 112x160: stages 28x40, 14x20, 7x10, 4x5: windows padded, one axis unshifted, odd sizes merged
@pytest.mark.parametrize("size", [(224, 224), (112, 160)])
def test_stages_and_face_vectors_match_pytorch(converted, size):
  ref, out_dir = converted
  model = load_part("face", out_dir)
  px = np.random.RandomState(sum(size)).randn(2, 3, *size).astype(np.float32)
  with torch.no_grad():
    stages, pooled = ref(torch.tensor(px))
    head_features = ref.backbone(torch.tensor(px))
  ours = run(model, px)
  assert len(ours.stages) == 4
  for i, (a, b) in enumerate(zip(ours.stages, stages)):
    assert a.shape == b.shape, (i, a.shape, b.shape)
    np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=1e-4, rtol=0, err_msg=f"stage {i + 1}")
  np.testing.assert_allclose(np.asarray(model.backbone.pooled(ours.stages[-1])), head_features.numpy(), atol=1e-4,
                             rtol=0)
  assert ours.pooled.shape == (2, HIDDEN)
  np.testing.assert_allclose(np.asarray(ours.pooled), pooled.numpy(), atol=1e-4, rtol=0)


def test_bf16_compute_tracks_fp32(converted):
  ref, out_dir = converted
  px = np.random.RandomState(5).randn(1, 3, 64, 64).astype(np.float32)
  with torch.no_grad():
    a = ref(torch.tensor(px))[1].numpy()
  b = run(load_part("face", out_dir, dtype=jnp.bfloat16), px).pooled
  assert b.dtype == jnp.bfloat16
  err = np.abs(a - np.asarray(b, np.float32)).max() / np.abs(a).max()
  assert 0 < err < 0.05, err  # bf16 differs (it really ran in bf16) but stays close


def test_conversion_reads_sizes_and_counts_skipped_keys(converted):
  ref, out_dir = converted
  cfg = face.FaceXFormerConfig.from_dict(json.loads((out_dir / "config.json").read_text()))
  assert cfg == face.FaceXFormerConfig(swin=swin.SwinConfig(window_size=7, patch_size=4, **TINY),
                                       decoder_hidden_size=HIDDEN)
  report = json.loads((out_dir / "conversion.json").read_text())
  buffers = [k for k in ref.state_dict() if k.endswith("relative_position_index")]
  assert len(buffers) == 8
  assert sorted(report["ignored"]) == sorted(buffers + list(DECODER))
  assert report["converted"] == len(list(ref.parameters()))


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.pop("backbone.0.3.1.attn.qkv.weight"),
     r"missing tensor for backbone\.features\.3\.1\.attn\.qkv\.kernel"),
    (lambda sd: sd.update({"linear_c.0.extra.weight": torch.zeros(3)}),
     r"unexpected tensor linear_c\.0\.extra\.weight"),
    (lambda sd: sd.update({"backbone.0.8.weight": torch.zeros(3)}), r"unexpected tensor backbone\.0\.8\.weight"),
    (lambda sd: sd.update({"linear_fuse.weight": torch.zeros(HIDDEN, 96, 1, 1)}),
     r"mis-shaped tensor linear_fuse\.weight: checkpoint \(32, 96, 1, 1\), model linear_fuse\.kernel expects "
     r"\(1, 1, 128, 32\)"),
    (lambda sd: sd.update({"backbone.0.3.1.attn.relative_position_bias_table": torch.zeros(169, 3)}),
     r"mis-shaped tensor backbone\.0\.3\.1\.attn\.relative_position_bias_table: checkpoint \(169, 3\), "
     r"model backbone\.features\.3\.1\.attn\.relative_position_bias_table expects \(169, 2\)"),
    (lambda sd: sd.pop("backbone.0.0.0.weight"), r"state_dict_backbone has no backbone\.0\.0\.0\.weight"),
])
def test_refuses_bad_checkpoints(tmp_path, edit, message):
  state_dict = dict(tiny_reference().state_dict())
  edit(state_dict)
  with pytest.raises(ConversionError, match=message):
    convert_facexformer(save_model_pt(tmp_path / "model.pt", state_dict), tmp_path / "jax")
  assert not (tmp_path / "jax").exists()  # nothing half-written


def test_refuses_other_files(tmp_path):
  torch.save({"state_dict": tiny_reference().state_dict()}, tmp_path / "model.pt")
  with pytest.raises(ConversionError, match=r"no 'state_dict_backbone' state dict .*\['state_dict'\]"):
    convert_facexformer(tmp_path / "model.pt", tmp_path / "jax")
  with pytest.raises(ConversionError, match=r"missing\.pt: no such file"):
    convert_facexformer(tmp_path / "missing.pt", tmp_path / "jax")


def test_cli_converts(tmp_path):
  ref = tiny_reference(seed=1)
  src = save_model_pt(tmp_path / "model.pt", ref.state_dict(keep_vars=True))  # parameters that require grad
  ok = subprocess.run([sys.executable, "-m", "converters.facexformer", "--src", str(src), "--out",
                       str(tmp_path / "jax")], cwd=ROOT, capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr
  model = load_part("face", tmp_path / "jax")  # the forward pass of this conversion is checked above
  np.testing.assert_array_equal(np.asarray(model.backbone.features[5][1].attn.qkv.kernel[...]),
                                ref.backbone[0][5][1].attn.qkv.weight.detach().numpy().T)
  np.testing.assert_array_equal(np.asarray(model.linear_fuse.kernel[...])[0, 0],
                                ref.linear_fuse.weight.detach().numpy()[:, :, 0, 0].T)


def test_full_size_parameter_count_matches_torchvision():
  with torch.device("meta"):
    tv = torchvision.models.swin_b()
    ref = TorchFaceXFormer(tv, 256)
  head = sum(p.numel() for p in tv.head.parameters())
  expected_swin = sum(p.numel() for p in tv.parameters()) - head
  abstract = face.abstract_model(face.FaceXFormerConfig())
  assert face.FaceXFormerConfig().swin == swin.SwinConfig()  # the defaults are swin_b
  ours_swin = param_count(nnx.state(swin.abstract_model(swin.SwinConfig()), nnx.Param))
  ours_face = param_count(nnx.state(abstract, nnx.Param))
  assert ours_swin == expected_swin == 86_743_224
  assert ours_face == sum(p.numel() for p in ref.parameters()) == expected_swin + 754_688
  stages = nnx.eval_shape(lambda m, x: m(x), abstract, jax.ShapeDtypeStruct((1, 3, 224, 224), jnp.float32)).stages
  assert [s.shape for s in stages] == [(1, 56, 56, 128), (1, 28, 28, 256), (1, 14, 14, 512), (1, 7, 7, 1024)]
