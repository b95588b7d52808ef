"""`python -m converters.assemble` offline: tiny random pretrained parts laid out as the hub cache holds them
(`models--ORG--NAME/snapshots/REV/` + `refs/main`) under the default hub ids, assembled for the tiny preset; the
folder loads bit for bit, records the Qwen2.5 tokenizer's placeholder ids, and `nanoemox_jax.infer` answers a video
with it. A part of the wrong size is refused by name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from converters.assemble import DEFAULTS, assemble, main
from nanoemox_jax.checkpoints import parts
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.demo import corpus
from nanoemox_jax.infer.__main__ import main as infer_main
from nanoemox_jax.model import presets
from nanoemox_jax.model.nanoemox import NanoEmoXConfig
from tests.hf_models import random_qwen2
from tests.test_tokenizer import qwen25_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CFG = presets.tiny()
QWEN25_IDS = {"frame_token_id": 151667, "audio_token_id": 151666, "face_token_id": 151668, "multi_token_id": 151669}
QWEN2_IDS = {"frame_token_id": 151648, "audio_token_id": 151647, "face_token_id": 151649, "multi_token_id": 151650}


def hf_kwargs(config: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in config.items() if k not in ("model_type", "architectures")}


def tiny_llm(folder: Path, tokenizer: Path, **overrides) -> transformers.Qwen2ForCausalLM:
  """A tiny random Qwen2 in HF layout (model.safetensors) with the tokenizer files of folder `tokenizer`."""
  model = random_qwen2(transformers.Qwen2Config(**hf_kwargs(CFG.llm.to_hf()) | overrides))
  model.save_pretrained(folder)
  for f in tokenizer.iterdir():
    shutil.copyfile(f, folder / f.name)
  return model


def tiny_clip(folder: Path) -> transformers.CLIPModel:
  """A whole CLIPModel, as openai/clip-vit-large-patch14 ships (text tower included), tiny vision tower."""
  torch.manual_seed(1)
  text = dict(vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
              bos_token_id=0, eos_token_id=1, pad_token_id=1)
  model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=hf_kwargs(CFG.clip.to_hf()),
                                                         projection_dim=16))
  model.save_pretrained(folder)
  return model


def tiny_hubert(folder: Path) -> transformers.HubertModel:
  """A HubertModel as TencentGameMate/chinese-hubert-large ships it: config.json + pytorch_model.bin only."""
  torch.manual_seed(2)
  model = transformers.HubertModel(transformers.HubertConfig(**hf_kwargs(CFG.hubert.to_hf())))
  folder.mkdir(parents=True, exist_ok=True)
  model.config.save_pretrained(folder)
  torch.save(model.state_dict(), folder / "pytorch_model.bin")
  return model


def tiny_facexformer(file: Path, decoder_hidden_size: int = CFG.face.decoder_hidden_size) -> dict[str, torch.Tensor]:
  """FaceXFormer's model.pt layout (`state_dict_backbone`: torchvision Swin + fusion) at the tiny preset's sizes."""
  import torchvision

  torch.manual_seed(3)
  sw = CFG.face.swin
  tv = torchvision.models.swin_transformer.SwinTransformer(
      patch_size=[sw.patch_size] * 2, embed_dim=sw.embed_dim, depths=list(sw.depths), num_heads=list(sw.num_heads),
      window_size=[sw.window_size] * 2, stochastic_depth_prob=0.0)
  sd = {"backbone.0." + k.removeprefix("features."): v for k, v in tv.state_dict().items() if k.startswith("features.")}
  sd |= {"backbone.1.weight": tv.norm.weight, "backbone.1.bias": tv.norm.bias}
  for i, d in enumerate(sw.dims):
    sd |= {f"linear_c.{i}.proj.weight": torch.randn(decoder_hidden_size, d),
           f"linear_c.{i}.proj.bias": torch.randn(decoder_hidden_size)}
  sd["linear_fuse.weight"] = torch.randn(decoder_hidden_size, 4 * decoder_hidden_size, 1, 1)
  file.parent.mkdir(parents=True, exist_ok=True)
  torch.save({"state_dict_backbone": sd}, file)
  return sd


def snapshot(cache: Path, repo: str) -> Path:
  """`<cache>/models--ORG--NAME/snapshots/REV/` with `refs/main` = REV, as `huggingface_hub` lays out its cache."""
  revision = hashlib.sha1(repo.encode()).hexdigest()
  root = cache / ("models--" + repo.replace("/", "--"))
  (root / "refs").mkdir(parents=True)
  (root / "refs" / "main").write_text(revision)
  (root / "snapshots" / revision).mkdir(parents=True)
  return root / "snapshots" / revision


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
  """(hub cache, part -> its torch model or state dict) with every default source of `converters.assemble` in it;
  the LM carries a Qwen2.5-layout tokenizer."""
  root = tmp_path_factory.mktemp("hub")
  cache = root / "cache"
  models = {"llm": tiny_llm(snapshot(cache, DEFAULTS["llm"]), qwen25_tokenizer(root / "qwen25_tokenizer")),
            "clip": tiny_clip(snapshot(cache, DEFAULTS["clip"])),
            "hubert": tiny_hubert(snapshot(cache, DEFAULTS["hubert"]))}
  repo, _, file = DEFAULTS["face"].partition("/ckpts/")
  models["face"] = tiny_facexformer(snapshot(cache, repo) / "ckpts" / file)
  return cache, models


def offline_env(cache: Path) -> dict[str, str]:
  return os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home")}


def errors(stderr: str) -> list[str]:
  """The `error:` lines of a run's stderr (the rest: progress bars)."""
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def weight(module: Any) -> np.ndarray:
  return np.asarray(module[...])


def test_assembles_from_the_hub_cache_loads_and_infers(hub, tmp_path, capsys):
  cache, models = hub
  out = tmp_path / "parts"
  run = subprocess.run([sys.executable, "-m", "converters.assemble", "--out", str(out), "--preset", "tiny",
                        "--clip", f"{DEFAULTS['clip']}@{hashlib.sha1(DEFAULTS['clip'].encode()).hexdigest()}"],
                       cwd=ROOT, env=offline_env(cache), capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr
  assert sorted(p.name for p in out.iterdir()) == ["clip", "face", "hubert", "llm", "nanoemox.json", "tokenizer"]
  assert not out.with_name("parts.partial").exists()

  spec = json.loads((out / "nanoemox.json").read_text())
  assert spec["preset"] == "tiny" and spec["token_ids"] == QWEN25_IDS
  snapshots = {"llm": "model.safetensors", "clip": "model.safetensors", "hubert": "pytorch_model.bin",
               "face": "model.pt"}
  for name, file in snapshots.items():
    repo = DEFAULTS[name].partition("/ckpts/")[0]
    source = spec["sources"][name]
    assert source["revision"] == hashlib.sha1(repo.encode()).hexdigest(), name
    found = next((cache / ("models--" + repo.replace("/", "--"))).rglob(file))
    assert source["sha256"] == {file: hashlib.sha256(found.read_bytes()).hexdigest()}, name
  assert set(spec["sources"]["tokenizer"]["sha256"]) == {"vocab.json", "merges.txt", "tokenizer_config.json"}
  assert Tokenizer(out / "tokenizer").model_token_ids == QWEN25_IDS

  model = parts.load(out, config=CFG)  # a given config (a training run's) takes the folder's ids
  assert model.config == parts.model_config(out) == dataclasses.replace(CFG, **QWEN25_IDS)
  llm, clip, hubert, face = (models[k] for k in ("llm", "clip", "hubert", "face"))
  np.testing.assert_array_equal(weight(model.llm.model.layers[1].self_attn.q_proj.kernel),
                                llm.model.layers[1].self_attn.q_proj.weight.detach().numpy().T)
  np.testing.assert_array_equal(weight(model.clip.vision_model.encoder.layers[2].mlp.fc1.kernel),
                                clip.vision_model.encoder.layers[2].mlp.fc1.weight.detach().numpy().T)
  np.testing.assert_array_equal(weight(model.hubert.encoder.layers[1].feed_forward.output_dense.bias),
                                hubert.encoder.layers[1].feed_forward.output_dense.bias.detach().numpy())
  np.testing.assert_array_equal(weight(model.face.linear_c[0].proj.bias), face["linear_c.0.proj.bias"].numpy())

  video = tmp_path / "clip.mp4"
  corpus.write_clip(corpus.class_styles({"happy": "happy"})["happy"], np.random.default_rng(0), video, None)
  assert infer_main(["--checkpoint", str(out), "--task", "mer", "--video", str(video), "--max-new-tokens", "2",
                     "--json"]) == 0
  line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (line["task"], line["checkpoint"]) == ("mer", str(out))

  # the tokenizer is checked against the folder's ids: the bundled (Qwen2) one is refused, naming both
  assert infer_main(["--checkpoint", str(out), "--tokenizer", str(BUNDLED), "--task", "mer", "--video", str(video),
                     "--max-new-tokens", "2"]) == 2
  err = capsys.readouterr().err
  assert f"tokenizer {BUNDLED}: " in err and "<FrameHere> is 151648 here, 151667 in the model (frame_token_id)" in err


def test_qwen2_layout_and_export_keep_the_ids(hub, tmp_path):
  """The LM with the bundled Qwen2 tokenizer (3 added tokens): its ids, the config's defaults, are recorded; a
  training export of the folder keeps the ids and the sources."""
  cache, _ = hub
  llm = tmp_path / "qwen2_llm"
  llm.mkdir()
  hub_llm = next((cache / "models--Qwen--Qwen2.5-1.5B-Instruct" / "snapshots").iterdir())
  for f in ("config.json", "model.safetensors"):
    shutil.copyfile(hub_llm / f, llm / f)
  for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
    shutil.copyfile(BUNDLED / f, llm / f)
  local = {name: str(next((cache / ("models--" + DEFAULTS[name].partition("/ckpts/")[0].replace("/", "--"))
                                / "snapshots").iterdir())) for name in ("clip", "hubert")}
  local["face"] = str(next(cache.rglob("model.pt")))
  out = assemble(tmp_path / "parts", "tiny", local | {"llm": str(llm)})
  spec = json.loads((out / "nanoemox.json").read_text())
  assert spec["token_ids"] == QWEN2_IDS == {f: getattr(NanoEmoXConfig(), f) for f in QWEN2_IDS}
  assert spec["sources"]["llm"] == {"source": str(llm), "revision": None, "sha256": {
      "model.safetensors": hashlib.sha256((llm / "model.safetensors").read_bytes()).hexdigest()}}
  model = parts.load(out)
  assert model.config == CFG

  exported = parts.export(model, out, tmp_path / "exported", "phase1a", tokenizer=out / "tokenizer")
  again = json.loads((exported / "nanoemox.json").read_text())
  assert again["token_ids"] == QWEN2_IDS and again["sources"] == spec["sources"] and again["overrides"] == {}
  reloaded = parts.load(exported)
  assert reloaded.config == CFG
  np.testing.assert_array_equal(weight(reloaded.fusion.gate_mlp.fc2.bias), weight(model.fusion.gate_mlp.fc2.bias))
  np.testing.assert_array_equal(weight(reloaded.llm.model.layers[0].mlp.up_proj.kernel),  # through the links
                                weight(model.llm.model.layers[0].mlp.up_proj.kernel))


def test_wrong_parts_are_refused_by_name(hub, tmp_path, capsys):
  cache, _ = hub
  small = tmp_path / "small_llm"
  tiny_llm(small, qwen25_tokenizer(tmp_path / "tok"), hidden_size=48, head_dim=12)
  run = subprocess.run([sys.executable, "-m", "converters.assemble", "--out", str(tmp_path / "a"), "--preset", "tiny",
                        "--llm", str(small)], cwd=ROOT, env=offline_env(cache), capture_output=True, text=True,
                       timeout=600)
  assert run.returncode == 2 and "Traceback" not in run.stderr
  assert errors(run.stderr) == [f"error: llm: hidden_size 48 != preset tiny's 64, head_dim 12 != preset tiny's 16 "
                                f"({small / 'config.json'})"]
  assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()

  hub_sources = {name: str(next((cache / ("models--" + DEFAULTS[name].replace("/", "--")) / "snapshots").iterdir()))
                 for name in ("llm", "clip", "hubert")}
  args = ["--preset", "tiny"] + [a for name, path in hub_sources.items() for a in (f"--{name}", path)]
  face = tmp_path / "face16.pt"
  tiny_facexformer(face, decoder_hidden_size=16)
  assert main(["--out", str(tmp_path / "b"), *args, "--face", str(face)]) == 2
  assert errors(capsys.readouterr().err) == [f"error: face: decoder_hidden_size 16 != preset tiny's 32 ({face})"]
  assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()

  assert main(["--out", str(tmp_path / "c"), *args, "--face", "nobody/no-such-model/model.pt"]) == 2
  (err,) = errors(capsys.readouterr().err)
  assert err.startswith("error: --face nobody/no-such-model/model.pt: not a local file or folder, and the hub gives "
                        "no such model")
  assert main(["--out", str(tmp_path / "d"), *args, "--face", str(tmp_path / "absent.pt")]) == 2
  assert f"--face {tmp_path / 'absent.pt'}: no such file or folder, and not a hub id" in capsys.readouterr().err
  (tmp_path / "e").mkdir()
  (tmp_path / "e" / "x").write_text("")
  assert main(["--out", str(tmp_path / "e"), *args]) == 2
  assert "already exists and is not an empty folder" in capsys.readouterr().err
