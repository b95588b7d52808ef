"""HuBERT parity against transformers' PyTorch `HubertModel` (through the real converter), the converter's
file layouts and refusals, and input normalisation against `Wav2Vec2FeatureExtractor`."""

from __future__ import annotations

import functools
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
from safetensors.numpy import save_file

from converters.common import ConversionError, flatten_paths, read_checkpoint
from converters.hubert import convert_hubert
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import hubert
from nanoemox_jax.checkpoints.params_io import param_count

ROOT = Path(__file__).resolve().parents[1]
# base: GroupNorm conv stack, post-norm encoder; large: LayerNorm convs, stable layer norm;
# mixed: odd positional kernel (no frame dropped), no feature-projection norm, other activations.
STYLES = {
    "base": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False),
    "large": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    "mixed": dict(feat_extract_norm="group", do_stable_layer_norm=True, conv_bias=True, feat_proj_layer_norm=False,
                  num_conv_pos_embeddings=15, hidden_act="gelu_new", feat_extract_activation="relu"),
}
LENGTHS = [800, 613, 431]  # 39, 29 and 20 frames
_POS = "parametrizations.weight.original"  # torch's weight-norm keys: original0 = g, original1 = v


def tiny_hubert_config(**overrides) -> transformers.HubertConfig:
  kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40, conv_dim=(16, 16, 16),
            conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            attn_implementation="eager")
  kw.update(overrides)
  return transformers.HubertConfig(**kw)


def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
  """Norm weights away from 1, biases away from 0, weight-norm gains away from ||v|| (HF's init)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "layer_norm.weight" in name:
        p.copy_(1.0 + 0.1 * noise)
      elif name.endswith(".bias"):
        p.copy_(0.1 * noise)
      elif name.endswith("weight.original0"):
        p.mul_(1.0 + 0.2 * noise)
  return model.eval()


def random_hubert(style: str, seed: int = 0) -> transformers.HubertModel:
  torch.manual_seed(seed)
  return perturb(transformers.HubertModel(tiny_hubert_config(**STYLES[style])), seed)


def padded_audio(lengths: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rs = np.random.RandomState(seed)
  audio, mask = np.zeros((len(lengths), max(lengths)), np.float32), np.zeros((len(lengths), max(lengths)), np.int64)
  for row, n in enumerate(lengths):
    audio[row, :n], mask[row, :n] = rs.randn(n), 1
  return audio, mask


@functools.partial(nnx.jit, static_argnames="num_layers")
def run(model: hubert.HubertModel, audio: jax.Array, mask: jax.Array | None = None,
        num_layers: int | None = None) -> hubert.HubertOutput:
  return model(audio, mask, num_layers=num_layers)


def hf_outputs(hf: torch.nn.Module, audio: np.ndarray, mask: np.ndarray | None = None):
  with torch.no_grad():
    out = hf(torch.tensor(audio), attention_mask=None if mask is None else torch.tensor(mask),
             output_hidden_states=True)
  return [h.numpy() for h in out.hidden_states], out.last_hidden_state.numpy()


def assert_states_close(ours: hubert.HubertOutput, ref: tuple[list[np.ndarray], np.ndarray],
                        atol: float = 1e-5) -> float:
  states, last = ref
  assert len(ours.hidden_states) == len(states)
  diffs = [np.abs(np.asarray(a) - b).max() for a, b in zip(ours.hidden_states + (ours.last_hidden_state,),
                                                          states + [last])]
  assert max(diffs) < atol, diffs
  return max(diffs)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """style -> (HF model, its save_pretrained folder, our model converted from it), built once per module."""
  cache = {}

  def get(style: str):
    if style not in cache:
      tmp = tmp_path_factory.mktemp(style)
      hf = random_hubert(style)
      hf.save_pretrained(tmp / "hf")
      convert_hubert(tmp / "hf", tmp / "jax")
      cache[style] = hf, tmp / "hf", load_part("hubert", tmp / "jax")
    return cache[style]

  return get


@pytest.mark.parametrize("style", STYLES)
def test_hidden_states_match_hf(converted, style):
  hf, _, model = converted(style)
  audio = np.random.RandomState(1).randn(2, 1000).astype(np.float32)
  out = run(model, jnp.asarray(audio))
  assert all(h.shape == (2, 49, 32) and h.dtype == jnp.float32 for h in out.hidden_states)
  assert bool(out.frame_mask.all())
  assert_states_close(out, hf_outputs(hf, audio))


@pytest.mark.parametrize("style", ["base", "large"])
def test_padded_batch_matches_hf(converted, style):
  hf, _, model = converted(style)
  audio, mask = padded_audio(LENGTHS, seed=2)
  out = run(model, jnp.asarray(audio), jnp.asarray(mask))
  frames = hf._get_feature_vector_attention_mask(out.frame_mask.shape[1], torch.tensor(mask)).numpy()
  np.testing.assert_array_equal(np.asarray(out.frame_mask), frames)
  assert frames.sum(-1).tolist() == [39, 29, 20]
  # HF and ours compute padded frames the same way too, so every frame is compared, not just the valid ones
  assert_states_close(out, hf_outputs(hf, audio, mask))


def test_frame_mask_follows_hf_for_every_length():
  hf = transformers.HubertModel(tiny_hubert_config())
  cfg = hubert.HubertConfig.from_hf(hf.config.to_dict())
  lengths = [800, 799, 795, 431, 39, 15, 10, 0]  # down to clips without a single frame
  mask = (np.arange(800)[None] < np.array(lengths)[:, None]).astype(np.int64)
  ref = hf._get_feature_vector_attention_mask(39, torch.tensor(mask)).numpy()
  np.testing.assert_array_equal(np.asarray(hubert.frame_mask(cfg, jnp.asarray(mask), 39)), ref)
  assert hubert.feature_lengths(cfg, 800) == 39


def test_stop_after_layer_and_bf16(converted):
  _, folder, model = converted("large")
  audio = jnp.asarray(np.random.RandomState(3).randn(2, 700).astype(np.float32))
  full = run(model, audio)
  early = run(model, audio, num_layers=1)
  assert len(early.hidden_states) == 2 and early.last_hidden_state is None
  for a, b in zip(early.hidden_states, full.hidden_states):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="num_layers=3"):
    model(audio, num_layers=3)
  half = run(load_part("hubert", folder.parent / "jax", dtype=jnp.bfloat16), audio)
  a, b = np.asarray(full.last_hidden_state), np.asarray(half.last_hidden_state, np.float32)
  err = np.abs(a - b).max() / np.abs(a).max()
  assert half.last_hidden_state.dtype == jnp.bfloat16 and 0 < err < 0.05, err


@pytest.mark.parametrize("form", ["parametrizations", "weight_g"])
def test_ctc_bin_checkpoint_with_either_weight_norm_form(tmp_path, form):
  torch.manual_seed(4)
  ctc = perturb(transformers.HubertForCTC(tiny_hubert_config(**STYLES["large"], vocab_size=11)), seed=4)
  state = ctc.state_dict()
  if form == "weight_g":  # the layout torch < 2.1 saved (older hub checkpoints)
    state = {k.replace(_POS + "0", "weight_g").replace(_POS + "1", "weight_v"): v for k, v in state.items()}
  assert sum(k.endswith(("weight_g", "original0")) for k in state) == 1
  (tmp_path / "hf").mkdir()
  torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
  (tmp_path / "hf" / "config.json").write_text(ctc.config.to_json_string())
  convert_hubert(tmp_path / "hf" / "pytorch_model.bin", tmp_path / "jax")
  report = json.loads((tmp_path / "jax" / "conversion.json").read_text())
  assert sorted(report["ignored"]) == ["lm_head.bias", "lm_head.weight"]
  model = load_part("hubert", tmp_path / "jax")
  conv = model.encoder.pos_conv_embed.conv  # g and v kept apart, as torch's weight norm holds them
  g_key, v_key = (next(k for k in state if k.endswith(ends)) for ends in (("weight_g", "original0"),
                                                                          ("weight_v", "original1")))
  np.testing.assert_array_equal(np.asarray(conv.weight_g[...]), state[g_key].numpy().reshape(-1))
  np.testing.assert_array_equal(np.asarray(conv.weight_v[...]), state[v_key].numpy().transpose(2, 1, 0))
  audio, mask = padded_audio(LENGTHS[:2], seed=5)
  assert_states_close(run(model, jnp.asarray(audio), jnp.asarray(mask)), hf_outputs(ctc.hubert, audio, mask))


def edited_checkpoint(tmp_path: Path, folder: Path, edit) -> Path:
  tensors = {k: np.ascontiguousarray(v) for k, v in read_checkpoint(folder).items()}
  edit(tensors)
  (tmp_path / "hf").mkdir()
  save_file(tensors, tmp_path / "hf" / "model.safetensors")
  (tmp_path / "hf" / "config.json").write_text((folder / "config.json").read_text())
  return tmp_path / "hf"



@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop("encoder.layers.1.feed_forward.output_dense.weight"),
     r"missing tensor for encoder\.layers\.1\.feed_forward\.output_dense\.kernel"),
    (lambda t: t.update({"encoder.layers.0.attention.rel_bias": np.zeros(3, np.float32)}),
     r"unexpected tensor encoder\.layers\.0\.attention\.rel_bias"),
    (lambda t: t.update({"encoder.layers.2.layer_norm.weight": np.zeros(32, np.float32)}),
     r"unexpected tensor encoder\.layers\.2\.layer_norm\.weight .*which the model lacks"),
    (lambda t: t.update({"feature_extractor.conv_layers.1.conv.weight": np.zeros((16, 16, 5), np.float32)}),
     r"mis-shaped tensor feature_extractor\.conv_layers\.1\.conv\.weight: checkpoint \(16, 16, 5\), "
     r"model feature_extractor\.conv_layers\.1\.conv\.kernel expects \(3, 16, 16\)"),
    (lambda t: t.pop("encoder.pos_conv_embed.conv." + _POS + "1"),  # half a weight-norm pair
     r"missing tensor for encoder\.pos_conv_embed\.conv\.weight_v"),
])
def test_refuses_bad_checkpoints(tmp_path, converted, edit, message):
  _, folder, _ = converted("large")
  with pytest.raises(ConversionError, match=message):
    convert_hubert(edited_checkpoint(tmp_path, folder, edit), tmp_path / "jax")
  assert not (tmp_path / "jax").exists()  # nothing half-written


def test_cli_matches_the_python_converter(tmp_path, converted):
  _, folder, model = converted("base")
  cmd = [sys.executable, "-m", "converters.hubert", "--src", str(folder), "--out", str(tmp_path / "jax")]
  run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  cli = flatten_paths(nnx.to_pure_dict(nnx.state(load_part("hubert", tmp_path / "jax"), nnx.Param)))
  api = flatten_paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  assert cli.keys() == api.keys()
  for key, value in api.items():
    np.testing.assert_array_equal(np.asarray(cli[key]), np.asarray(value), err_msg=key)


def test_normalize_waveform_equals_hf_feature_extractor():
  rs = np.random.RandomState(6)
  raw = [(3.0 * rs.randn(n) + 0.5).astype(np.float32) for n in LENGTHS]
  fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
  ref = fe(raw, sampling_rate=16000, padding=True, return_tensors="np")
  audio, mask = padded_audio(LENGTHS)
  for row, x in enumerate(raw):
    audio[row, :len(x)] = x
  np.testing.assert_array_equal(ref["attention_mask"], mask)
  ours = np.asarray(hubert.normalize_waveform(audio, mask))
  np.testing.assert_allclose(ours, ref["input_values"], atol=1e-5, rtol=0)
  assert (ours[mask == 0] == 0).all()
  # without a mask HF normalises whole rows
  same_length = np.stack([x[:400] for x in raw])
  ref = fe(list(same_length), sampling_rate=16000, return_tensors="np")["input_values"]
  np.testing.assert_allclose(np.asarray(hubert.normalize_waveform(same_length)), ref, atol=1e-5, rtol=0)


def test_hubert_large_parameter_count_matches_hf_meta():
  hf_cfg = transformers.HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                     intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                                     conv_bias=True)
  with torch.device("meta"):
    hf = transformers.HubertModel(hf_cfg)
  expected = sum(p.numel() for p in hf.parameters())
  cfg = hubert.HubertConfig.from_hf(hf_cfg.to_dict())
  assert cfg == hubert.HubertConfig()  # the defaults are HuBERT-Large
  abstract = hubert.abstract_model(cfg)
  ours = param_count(jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct)))
  assert ours == expected == 315_438_720


def test_config_defaults_and_refusals():
  assert hubert.HubertConfig.from_hf({}) == hubert.HubertConfig.from_hf(transformers.HubertConfig().to_dict())
  base = tiny_hubert_config().to_dict()
  assert hubert.HubertConfig.from_hf(hubert.HubertConfig.from_hf(base).to_hf()) == hubert.HubertConfig.from_hf(base)
  for bad, message in [({"conv_pos_batch_norm": True}, "conv_pos_batch_norm"), ({"adapter_attn_dim": 16}, "adapter"),
                       ({"model_type": "wav2vec2"}, "wav2vec2"), ({"feat_extract_norm": "batch"}, "feat_extract_norm"),
                       ({"hidden_act": "mish"}, "hidden_act='mish'"), ({"conv_kernel": [10, 3]}, "lengths differ"),
                       ({"num_conv_pos_embedding_groups": 5}, "num_conv_pos_embedding_groups=5")]:
    with pytest.raises(ValueError, match=message):
      hubert.HubertConfig.from_hf(base | bad, source="cfg.json")
