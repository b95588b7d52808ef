"""Nano-EmoX: frozen CLIP / HuBERT / FaceXFormer towers, their adapters, gated fusion, Qwen2.5 + LoRA.

Corresponds to the authors' `NanoEmoX` (`models/nano_emox.py`). Per sample the towers give:
  frames [T=8] -> CLIP CLS of hidden_states[-2] (+ a learned frame position) -> video Q-Former -> 32 tokens;
  audio clips [C=8] -> HuBERT, mean of the last 4 hidden states, time-mean (+ clip position) ->
    audio Q-Former -> 32 tokens;
  face crops [T=8] -> FaceXFormer pooled vector -> 4 temporal queries + MLP -> 4 tokens;
  speech layers 16/18/22 x CLIP layers 12/16/22 -> gated fusion experts -> 1 token.
The tokens overwrite their placeholder runs in the prompt and Qwen2.5 reads the result. Tower
weights are `FrozenParam`; the LM base weights too; trainable: adapters, fusion and LoRA.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanoemox_jax.model import clip_vision, face, hubert, qwen2
from nanoemox_jax.model.frozen import FrozenParam, freeze
from nanoemox_jax.model.fusion import FusionConfig, MultiScaleFusion
from nanoemox_jax.model.layers import ATTENTION_IMPLEMENTATIONS, DType, Linear, MultiHeadAttention
from nanoemox_jax.model.lora import LoRAConfig, apply_lora
from nanoemox_jax.model.qformer import QFormer, QFormerConfig

MODALITIES = "AVFMT"  # audio, video frames, face, multi (fusion), text (subtitle: handled by the prompt)
IGNORE = -100  # label of positions without loss
# Top-level attributes of `NanoEmoX` by trainable group (the P2E phase filters in `train.phases` select these).
AUDIO_ADAPTER = ("audio_position_embedding", "audio_qformer", "audio_proj")
VIDEO_ADAPTER = ("frame_position_embedding", "video_qformer", "video_proj")
FACE_ADAPTER = ("face_temporal",)
FUSION = ("fusion",)
TOWERS = ("clip", "hubert", "face", "llm")  # frozen; converted from the pretrained checkpoints
TOKEN_ID_FIELDS = ("frame_token_id", "audio_token_id", "face_token_id", "multi_token_id")  # NanoEmoXConfig


@dataclasses.dataclass(frozen=True)
class NanoEmoXConfig:
  """Every size and every ablation switch of the model. Defaults: the paper (`presets.full`)."""

  llm: qwen2.Qwen2Config = qwen2.Qwen2Config()
  clip: clip_vision.CLIPVisionConfig = clip_vision.CLIPVisionConfig()
  hubert: hubert.HubertConfig = hubert.HubertConfig()
  face: face.FaceXFormerConfig = face.FaceXFormerConfig()
  video_qformer: QFormerConfig = QFormerConfig()
  audio_qformer: QFormerConfig = QFormerConfig()
  fusion: FusionConfig = FusionConfig()
  lora: LoRAConfig | None = LoRAConfig(rank=32, alpha=16.0)
  modalities: str = MODALITIES
  fusion_type: str = "experts"  # "experts" (gated multi-scale) or "attention" (the authors' 2-way weighting)
  audio_layers: tuple[int, ...] = (16, 18, 22)  # HuBERT hidden_states indices
  visual_layers: tuple[int, ...] = (12, 16, 22)  # CLIP hidden_states indices
  pairing: str = "layer_wise"  # "layer_wise": (a_i, v_i); "cross_layer": every (a_i, v_j)
  visual_layer: int = -2  # CLIP hidden state whose CLS feeds the video Q-Former
  speech_last_layers: int = 4  # HuBERT states averaged for the audio Q-Former
  num_frames: int = 8
  frame_positions: int = 32  # rows of the frame position table (only num_frames are used)
  num_audio_clips: int = 8
  face_queries: int = 4
  face_heads: int = 4
  face_mlp_hidden: int = 768
  face_input: str = "crop"  # "crop" (detected face, ImageNet-normalised) or "raw_frames" (authors' code)
  dropout: float = 0.1
  normalize_audio: bool = True  # Wav2Vec2FeatureExtractor do_normalize, per clip
  attention_implementation: str = "xla"  # every attention core (LM, Q-Formers, towers): "xla" or "cudnn" (GPU)
  scan_layers: bool = False  # the LM's decoder layers as one jax.lax.scan when no KV cache (compile once)
  remat_layers: bool = False  # recompute each LM decoder layer in the backward pass (jax.checkpoint per layer)
  # Token ids of the placeholders. Defaults: the bundled Qwen2 tokenizer's (`data.tokenizer.BUNDLED`); a model
  # folder records its own tokenizer's (`checkpoints.parts`), and the data pipeline checks them against it.
  frame_token_id: int = 151648  # <FrameHere>
  audio_token_id: int = 151647  # <AudioHere>
  face_token_id: int = 151649  # <FaceHere>
  multi_token_id: int = 151650  # <MultiHere>

  def __post_init__(self):
    for name in ("audio_layers", "visual_layers"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    problems = []
    if set(self.modalities) - set(MODALITIES) or len(set(self.modalities)) != len(self.modalities):
      problems.append(f"modalities={self.modalities!r} must be distinct letters of {MODALITIES!r}")
    if self.fusion_type not in ("experts", "attention"):
      problems.append(f"fusion_type={self.fusion_type!r} is not 'experts' or 'attention'")
    if self.pairing not in ("layer_wise", "cross_layer"):
      problems.append(f"pairing={self.pairing!r} is not 'layer_wise' or 'cross_layer'")
    if self.pairing == "layer_wise" and len(self.audio_layers) != len(self.visual_layers):
      problems.append(f"layer_wise pairing needs as many audio_layers {self.audio_layers} as visual_layers "
                      f"{self.visual_layers}")
    if self.attention_implementation not in ATTENTION_IMPLEMENTATIONS:
      problems.append(f"attention_implementation={self.attention_implementation!r} is not one of "
                      f"{ATTENTION_IMPLEMENTATIONS}")
    if self.face_input not in ("crop", "raw_frames"):
      problems.append(f"face_input={self.face_input!r} is not 'crop' or 'raw_frames'")
    if "M" in self.modalities and self.fusion_type == "experts":
      f = self.fusion
      if f.num_experts != len(self.expert_pairs):
        problems.append(f"fusion.num_experts={f.num_experts} != {len(self.expert_pairs)} expert pairs")
      if (f.audio_dim, f.visual_dim, f.llm_dim) != (self.hubert.hidden_size, self.clip.hidden_size,
                                                   self.llm.hidden_size):
        problems.append(f"fusion audio/visual/llm dims {(f.audio_dim, f.visual_dim, f.llm_dim)} != tower and LM "
                        f"widths {(self.hubert.hidden_size, self.clip.hidden_size, self.llm.hidden_size)}")
    for name, q, width in (("video_qformer", self.video_qformer, self.clip.hidden_size),
                           ("audio_qformer", self.audio_qformer, self.hubert.hidden_size)):
      if q.encoder_hidden_size != width:
        problems.append(f"{name}.encoder_hidden_size={q.encoder_hidden_size} != tower width {width}")
    if self.num_frames > self.frame_positions:
      problems.append(f"num_frames={self.num_frames} > frame_positions={self.frame_positions}")
    for name, layers, n in (("audio_layers", self.audio_layers, self.hubert.num_hidden_layers),
                            ("visual_layers", self.visual_layers, self.clip.num_hidden_layers)):
      if any(not 0 <= i <= n for i in layers):
        problems.append(f"{name}={layers} must index hidden states 0..{n}")
    if not 1 <= self.speech_last_layers <= self.hubert.num_hidden_layers:
      problems.append(f"speech_last_layers={self.speech_last_layers} is not in [1, {self.hubert.num_hidden_layers}]")
    if problems:
      raise ValueError("NanoEmoXConfig: " + "; ".join(problems))

  @property
  def expert_pairs(self) -> tuple[tuple[int, int], ...]:
    """(speech layer, vision layer) per fusion expert."""
    if self.pairing == "layer_wise":
      return tuple(zip(self.audio_layers, self.visual_layers))
    return tuple(itertools.product(self.audio_layers, self.visual_layers))

  @property
  def placeholder_counts(self) -> dict[int, int]:
    """Placeholder token id -> tokens per sample for every enabled branch."""
    counts = {"V": (self.frame_token_id, self.video_qformer.num_query_tokens),
              "A": (self.audio_token_id, self.audio_qformer.num_query_tokens),
              "F": (self.face_token_id, self.face_queries), "M": (self.multi_token_id, 1)}
    return dict(v for k, v in counts.items() if k in self.modalities)


class TowerFeatures(NamedTuple):
  frames: jax.Array  # [B, T, Dv] CLS of hidden_states[visual_layer]
  audio: jax.Array  # [B, C, Da] mean of the last hidden states, time-mean per clip
  faces: jax.Array  # [B, T, 256] pooled FaceXFormer vectors
  visual_multi: jax.Array  # [B, E, T, Dv] CLS of each expert's vision layer
  audio_multi: jax.Array  # [B, E, C, Da] time-mean of each expert's speech layer


class Batch(NamedTuple):
  """One training / inference batch (numpy or jax arrays).

  input_ids, attention_mask, labels: int32 [B, S] (labels = IGNORE where no loss; unshifted);
  frames: float32 [B, T, 3, 224, 224] (CLIP-normalised); faces: float32 [B, T, 3, 224, 224];
  audio: float32 [B, C, 32000] (16 kHz); has_video, has_audio: bool [B] (False: modality missing).
  features: the frozen towers' outputs for these media (`data.features` caches them); when given, the
  towers are not run and frames, faces and audio are None.
  """

  input_ids: jax.Array
  attention_mask: jax.Array
  labels: jax.Array
  frames: jax.Array | None
  faces: jax.Array | None
  audio: jax.Array | None
  has_video: jax.Array
  has_audio: jax.Array
  features: TowerFeatures | None = None


class Output(NamedTuple):
  logits: jax.Array  # float32 [B, S, V]
  loss: jax.Array  # float32 [], mean next-token cross-entropy over labelled positions
  gate_weights: jax.Array | None  # [B, E] fusion expert weights (None without fusion experts)


class FaceTemporal(nnx.Module):
  """Learned queries attend over the per-frame face vectors, then an MLP to the LM width.

  Corresponds to the authors' `FacialEncoderFxformer` (`query`, `attn`, `face_proj`): [B, T, 256] -> [B, Q, L].
  """

  def __init__(self, cfg: NanoEmoXConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    width = cfg.face.decoder_hidden_size
    self.query = nnx.Param(jax.random.normal(rngs.params(), (cfg.face_queries, width), param_dtype))
    self.attn = MultiHeadAttention(width, cfg.face_heads, **kw)
    self.fc1 = Linear(width, cfg.face_mlp_hidden, use_bias=True, **kw)
    self.fc2 = Linear(cfg.face_mlp_hidden, cfg.llm.hidden_size, use_bias=True, **kw)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, faces: jax.Array) -> jax.Array:
    query = jnp.broadcast_to(self.query[...].astype(faces.dtype), (faces.shape[0],) + self.query.shape)
    h = self.attn(query, faces)  # [B, Q, 256]: no residual, as the authors
    return self.fc2(self.dropout(jax.nn.gelu(self.fc1(h), approximate=False)))


class AttentionFusion(nnx.Module):
  """The authors' `encode_multi_attention` (Tab. 8 "attention fusion"): two unnormalised weights
  from the time-means of the video and audio features, a weighted sum, projection to one token."""

  def __init__(self, cfg: NanoEmoXConfig, *, rngs: nnx.Rngs, dtype: DType, param_dtype: DType):
    kw = dict(use_bias=True, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    width = max(cfg.clip.hidden_size, cfg.hubert.hidden_size)
    self.multi_video_embs = Linear(cfg.clip.hidden_size, width, **kw)
    self.multi_audio_embs = Linear(cfg.hubert.hidden_size, width, **kw)
    self.attention_mlp = Linear(2 * width, width, **kw)
    self.fc_att = Linear(width, 2, **kw)
    self.llm_proj = Linear(width, cfg.llm.hidden_size, **kw)

  def __call__(self, video: jax.Array, audio: jax.Array) -> jax.Array:  # [B, T, Dv], [B, C, Da] -> [B, 1, L]
    v, a = self.multi_video_embs(video.mean(axis=1)), self.multi_audio_embs(audio.mean(axis=1))  # [B, W]
    weights = self.fc_att(self.attention_mlp(jnp.concatenate([v, a], axis=-1)))  # [B, 2]
    return self.llm_proj(weights[:, :1] * v + weights[:, 1:] * a)[:, None, :]


class NanoEmoX(nnx.Module):
  """The whole model. Branches that `cfg.modalities` leaves out are not built."""

  def __init__(self, cfg: NanoEmoXConfig, *, rngs: nnx.Rngs, dtype: DType = jnp.float32,
               param_dtype: DType = jnp.float32, tower_dtype: DType | None = None):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.config, self.dtype = cfg, dtype
    m = cfg.modalities
    needs_clip, needs_hubert = bool(set(m) & set("VM")), bool(set(m) & set("AM"))
    self.clip = freeze(clip_vision.CLIPVisionModel(cfg.clip, **kw), tower_dtype) if needs_clip else None
    self.hubert = freeze(hubert.HubertModel(cfg.hubert, **kw), tower_dtype) if needs_hubert else None
    self.face = freeze(face.FaceXFormerEncoder(cfg.face, **kw), tower_dtype) if "F" in m else None
    init = lambda shape: nnx.Param(0.02 * jax.random.normal(rngs.params(), shape, param_dtype))
    if "V" in m:
      self.frame_position_embedding = init((cfg.frame_positions, cfg.clip.hidden_size))
      self.video_qformer = QFormer(cfg.video_qformer, **kw)
      self.video_proj = Linear(cfg.video_qformer.hidden_size, cfg.llm.hidden_size, use_bias=True, **kw)
    if "A" in m:
      self.audio_position_embedding = init((cfg.num_audio_clips, cfg.hubert.hidden_size))
      self.audio_qformer = QFormer(cfg.audio_qformer, **kw)
      self.audio_proj = Linear(cfg.audio_qformer.hidden_size, cfg.llm.hidden_size, use_bias=True, **kw)
    if "F" in m:
      self.face_temporal = FaceTemporal(cfg, **kw)
    if "M" in m:
      self.fusion = MultiScaleFusion(cfg.fusion, **kw) if cfg.fusion_type == "experts" else AttentionFusion(cfg, **kw)
    self.llm = freeze(qwen2.Qwen2ForCausalLM(cfg.llm, scan_layers=cfg.scan_layers, remat_layers=cfg.remat_layers,
                                           **kw), tower_dtype)
    if cfg.lora is not None:
      apply_lora(self.llm, cfg.lora, rngs=rngs)
    self.set_attributes(attention_implementation=cfg.attention_implementation)  # every attention core

  def tower_features(self, frames: jax.Array, faces: jax.Array, audio: jax.Array) -> TowerFeatures:
    """Run the frozen towers (no gradient). frames/faces [B, T, 3, H, W]; audio [B, C, S]."""
    cfg, b = self.config, frames.shape[0]
    zeros = lambda *shape: jnp.zeros(shape, self.dtype)
    t, c = frames.shape[1], audio.shape[1]
    feats = dict(frames=zeros(b, t, cfg.clip.hidden_size), audio=zeros(b, c, cfg.hubert.hidden_size),
                 faces=zeros(b, t, cfg.face.decoder_hidden_size), visual_multi=zeros(b, 0, t, cfg.clip.hidden_size),
                 audio_multi=zeros(b, 0, c, cfg.hubert.hidden_size))
    pairs = cfg.expert_pairs
    if self.clip is not None:
      n = cfg.clip.num_hidden_layers + 1
      top = cfg.visual_layer % n
      states = self.clip(frames.reshape((b * t,) + frames.shape[2:]), up_to=max([top, *cfg.visual_layers]))
      cls = lambda i: states[i][:, 0].reshape(b, t, -1)  # [B, T, Dv]
      feats["frames"] = cls(top)
      feats["visual_multi"] = jnp.stack([cls(v) for _, v in pairs], axis=1)
    if self.hubert is not None:
      clips = audio.reshape(b * c, -1)
      if cfg.normalize_audio:
        clips = hubert.normalize_waveform(clips)
      out = self.hubert(clips)
      # The last `k` states as transformers 4.x returned them (the authors' version): the final one normalised.
      last = list(out.hidden_states[-cfg.speech_last_layers:-1]) + [out.last_hidden_state]
      feats["audio"] = jnp.mean(jnp.stack(last), axis=(0, 2)).reshape(b, c, -1)
      feats["audio_multi"] = jnp.stack([out.hidden_states[a].mean(axis=1).reshape(b, c, -1) for a, _ in pairs], 1)
    if self.face is not None:
      feats["faces"] = self.face(faces.reshape((b * t,) + faces.shape[2:])).pooled.reshape(b, t, -1)
    return TowerFeatures(**{k: jax.lax.stop_gradient(v) for k, v in feats.items()})

  def branch_tokens(self, feats: TowerFeatures) -> tuple[dict[int, jax.Array], jax.Array | None]:
    """Placeholder id -> LM embeddings [B, n, L] of every enabled branch, and the fusion gate weights."""
    cfg, tokens, gate = self.config, {}, None
    if "V" in cfg.modalities:
      x = feats.frames + self.frame_position_embedding[:feats.frames.shape[1]].astype(self.dtype)
      tokens[cfg.frame_token_id] = self.video_proj(self.video_qformer(x))
    if "A" in cfg.modalities:
      x = feats.audio + self.audio_position_embedding[:feats.audio.shape[1]].astype(self.dtype)
      tokens[cfg.audio_token_id] = self.audio_proj(self.audio_qformer(x))
    if "F" in cfg.modalities:
      tokens[cfg.face_token_id] = self.face_temporal(feats.faces)
    if "M" in cfg.modalities:
      if cfg.fusion_type == "experts":
        tokens[cfg.multi_token_id], gate = self.fusion(feats.audio_multi, feats.visual_multi)
      else:
        tokens[cfg.multi_token_id] = self.fusion(feats.frames, feats.audio)
    return tokens, gate

  def present(self, has_video: jax.Array, has_audio: jax.Array) -> dict[int, jax.Array]:
    """Placeholder id -> [B] bool: whether that branch's inputs exist for the sample."""
    cfg = self.config
    return {cfg.frame_token_id: has_video, cfg.face_token_id: has_video, cfg.audio_token_id: has_audio,
            cfg.multi_token_id: has_video & has_audio}

  def embed_inputs(self, input_ids: jax.Array, tokens: dict[int, jax.Array],
                   present: dict[int, jax.Array]) -> jax.Array:
    """Token embeddings [B, S, L] with each placeholder run overwritten by its branch tokens (in order).

    A missing modality's placeholders get zeros. Counts and contiguity are checked on the host by
    `check_placeholders` before batches reach the jitted step.
    """
    x = self.llm.embed(input_ids)
    for token_id, emb in tokens.items():
      is_slot = input_ids == token_id  # [B, S]
      rank = jnp.clip(jnp.cumsum(is_slot, axis=1) - 1, 0, emb.shape[1] - 1)  # k-th placeholder -> k-th token
      value = jnp.take_along_axis(emb.astype(x.dtype), rank[..., None], axis=1)  # [B, S, L]
      value = jnp.where(present[token_id][:, None, None], value, 0)
      x = jnp.where(is_slot[..., None], value, x)
    return x

  def input_embeddings(self, batch: Batch) -> tuple[jax.Array, jax.Array | None]:
    """The LM's input embeddings [B, S, L] (branch tokens spliced in; the towers run unless `batch.features`
    is given) and the fusion gate weights [B, E] (None without fusion)."""
    feats = batch.features if batch.features is not None else self.tower_features(batch.frames, batch.faces,
                                                                                   batch.audio)
    tokens, gate = self.branch_tokens(feats)
    return self.embed_inputs(batch.input_ids, tokens, self.present(batch.has_video, batch.has_audio)), gate

  def hidden_states(self, batch: Batch) -> tuple[jax.Array, jax.Array | None]:
    """The LM's final hidden states [B, S, D] (normed) and the fusion gate weights [B, E] (None without fusion)."""
    embeds, gate = self.input_embeddings(batch)
    hidden, _ = self.llm.hidden_states(None, batch.attention_mask, inputs_embeds=embeds)
    return hidden, gate

  def __call__(self, batch: Batch) -> Output:
    hidden, gate = self.hidden_states(batch)
    logits = self.llm.logits(hidden)
    return Output(logits, next_token_loss(logits, batch.labels), gate)

  def target_nll(self, batch: Batch, num_targets: int) -> tuple[jax.Array, jax.Array]:
    """`next_token_nll` with logits only at the labelled positions: (sum of cross-entropies, target count).

    The vocabulary projection and softmax run on [B, num_targets] rows instead of [B, S]; `num_targets`
    (static) must be >= every row's number of labelled targets (`num_targets_for` gives a bucketed value).
    """
    hidden, _ = self.hidden_states(batch)
    pos, targets = labelled_positions(batch.labels, num_targets)  # [B, K]
    picked = jnp.take_along_axis(hidden, pos[..., None], axis=1)  # [B, K, D]
    return token_nll(self.llm.logits(picked), targets)


def token_nll(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum of fp32 cross-entropies of `targets` [B, K] under `logits` [B, K, V], count of targets != IGNORE).

  Sums rather than a mean, so micro-batches accumulate to exactly the full batch's loss.
  """
  valid = targets != IGNORE
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(valid, nll, 0.0)), valid.sum().astype(jnp.float32)


def next_token_nll(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`token_nll` of predicting labels[:, t+1] from logits[:, t] (labels unshifted, IGNORE where no loss)."""
  return token_nll(logits[:, :-1], labels[:, 1:])


def next_token_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy over labelled positions (0 when there are none)."""
  total, count = next_token_nll(logits, labels)
  return total / jnp.maximum(count, 1.0)


def labelled_positions(labels: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The first `k` positions t whose next label labels[:, t+1] is not IGNORE, in order, and those targets.

  labels [B, S] -> (positions [B, k], targets [B, k]); rows with fewer targets are padded with IGNORE.
  """
  targets = labels[:, 1:]
  valid = targets != IGNORE
  pos = jnp.argsort(~valid, axis=1, stable=True)[:, :k]  # labelled positions first, each group in order
  picked = jnp.take_along_axis(targets, pos, axis=1)
  return pos, jnp.where(jnp.take_along_axis(valid, pos, axis=1), picked, IGNORE)


def num_targets_for(labels, minimum: int = 16) -> int:
  """Host-side: the static `num_targets` for `labels` (numpy, any leading axes): the largest row's count of
  labelled targets rounded up to a power of two (at least `minimum`), so that few compilations occur."""
  labels = np.asarray(labels)
  count = int((labels[..., 1:] != IGNORE).sum(-1).max(initial=0))
  return min(1 << (max(count, minimum) - 1).bit_length(), labels.shape[-1] - 1)


def check_placeholders(input_ids, counts: dict[int, int], where: str = "batch") -> None:
  """Host-side check (numpy): every row holds exactly `n` contiguous copies of each placeholder id."""
  ids = np.asarray(input_ids)
  for row, seq in enumerate(ids):
    for token_id, n in counts.items():
      pos = np.flatnonzero(seq == token_id)
      if len(pos) != n or (n and pos[-1] - pos[0] != n - 1):
        raise ValueError(f"{where}: row {row} has {len(pos)} placeholder(s) {token_id} "
                         f"{'(not contiguous) ' if len(pos) == n else ''}where the model expects {n} contiguous")


def abstract_model(cfg: NanoEmoXConfig, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32,
                   tower_dtype: DType | None = None) -> NanoEmoX:
  """The model with `ShapeDtypeStruct` leaves: no memory is allocated."""
  return nnx.eval_shape(lambda: NanoEmoX(cfg, rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype,
                                         tower_dtype=tower_dtype))


def init_model(cfg: NanoEmoXConfig, seed: int = 0, dtype: DType = jnp.float32, param_dtype: DType = jnp.float32,
               tower_dtype: DType | None = None) -> NanoEmoX:
  """A model whose trainable parameters are initialised and whose frozen weights are still abstract.

  The jitted initialiser returns only the non-frozen state, so the 2B frozen weights are never
  drawn at random; fill them with `restore_into(..., FrozenParam)` from converted checkpoints.
  """
  model = abstract_model(cfg, dtype, param_dtype, tower_dtype)
  init = jax.jit(lambda: nnx.state(NanoEmoX(cfg, rngs=nnx.Rngs(seed), dtype=dtype, param_dtype=param_dtype,
                                            tower_dtype=tower_dtype), nnx.Not(FrozenParam)))
  nnx.update(model, init())
  return model

