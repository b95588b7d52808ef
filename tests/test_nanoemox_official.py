"""`converters.nanoemox_official` against PyTorch re-expressions of the authors' heads, and `checkpoints.load`."""

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
from torch import nn

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.model.presets import tiny
from converters.common import ConversionError
from converters.nanoemox_official import convert_official, split_packed_attention
from nanoemox_jax.model import lora, nanoemox
from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.checkpoints.params_io import restore_into
from tests.official_refs import TorchFaceTemporal, TorchFusion, lavis_qformer_state, perturb_

ROOT = Path(__file__).resolve().parents[1]
CFG = tiny()
LORA_DIMS = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (64, 32), "self_attn.v_proj": (64, 32),
             "self_attn.o_proj": (64, 64), "mlp.gate_proj": (64, 128), "mlp.up_proj": (64, 128),
             "mlp.down_proj": (128, 64)}


def official_checkpoint() -> tuple[dict[str, torch.Tensor], dict[str, nn.Module]]:
  """A state dict with the authors' names for the tiny preset, and the torch modules behind it."""
  torch.manual_seed(0)
  q = transformers.Blip2QFormerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                      cross_attention_frequency=1, encoder_hidden_size=32)
  mods = dict(fusion=TorchFusion(32, 32, 32, 4, 3), llm_proj=nn.Linear(32, 64), face=TorchFaceTemporal(32, 4, 4, 64, 64),
              video_q=transformers.Blip2QFormerModel(q), audio_q=transformers.Blip2QFormerModel(q),
              video_proj=nn.Linear(32, 64), audio_proj=nn.Linear(32, 64))
  for m in mods.values():
    m.eval()
    perturb_(m)
  with torch.no_grad():
    for p in mods["fusion"].gate_mlp.parameters():
      p.mul_(8.0)  # a gate far from uniform
  state = {f"multi_multiscale_fusion.{k}": v for k, v in mods["fusion"].state_dict().items()}
  state |= {f"multi_llama_proj.{k}": v for k, v in mods["llm_proj"].state_dict().items()}
  state |= {f"facial_encoder.{k}": v for k, v in mods["face"].state_dict().items()}
  state |= lavis_qformer_state(mods["video_q"], "video_Qformer") | lavis_qformer_state(mods["audio_q"], "audio_Qformer")
  state |= {f"video_proj.{k}": v for k, v in mods["video_proj"].state_dict().items()}
  state |= {f"audio_llama_proj.{k}": v for k, v in mods["audio_proj"].state_dict().items()}
  state |= {"video_query_tokens": torch.randn(1, 8, 32), "audio_query_tokens": torch.randn(1, 8, 32),
            "video_frame_position_embedding.weight": torch.randn(32, 32),
            "audio_position_embedding.weight": torch.randn(8, 32)}
  for layer in range(2):
    for name, (d_in, d_out) in LORA_DIMS.items():
      key = f"llama_model.base_model.model.model.layers.{layer}.{name}"
      state[f"{key}.lora_A.default.weight"] = torch.randn(4, d_in)
      state[f"{key}.lora_B.default.weight"] = torch.randn(d_out, 4)
  # what else their checkpoints carry: unused trainables and frozen modules' buffers
  state |= {"image_llama_proj.weight": torch.randn(64, 32), "multi_audio_embs.weight": torch.randn(32, 32),
            "facial_encoder.facexformer.backbone.0.1.0.attn.relative_position_index": torch.arange(49),
            "visual_encoder.model.vision_model.embeddings.position_ids": torch.arange(50)[None]}
  return state, mods


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("official")
  state, mods = official_checkpoint()
  torch.save({"model": state, "epoch": 7}, tmp / "checkpoint_000007.pth")
  convert_official(tmp / "checkpoint_000007.pth", tmp / "adapters", preset="tiny")
  model = nanoemox.init_model(CFG, seed=1)
  restore_into(model, tmp / "adapters" / "params", nnx.Param)
  model.eval()
  return tmp, state, mods, model


def test_fusion_and_gate_match_the_authors_structure(converted):
  _, _, mods, model = converted
  audio = np.random.RandomState(0).randn(2, 3, 8, 32).astype(np.float32)
  visual = np.random.RandomState(1).randn(2, 3, 8, 32).astype(np.float32)
  with torch.no_grad():
    fused, w_ref = mods["fusion"]([torch.from_numpy(audio[:, i]) for i in range(3)],
                                  [torch.from_numpy(visual[:, i]) for i in range(3)])
    token_ref = mods["llm_proj"](fused.mean(1))[:, None]
  token, w = model.fusion(jnp.asarray(audio), jnp.asarray(visual))
  np.testing.assert_allclose(np.asarray(w), w_ref.numpy(), atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(token), token_ref.numpy(), atol=1e-5, rtol=0)
  assert np.abs(w_ref.numpy() - 1 / 3).max() > 0.05


def test_face_temporal_matches(converted):
  _, _, mods, model = converted
  faces = np.random.RandomState(2).randn(3, 8, 32).astype(np.float32)
  with torch.no_grad():
    ref = mods["face"](torch.from_numpy(faces)).numpy()
  np.testing.assert_allclose(np.asarray(model.face_temporal(jnp.asarray(faces))), ref, atol=1e-5, rtol=0)


def test_qformers_projections_positions_and_lora(converted):
  _, state, mods, model = converted
  states = np.random.RandomState(3).randn(2, 8, 32).astype(np.float32)
  for ours, proj, ref_q, ref_proj, tokens in ((model.video_qformer, model.video_proj, mods["video_q"],
                                              mods["video_proj"], state["video_query_tokens"]),
                                             (model.audio_qformer, model.audio_proj, mods["audio_q"],
                                              mods["audio_proj"], state["audio_query_tokens"])):
    with torch.no_grad():
      ref = ref_proj(ref_q(query_embeds=tokens.expand(2, -1, -1),
                           encoder_hidden_states=torch.from_numpy(states)).last_hidden_state).numpy()
    np.testing.assert_allclose(np.asarray(proj(ours(jnp.asarray(states)))), ref, atol=1e-5, rtol=0)
  np.testing.assert_array_equal(np.asarray(model.frame_position_embedding[...]),
                                state["video_frame_position_embedding.weight"].numpy())
  layer = model.llm.model.layers[1].mlp.down_proj
  key = "llama_model.base_model.model.model.layers.1.mlp.down_proj"
  np.testing.assert_array_equal(np.asarray(layer.lora_a[...]), state[f"{key}.lora_A.default.weight"].numpy().T)
  np.testing.assert_array_equal(np.asarray(layer.lora_b[...]), state[f"{key}.lora_B.default.weight"].numpy().T)


def test_skipped_keys_are_counted(converted):
  tmp, state, _, model = converted
  report = json.loads((tmp / "adapters" / "conversion.json").read_text())
  assert set(report["ignored"]) == {"image_llama_proj.weight", "multi_audio_embs.weight", "facial_encoder.lynorm.weight",
                                    "facial_encoder.lynorm.bias", "video_Qformer.bert.embeddings.position_ids",
                                    "audio_Qformer.bert.embeddings.position_ids",
                                    "facial_encoder.facexformer.backbone.0.1.0.attn.relative_position_index",
                                    "visual_encoder.model.vision_model.embeddings.position_ids"}
  assert report["converted"] == len(split_packed_attention(state)) - len(report["ignored"])
  assert report["converted"] == len(nnx.to_flat_state(nnx.state(model, nnx.Param))) and not report["missing"]


def test_refusals_and_partial_checkpoints(tmp_path):
  state, _ = official_checkpoint()
  bad = dict(state)
  bad["video_proj.weight"] = torch.randn(64, 31)
  torch.save({"model": bad}, tmp_path / "bad.pth")
  with pytest.raises(ConversionError, match=r"mis-shaped tensor video_proj\.weight: checkpoint \(64, 31\)"):
    convert_official(tmp_path / "bad.pth", tmp_path / "out", preset="tiny")
  phase1a = {k: v for k, v in state.items() if k.startswith(("audio_", "facial_encoder."))}
  torch.save({"model": phase1a}, tmp_path / "p1a.pth")
  with pytest.raises(ConversionError, match=r"missing tensor for video_proj\.kernel"):
    convert_official(tmp_path / "p1a.pth", tmp_path / "out", preset="tiny")
  run = subprocess.run([sys.executable, "-m", "converters.nanoemox_official", "--src", str(tmp_path / "p1a.pth"),
                        "--out", str(tmp_path / "p1a"), "--preset", "tiny", "--partial"], cwd=ROOT,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  report = json.loads((tmp_path / "p1a" / "conversion.json").read_text())
  assert "video_proj.kernel" in report["missing"] and "audio_proj.kernel" not in report["missing"]


def test_load_assembles_the_model_from_converted_parts(tmp_path, converted):
  """Tiny HF/torchvision towers and LM and the authors' checkpoint -> `converters.assemble` -> checkpoints.load ==
  the parts, bit for bit."""
  from converters.assemble import assemble
  from nanoemox_jax.data.tokenizer import BUNDLED
  from tests.test_assemble import tiny_clip, tiny_facexformer, tiny_hubert, tiny_llm

  clip = tiny_clip(tmp_path / "hf_clip")
  tiny_hubert(tmp_path / "hf_hubert")
  tiny_facexformer(tmp_path / "model.pt")
  llm = tiny_llm(tmp_path / "hf_llm", BUNDLED)
  sources = {name: str(tmp_path / folder) for name, folder in (("clip", "hf_clip"), ("hubert", "hf_hubert"),
                                                                ("face", "model.pt"), ("llm", "hf_llm"))}
  assemble(tmp_path / "model", "tiny", sources, adapters=str(converted[0] / "checkpoint_000007.pth"))
  assert json.loads((tmp_path / "model" / "adapters" / "conversion.json").read_text())["missing"] == []

  model = parts.load(tmp_path / "model")
  leaves = jax.tree.leaves(nnx.state(model))
  assert all(isinstance(x, jax.Array) for x in leaves)  # nothing left abstract
  np.testing.assert_array_equal(np.asarray(model.clip.vision_model.encoder.layers[2].mlp.fc1.kernel[...]),
                                next(v for k, v in clip.state_dict().items()
                                     if k.endswith("encoder.layers.2.mlp.fc1.weight")).numpy().T)
  np.testing.assert_array_equal(np.asarray(model.llm.model.layers[1].self_attn.q_proj.kernel[...]),
                                llm.model.layers[1].self_attn.q_proj.weight.detach().numpy().T)
  assert isinstance(model.llm.model.layers[1].self_attn.q_proj.kernel, FrozenParam)
  np.testing.assert_array_equal(np.asarray(model.fusion.gate_mlp.fc2.bias[...]),
                                np.asarray(converted[3].fusion.gate_mlp.fc2.bias[...]))
  assert lora.lora_layers(model)
  (tmp_path / "model" / "nanoemox.json").write_text(json.dumps({"preset": "tiny", "overrides": {"num_frames": 4}}))
  assert parts.load(tmp_path / "model").config.num_frames == 4
  (tmp_path / "model" / "nanoemox.json").write_text(json.dumps({"preset": "demo"}))
  with pytest.raises(ValueError, match=r"clip/config.json: the converted clip does not match preset 'demo': "
                                       r"hidden_size 32 != 64, intermediate_size 64 != 128"):
    parts.load(tmp_path / "model")
  (tmp_path / "model" / "nanoemox.json").write_text(json.dumps({"preset": "tiny", "token_ids": {"frame_id": 5}}))
  with pytest.raises(ValueError, match=r"model/nanoemox.json: token_ids frame_id=5: expected ids"):
    parts.model_config(tmp_path / "model")
