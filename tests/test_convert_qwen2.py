"""`converters.qwen2`: file layouts (sharded, bf16, .bin), strict refusals, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from converters.common import ConversionError, read_checkpoint
from converters.qwen2 import convert_qwen2
from nanoemox_jax.checkpoints.parts import load_part
from tests.hf_models import random_qwen2, tiny_qwen2_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hf_model():
  return random_qwen2(tiny_qwen2_config(tie_word_embeddings=False))


def logits_of(model_or_hf, ids: np.ndarray) -> np.ndarray:
  if isinstance(model_or_hf, torch.nn.Module):
    with torch.no_grad():
      return model_or_hf(torch.tensor(ids)).logits.float().numpy()
  return np.asarray(model_or_hf(jnp.asarray(ids, jnp.int32)))


def test_sharded_bf16_checkpoint(tmp_path, hf_model):
  bf16 = random_qwen2(tiny_qwen2_config(tie_word_embeddings=False)).to(torch.bfloat16)
  bf16.save_pretrained(tmp_path / "hf", max_shard_size="40KB")
  assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
  assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 2
  convert_qwen2(tmp_path / "hf", tmp_path / "jax")
  model = load_part("llm", tmp_path / "jax")
  stored = read_checkpoint(tmp_path / "hf")
  for name, p in bf16.named_parameters():  # our reader sees exactly the bf16 values torch wrote
    assert stored[name].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(stored[name].astype(np.float32), p.detach().float().numpy())
  ids = np.random.RandomState(0).randint(0, 211, (2, 8))
  np.testing.assert_allclose(logits_of(model, ids), logits_of(bf16.float(), ids), atol=1e-4, rtol=0)


def test_pytorch_bin_checkpoint(tmp_path, hf_model):
  (tmp_path / "hf").mkdir()
  torch.save(hf_model.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
  (tmp_path / "hf" / "config.json").write_text(hf_model.config.to_json_string())
  convert_qwen2(tmp_path / "hf", tmp_path / "jax")
  ids = np.random.RandomState(1).randint(0, 211, (2, 8))
  np.testing.assert_allclose(logits_of(load_part("llm", tmp_path / "jax"), ids), logits_of(hf_model, ids), atol=1e-4)


def test_tied_checkpoint_with_redundant_lm_head_is_counted(tmp_path):
  hf = random_qwen2(tiny_qwen2_config(tie_word_embeddings=True))
  hf.save_pretrained(tmp_path / "hf")
  tensors = dict(read_checkpoint(tmp_path / "hf"))
  assert "lm_head.weight" not in tensors  # save_pretrained drops the tied head
  tensors["lm_head.weight"] = np.asarray(tensors["model.embed_tokens.weight"])
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp_path / "hf" / "model.safetensors")
  convert_qwen2(tmp_path / "hf", tmp_path / "jax")
  report = json.loads((tmp_path / "jax" / "conversion.json").read_text())
  assert report["ignored"] == ["lm_head.weight"]
  ids = np.random.RandomState(2).randint(0, 211, (1, 8))
  np.testing.assert_allclose(logits_of(load_part("llm", tmp_path / "jax"), ids), logits_of(hf, ids), atol=1e-4)


def edited_checkpoint(tmp_path: Path, hf_model, edit) -> Path:
  hf_model.save_pretrained(tmp_path / "hf")
  tensors = {k: np.ascontiguousarray(v) for k, v in read_checkpoint(tmp_path / "hf").items()}
  edit(tensors)
  save_file(tensors, tmp_path / "hf" / "model.safetensors")
  return tmp_path / "hf"


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), r"missing tensor for model\.layers\.1\.mlp\.up_proj\.kernel"),
    (lambda t: t.update({"model.layers.0.self_attn.rotary.weight": np.zeros(3, np.float32)}),
     r"unexpected tensor model\.layers\.0\.self_attn\.rotary\.weight"),
    (lambda t: t.update({"model.layers.5.input_layernorm.weight": np.zeros(48, np.float32)}),
     r"unexpected tensor model\.layers\.5\.input_layernorm\.weight .*which the model lacks"),
    (lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((24, 48), np.float32)}),
     r"mis-shaped tensor model\.layers\.0\.self_attn\.k_proj\.weight: checkpoint \(24, 48\), "
     r"model model\.layers\.0\.self_attn\.k_proj\.kernel expects \(48, 16\)"),
])
def test_refuses_bad_checkpoints(tmp_path, hf_model, edit, message):
  src = edited_checkpoint(tmp_path, hf_model, edit)
  with pytest.raises(ConversionError, match=message):
    convert_qwen2(src, tmp_path / "jax")
  assert not (tmp_path / "jax").exists()  # nothing half-written


def test_cli_converts_and_reports_errors(tmp_path, hf_model):
  hf_model.save_pretrained(tmp_path / "hf")
  run = subprocess.run([sys.executable, "-m", "converters.qwen2", "--src", str(tmp_path / "hf"), "--out",
                        str(tmp_path / "jax")], cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  ids = np.random.RandomState(3).randint(0, 211, (2, 5))
  np.testing.assert_allclose(logits_of(load_part("llm", tmp_path / "jax"), ids), logits_of(hf_model, ids), atol=1e-4)
  (tmp_path / "hf" / "config.json").write_text(json.dumps({**hf_model.config.to_dict(), "hidden_size": 64,
                                                           "head_dim": 8}))
  bad = subprocess.run([sys.executable, "-m", "converters.qwen2", "--src", str(tmp_path / "hf"), "--out",
                        str(tmp_path / "bad")], cwd=ROOT, capture_output=True, text=True)
  assert bad.returncode != 0
  assert "mis-shaped tensor model.embed_tokens.weight" in bad.stderr
  assert "Traceback" not in bad.stderr
