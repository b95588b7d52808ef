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


# ------------------------------------------------------------------------------------------------------------------
# Random pretrained sources at any size, laid out as their hub repositories ship them (tests/test_assemble.py has the
# tiny-preset versions; benchmarks/rehearsal.py writes the four at the full size from their real config.json).


def hub_snapshot(cache: Path, repo: str) -> Path:
  """`<cache>/models--ORG--NAME/snapshots/REV/` with `refs/main` = REV (sha1 of the repo id), as `huggingface_hub`
  lays out its cache; with HF_HUB_OFFLINE=1 and HF_HUB_CACHE=cache, `snapshot_download(repo)` returns it."""
  import hashlib

  revision = hashlib.sha1(repo.encode()).hexdigest()
  root = cache / ("models--" + repo.replace("/", "--"))
  (root / "refs").mkdir(parents=True, exist_ok=True)
  (root / "refs" / "main").write_text(revision)
  (root / "snapshots" / revision).mkdir(parents=True, exist_ok=True)
  return root / "snapshots" / revision


def _hf_config(folder: Path, config_json: dict) -> transformers.PretrainedConfig:
  """`config_json` written verbatim to `folder/config.json` and read back the way HF reads a hub repository's."""
  import json

  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
  return transformers.AutoConfig.from_pretrained(folder)


def _save_with_config(model: transformers.PreTrainedModel, folder: Path, config_json: dict) -> None:
  """`save_pretrained` (model.safetensors), then the repository's own config.json back over the one HF wrote."""
  import json

  model.save_pretrained(folder)
  (folder / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")


def write_random_qwen2(folder: Path, config_json: dict, tokenizer: Path, dtype: torch.dtype = torch.float32,
                       generation_config: dict | None = None, seed: int = 0) -> int:
  """A random `Qwen2ForCausalLM` (HF init, built directly in `dtype`) from a hub `config.json` dict, saved as the
  Qwen repositories ship it: config.json (verbatim), generation_config.json, model.safetensors (tied: no lm_head)
  and the tokenizer files of folder `tokenizer`. Returns the parameter count."""
  import json
  import shutil

  torch.manual_seed(seed)
  config = _hf_config(folder, config_json)
  model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
  count = sum(p.numel() for p in model.parameters())
  _save_with_config(model, folder, config_json)
  del model
  if generation_config is not None:
    (folder / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
  for f in tokenizer.iterdir():
    if f.is_file():
      shutil.copyfile(f, folder / f.name)
  return count


def write_random_clip(folder: Path, config_json: dict, dtype: torch.dtype = torch.float32, seed: int = 1) -> int:
  """A random whole `CLIPModel` (text tower included, as openai/clip-vit-* ship) from a hub config.json dict, in
  model.safetensors. Returns the parameter count."""
  torch.manual_seed(seed)
  config = _hf_config(folder, config_json)
  model = transformers.CLIPModel._from_config(config, dtype=dtype).eval()
  count = sum(p.numel() for p in model.parameters())
  _save_with_config(model, folder, config_json)
  return count


def write_random_hubert(folder: Path, config_json: dict, seed: int = 2, legacy_weight_norm: bool = True) -> int:
  """A random fp32 `HubertModel` from a hub config.json dict, as TencentGameMate/chinese-hubert-large ships it:
  config.json + pytorch_model.bin only (a `torch.save`d state dict). `legacy_weight_norm`: the positional conv's
  weight norm under the pre-2.1 names `weight_g` / `weight_v`, as in that file (made with transformers 4.16), not
  today's `parametrizations.weight.original0/1`. Returns the parameter count."""
  torch.manual_seed(seed)
  config = _hf_config(folder, config_json)
  model = transformers.HubertModel(config).eval()
  count = sum(p.numel() for p in model.parameters())
  state = model.state_dict()
  if legacy_weight_norm:
    state = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
  torch.save(state, folder / "pytorch_model.bin")
  return count


def write_random_facexformer(file: Path, embed_dim: int, depths: tuple[int, ...], num_heads: tuple[int, ...],
                             decoder_hidden_size: int, window_size: int = 7, patch_size: int = 4,
                             seed: int = 3) -> int:
  """FaceXFormer's `ckpts/model.pt` layout: `{"state_dict_backbone": ...}` with a random torchvision Swin under
  `backbone.0.` (features) and `backbone.1.` (final norm), the fusion `linear_c.{0..3}.proj` and `linear_fuse`
  (FaceXFormer's task decoder, which the converter skips, is left out). Returns the parameter count."""
  import torchvision

  torch.manual_seed(seed)
  tv = torchvision.models.swin_transformer.SwinTransformer(
      patch_size=[patch_size] * 2, embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads),
      window_size=[window_size] * 2, stochastic_depth_prob=0.0)
  sd = {"backbone.0." + k.removeprefix("features."): v for k, v in tv.state_dict().items() if k.startswith("features.")}
  sd |= {"backbone.1.weight": tv.norm.weight, "backbone.1.bias": tv.norm.bias}
  for i in range(len(depths)):
    d = embed_dim * 2**i
    sd |= {f"linear_c.{i}.proj.weight": 0.02 * torch.randn(decoder_hidden_size, d),
           f"linear_c.{i}.proj.bias": torch.zeros(decoder_hidden_size)}
  sd["linear_fuse.weight"] = 0.02 * torch.randn(decoder_hidden_size, len(depths) * decoder_hidden_size, 1, 1)
  file.parent.mkdir(parents=True, exist_ok=True)
  torch.save({"state_dict_backbone": sd}, file)
  return sum(v.numel() for k, v in sd.items() if v.is_floating_point())
