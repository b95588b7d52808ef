"""The composed model on the `tiny` preset: splice, loss, gradients per P2E phase, missing modalities, shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanoemox_jax.model.presets import PRESETS, get
from nanoemox_jax.model import lora
from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model.nanoemox import IGNORE, Batch, NanoEmoX, abstract_model, check_placeholders, next_token_loss
from nanoemox_jax.train.summary import count, group_counts, phase_counts, WEIGHTS
from nanoemox_jax.train import phases

ROOT = Path(__file__).resolve().parents[1]
CFG = get("tiny")
S = 96


@pytest.fixture(scope="module")
def model() -> NanoEmoX:
  m = NanoEmoX(CFG, rngs=nnx.Rngs(0))
  key = jax.random.key(7)
  for layer in lora.lora_layers(m):  # B = 0 at init would zero every LoRA gradient of A
    key, sub = jax.random.split(key)
    layer.lora_b[...] = 0.05 * jax.random.normal(sub, layer.lora_b[...].shape)
  m.eval()
  return m


def make_batch(seed: int, b: int = 2, has_video=None, has_audio=None) -> Batch:
  rs = np.random.RandomState(seed)
  ids = rs.randint(0, 5000, (b, S)).astype(np.int32)
  for row in range(b):
    pos = 3 + row  # rows place their placeholder runs at different offsets
    for token_id, n in CFG.placeholder_counts.items():
      ids[row, pos:pos + n] = token_id
      pos += n + 2
  labels = np.where(np.arange(S) >= S - 20, ids, IGNORE).astype(np.int32)
  mask = np.ones((b, S), np.int32)
  mask[1, :2] = 0  # a little left padding
  frames = rs.randn(b, CFG.num_frames, 3, 224, 224).astype(np.float32)
  faces = rs.randn(b, CFG.num_frames, 3, 224, 224).astype(np.float32)
  audio = rs.randn(b, CFG.num_audio_clips, 32000).astype(np.float32)
  has_video = np.ones(b, bool) if has_video is None else np.asarray(has_video)
  has_audio = np.ones(b, bool) if has_audio is None else np.asarray(has_audio)
  return Batch(*map(jnp.asarray, (ids, mask, labels, frames, faces, audio, has_video, has_audio)))


def test_splice_lands_on_exactly_the_placeholders(model):
  batch = make_batch(0)
  check_placeholders(batch.input_ids, CFG.placeholder_counts)
  out = model(batch)
  tokens, _ = model.branch_tokens(model.tower_features(batch.frames, batch.faces, batch.audio))
  by_hand = np.array(model.llm.embed(batch.input_ids))  # placed with a Python loop, position by position
  ids = np.asarray(batch.input_ids)
  for row in range(ids.shape[0]):
    for token_id, emb in tokens.items():
      for k, pos in enumerate(np.flatnonzero(ids[row] == token_id)):
        by_hand[row, pos] = np.asarray(emb)[row, k]
  hidden, _ = model.llm.hidden_states(None, batch.attention_mask, inputs_embeds=jnp.asarray(by_hand))
  np.testing.assert_allclose(np.asarray(out.logits), np.asarray(model.llm.logits(hidden)), atol=1e-5, rtol=0)
  # and the placeholders really changed the prompt's embeddings
  plain = np.asarray(model.llm.embed(batch.input_ids))
  assert np.abs(by_hand - plain).max() > 1e-3


def test_loss_is_masked_next_token_cross_entropy(model):
  batch = make_batch(1)
  out = model(batch)
  logits, labels = np.asarray(out.logits, np.float64), np.asarray(batch.labels)
  nll = []
  for row in range(labels.shape[0]):
    for t in range(S - 1):
      if labels[row, t + 1] != IGNORE:
        z = logits[row, t]
        nll.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[labels[row, t + 1]])
  assert np.isfinite(float(out.loss))
  np.testing.assert_allclose(float(out.loss), np.mean(nll), rtol=1e-5)
  assert float(next_token_loss(out.logits, jnp.full_like(batch.labels, IGNORE))) == 0.0


@pytest.mark.parametrize("phase", phases.PHASES)
def test_gradients_reach_exactly_the_phase_parameters(model, phase):
  batch = make_batch(2)
  grads = nnx.grad(lambda m: m(batch).loss, argnums=nnx.DiffState(0, phases.trainable(phase)))(model)
  flat = {".".join(map(str, p)): np.asarray(v) for p, v in nnx.to_flat_state(grads)}
  expected = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, phases.trainable(phase)))}
  assert set(flat) == expected and expected
  zero = [k for k, g in flat.items() if not np.any(g)]
  assert not zero, f"phase {phase}: no gradient reaches {zero}"
  assert all(np.isfinite(g).all() for g in flat.values())
  frozen = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, FrozenParam))}
  assert not frozen & set(flat)
  if phase != "3":
    assert not any("lora_" in k for k in flat)


def test_missing_modalities_run_and_are_ignored(model):
  batch = make_batch(3, b=3, has_video=[True, False, True], has_audio=[True, True, False])
  out = model(batch)
  assert np.isfinite(float(out.loss))
  changed = batch._replace(frames=batch.frames.at[1].multiply(-3.0), faces=batch.faces.at[1].add(5.0),
                           audio=batch.audio.at[2].multiply(-2.0))
  again = model(changed)
  np.testing.assert_allclose(np.asarray(again.logits)[1:], np.asarray(out.logits)[1:], atol=1e-5, rtol=0)
  assert np.abs(np.asarray(again.logits)[0] - np.asarray(out.logits)[0]).max() == 0.0


def test_jitted_forward_compiles_once_per_shape_bucket(model):
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, batch: nnx.merge(graphdef, state)(batch).loss)
  a, b = forward(state, make_batch(4)), forward(state, make_batch(5, has_audio=[True, False]))
  assert float(a) != float(b)
  assert forward._cache_size() == 1


def test_placeholder_check_names_the_row():
  batch = make_batch(6)
  ids = np.asarray(batch.input_ids).copy()
  ids[1, np.flatnonzero(ids[1] == CFG.audio_token_id)[0]] = 11
  with pytest.raises(ValueError, match=f"row 1 has {CFG.audio_qformer.num_query_tokens - 1} placeholder"):
    check_placeholders(ids, CFG.placeholder_counts)


def test_full_preset_counts_and_summary_cli():
  full = abstract_model(get("full"))
  groups, per_phase = group_counts(full), phase_counts(full)
  total = count(full, WEIGHTS)
  assert sum(groups.values()) == total
  assert 2.2e9 < total < 2.4e9  # paper: ~2.2B (towers + LM 2.25B; adapters, fusion and LoRA r=32 on top)
  assert groups["CLIP ViT tower (frozen)"] == 303_179_776
  assert groups["Qwen2 LM base (frozen)"] == 1_543_714_304
  assert per_phase["3"] == per_phase["2"] + groups["LoRA adapters"]
  assert per_phase["2"] == sum(groups[k] for k in list(groups)[4:8])
  run = subprocess.run([sys.executable, "-m", "nanoemox_jax.train.summary", "--preset", "full"], cwd=ROOT,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  assert f"{total:,}" in run.stdout and f"{per_phase['1b']:,}" in run.stdout


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_abstractly(name):
  cfg = get(name)
  m = abstract_model(cfg)
  assert count(m, nnx.LoRAParam) > 0
  assert cfg.placeholder_counts[cfg.multi_token_id] == 1


def test_config_errors_name_the_field():
  import dataclasses
  with pytest.raises(ValueError, match="fusion.num_experts=3 != 9"):
    dataclasses.replace(CFG, pairing="cross_layer")
  with pytest.raises(ValueError, match="modalities"):
    dataclasses.replace(CFG, modalities="AVX")


@pytest.mark.parametrize("overrides", [
    dict(modalities="AT"), dict(modalities="VFT"), dict(modalities="AVFT"),  # subsets, fusion off
    dict(fusion_type="attention"), dict(weighting="average"), dict(pairing="cross_layer", experts=9),
    dict(audio_layers=(3, 4), visual_layers=(2, 4), experts=2), dict(visual_tokens=16),
])
def test_ablation_switches_build_and_run_abstractly(overrides):
  import dataclasses
  overrides = dict(overrides)
  fusion = dataclasses.replace(CFG.fusion, weighting=overrides.pop("weighting", CFG.fusion.weighting),
                               num_experts=overrides.pop("experts", CFG.fusion.num_experts))
  video_q = dataclasses.replace(CFG.video_qformer,
                                num_query_tokens=overrides.pop("visual_tokens", CFG.video_qformer.num_query_tokens))
  cfg = dataclasses.replace(CFG, fusion=fusion, video_qformer=video_q, **overrides)
  model = abstract_model(cfg)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), make_batch(0))
  out = nnx.eval_shape(lambda m, b: m(b), model, batch)
  assert out.logits.shape == (2, S, CFG.llm.vocab_size) and out.loss.shape == ()
  expects_gate = "M" in cfg.modalities and cfg.fusion_type == "experts"
  assert (out.gate_weights is not None) == expects_gate
  if expects_gate:
    assert out.gate_weights.shape == (2, len(cfg.expert_pairs))
  built = {p[0] for p, _ in nnx.to_flat_state(nnx.state(model))}
  assert ("fusion" in built) == ("M" in cfg.modalities)
  assert ("face" in built) == ("F" in cfg.modalities)


def test_attention_implementation_reaches_every_attention_core(monkeypatch):
  """`attention_implementation` is model-wide: every `jax.nn.dot_product_attention` call of an eval-mode forward
  (LM, Q-Formers, CLIP, HuBERT, Swin, face and fusion attention) carries it; in training mode the attentions
  with probability dropout (Q-Formers, fusion) take the explicit path instead, the others stay fused."""
  import dataclasses
  from nanoemox_jax.model import layers, qformer, qwen2, swin
  fused = jax.nn.dot_product_attention
  calls: list[tuple[str | None, int]] = []

  def recording(q, k, v, bias=None, mask=None, *, implementation=None, **kw):
    calls.append((implementation, q.shape[1]))
    return fused(q, k, v, bias, mask, **kw)  # traced only: "cudnn" would need a GPU

  monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), make_batch(0))
  counts = {}
  for implementation in ("xla", "cudnn"):
    model = abstract_model(dataclasses.replace(CFG, attention_implementation=implementation))
    kinds = {type(m) for _, m in nnx.iter_modules(model) if hasattr(m, "attention_implementation")}
    assert kinds == {layers.MultiHeadAttention, qformer.MultiHeadAttention, swin.ShiftedWindowAttention,
                     qwen2.Qwen2Attention}
    assert {m.attention_implementation for _, m in nnx.iter_modules(model)
            if hasattr(m, "attention_implementation")} == {implementation}
    for mode in ("eval", "train"):
      getattr(model, mode)()
      calls.clear()
      nnx.eval_shape(lambda m, b: m(b).loss, model, batch)
      assert {c[0] for c in calls} == {None if implementation == "xla" else "cudnn"}
      counts[implementation, mode] = len(calls)
      if mode == "eval":  # every attention ran fused: LM rows, Q-Former queries, Swin windows, tower tokens
        lengths = {c[1] for c in calls}
        assert {S, CFG.video_qformer.num_query_tokens, CFG.face.swin.window_size ** 2} <= lengths
  assert counts["xla", "eval"] == counts["cudnn", "eval"] > counts["cudnn", "train"] >= CFG.llm.num_hidden_layers
