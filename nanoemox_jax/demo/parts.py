"""What the CPU demo needs that the real run gets from downloads: a corpus and pretrained parts.

  ensure_corpus(folder)  the synthetic corpus (`demo/corpus.py`) and its manifests, `manifests/<set>_<split>.jsonl`
  ensure_model(folder)   a model folder (`checkpoints.parts`): random frozen towers and a stand-in language model

Both are written once per folder and seed: a folder finished with other settings is refused (`DONE` records them).

Nano-EmoX starts from pretrained CLIP, HuBERT, FaceXFormer and Qwen2.5. Offline there are none, so the
demo's towers are randomly initialised (their pooled features still separate the corpus's classes: the
media carry the labels in pitch, hue and drawn expression) and its LM is a `demo`-preset Qwen2 trained for
`lm_steps` updates on the training split's prompts and answers. A random LM cannot read soft tokens at all,
the skill a pretrained LLM brings to P2E; so in those examples each modality's slots hold, with probability
`hint_rate`, the token embeddings of the answer's label words, otherwise zeros or random vectors: the LM
learns to read words from the slots and to ignore what carries none (as untrained adapters' outputs). Media
never reach this stage: the adapters trained by P2E must learn to put the label into the slots from the
media alone, and the held-out table after each phase shows whether they did.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanoemox_jax.model.presets import get
from nanoemox_jax.data import pipeline, templates
from nanoemox_jax.data.manifest import Record, read_jsonl, write_jsonl
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.demo import corpus
from nanoemox_jax.model import qwen2
from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model.nanoemox import (
  IGNORE,
  NanoEmoX,
  NanoEmoXConfig,
  labelled_positions,
  num_targets_for,
)
from nanoemox_jax.checkpoints.params_io import save_params
from nanoemox_jax.train.step import OptimConfig, make_optimizer

DONE = "DONE"
EMPTY, NOISE = -1, -2  # `_lm_examples` hint codes of a modality slot that holds no label word
LM_BATCH = 12
LM_LENGTH = 384


def finished(done: Path, settings: str) -> bool:
  """Whether the folder of marker `done` was completed with `settings`; a folder completed with other settings
  (another seed, an older corpus without the dev split) raises ValueError naming the marker."""
  if not done.exists():
    return False
  found = done.read_text().strip()
  if found != settings:
    raise ValueError(f"{done}: written with {found!r}, this run needs {settings!r}; use another --workdir")
  return True


def ensure_corpus(folder: str | Path, seed: int = 0, per_class: int = corpus.DEFAULT_PER_CLASS) -> Path:
  """Writes the corpus and `manifests/` under `folder` unless already complete; returns the manifests folder."""
  folder = Path(folder)
  manifests = folder / "manifests"
  settings = f"seed={seed} per_class={per_class} splits={','.join(corpus.SPLITS)}"
  if finished(manifests / DONE, settings):
    return manifests
  manifests.mkdir(parents=True, exist_ok=True)
  for dataset, splits in corpus.write_corpus(folder, seed, per_class).items():
    for split, (annotation, media_root) in splits.items():
      records, missing = read_source(dataset, annotation, split, media_root)
      if missing:
        raise FileNotFoundError(f"demo corpus {dataset}/{split}: media missing after writing: {missing[:3]}")
      write_jsonl(records, manifests / f"{dataset}_{split}.jsonl")
  (manifests / DONE).write_text(settings + "\n")
  return manifests


def _lm_examples(records: Sequence[Record], tokenizer: Tokenizer, cfg: NanoEmoXConfig, rng: random.Random,
                 hint_rate: float) -> tuple[np.ndarray, ...]:
  """ids, mask, labels [B, L] of `[BOS] prompt answer [EOS]`; hint [B, L]: the label-word token that fills
  each modality slot, EMPTY (zeros, as a masked modality) or NOISE (a random vector, as an untrained adapter
  gives). Each modality is drawn independently, as P2E's phases present one, two or all branches."""
  counts = pipeline.template_counts(tokenizer, cfg)
  slots = np.array(sorted(cfg.placeholder_counts))
  shape = (LM_BATCH, LM_LENGTH)
  ids, labels = np.full(shape, tokenizer.pad_id, np.int32), np.full(shape, IGNORE, np.int32)
  mask, hint = np.zeros(shape, np.int32), np.full(shape, EMPTY, np.int32)
  for i in range(LM_BATCH):
    record = rng.choice(records)
    prompt, target = templates.build_example(record, rng=rng, **counts)
    row, row_labels, _ = pipeline.encode(tokenizer, prompt, target, LM_LENGTH)
    n = len(row)
    ids[i, :n], labels[i, :n], mask[i, :n] = row, row_labels, 1
    words = tokenizer.encode(" " + " ".join(record.labels)) if record.labels else []
    for slot in slots:  # each modality's slots: the label words (hint_rate), else empty or noise, independently
      where = np.flatnonzero(row == slot)
      if words and rng.random() < hint_rate:
        hint[i, where] = np.resize(words, len(where))
      elif rng.random() < 0.5:
        hint[i, where] = NOISE
  return ids, mask, labels, hint


def pretrain_lm(cfg: NanoEmoXConfig, tokenizer: Tokenizer, records: Sequence[Record], steps: int, seed: int = 0,
                hint_rate: float = 0.7, learning_rate: float = 3e-3) -> qwen2.Qwen2ForCausalLM:
  """The stand-in LM (see the module docstring): AdamW on the answers' cross-entropy, `steps` updates.

  Each example's loss is the mean over its own answer tokens: a token mean over the batch would let the long
  answers (ERG replies, descriptions) outweigh the one label word that the slots reveal, and the LM then
  never learns to read them (measured: held-out label reading at chance after 200 and 500 updates).

  Tokens outside the corpus (all but a few thousand of the 151,936) get zero embeddings and no gradient,
  so their logits are exactly 0 and the full-vocabulary cross-entropy needs only the corpus tokens' logits:
  logsumexp over the vocabulary = logaddexp(logsumexp(corpus logits), log(#others)). The tied vocabulary
  projection would otherwise be ~95% of the step.
  """
  if not cfg.llm.tie_word_embeddings:
    raise ValueError("pretrain_lm: the stand-in LM ties its embeddings (the corpus-vocabulary softmax reads them)")
  rng = random.Random(seed)
  corpus_ids = set()
  for record in records:  # tokenised as training rows are: prompt and target separately
    prompt, target = templates.build_example(record, **pipeline.template_counts(tokenizer, cfg))
    corpus_ids.update(pipeline.encode(tokenizer, prompt, target, 1 << 16)[0].tolist())
  vocab = np.array(sorted(corpus_ids), np.int32)  # [V']
  to_sub = np.full(cfg.llm.vocab_size, -1, np.int32)
  to_sub[vocab] = np.arange(len(vocab))
  lm = qwen2.Qwen2ForCausalLM(cfg.llm, rngs=nnx.Rngs(seed))
  table = lm.model.embed_tokens.embedding
  table[...] = jnp.zeros_like(table[...]).at[vocab].set(table[...][vocab])
  others = math.log(cfg.llm.vocab_size - len(vocab))
  optimizer = nnx.Optimizer(lm, make_optimizer(OptimConfig(learning_rate, steps, warmup_steps=min(10, steps))),
                            wrt=nnx.Param)
  slots, vocab = jnp.array(sorted(cfg.placeholder_counts)), jnp.asarray(vocab)

  @nnx.jit(static_argnums=7)
  def step(lm, optimizer, ids, mask, labels, hint, key, num_targets):
    def loss(lm):
      noise = jax.random.normal(key, hint.shape + (cfg.llm.hidden_size,))  # [B, L, D]
      words = lm.embed(jnp.maximum(hint, 0))
      filled = jnp.where((hint >= 0)[..., None], words, jnp.where((hint == NOISE)[..., None], noise, 0.0))
      x = jnp.where(jnp.isin(ids, slots)[..., None], filled, lm.embed(ids))  # [B, L, D]
      hidden, _ = lm.hidden_states(None, mask, inputs_embeds=x)
      pos, targets = labelled_positions(labels, num_targets)  # [B, K], targets already sub-vocabulary ids
      picked = jnp.take_along_axis(hidden, pos[..., None], axis=1)  # [B, K, D]
      logits = jnp.einsum("bkd,vd->bkv", picked, lm.embed(vocab))  # [B, K, V']
      valid = targets != IGNORE
      lse = jnp.logaddexp(jax.nn.logsumexp(logits, axis=-1), others)
      nll = lse - jnp.take_along_axis(logits, jnp.maximum(targets, 0)[..., None], axis=-1)[..., 0]
      per_row = jnp.sum(jnp.where(valid, nll, 0.0), axis=1) / jnp.maximum(valid.sum(axis=1), 1)  # [B]
      return jnp.mean(per_row)

    value, grads = nnx.value_and_grad(loss)(lm)
    optimizer.update(lm, grads)
    return value

  for i in range(steps):
    ids, mask, labels, hint = _lm_examples(records, tokenizer, cfg, rng, hint_rate)
    sub_labels = np.where(labels == IGNORE, IGNORE, to_sub[np.maximum(labels, 0)])
    if (sub_labels == -1).any():
      raise AssertionError("pretrain_lm: a target token is outside the corpus vocabulary")
    value = step(lm, optimizer, ids, mask, sub_labels, hint, jax.random.key(seed * 100_003 + i),
                 num_targets_for(labels))
    if (i + 1) % 25 == 0 or i + 1 == steps:
      print(f"stand-in LM pretraining: step {i + 1}/{steps}, loss {float(value):.4f}", flush=True)
  return lm


def ensure_model(folder: str | Path, preset: str, tokenizer: Tokenizer, corpus_folder: str | Path, lm_steps: int,
                 seed: int = 0) -> Path:
  """Writes `folder` (nanoemox.json + clip/ hubert/ face/ llm/, as the converters lay them out) unless complete."""
  folder = Path(folder)
  settings = f"preset={preset} seed={seed} lm_steps={lm_steps}"
  if finished(folder / DONE, settings):
    return folder
  cfg = get(preset)
  model = nnx.eval_shape(lambda: NanoEmoX(cfg, rngs=nnx.Rngs(seed)))
  nnx.update(model, jax.jit(lambda: nnx.state(NanoEmoX(cfg, rngs=nnx.Rngs(seed)), FrozenParam))())
  configs = {"clip": cfg.clip.to_hf(), "hubert": cfg.hubert.to_hf(), "face": cfg.face.to_dict(),
             "llm": cfg.llm.to_hf()}
  manifests = Path(corpus_folder) / "manifests"
  records = [r for f in sorted(manifests.glob("*_train.jsonl")) for r in read_jsonl(f)]
  lm = pretrain_lm(cfg, tokenizer, records, lm_steps, seed)
  for part, config in configs.items():
    (folder / part).mkdir(parents=True, exist_ok=True)
    (folder / part / "config.json").write_text(json.dumps(config, indent=2))
    state = nnx.state(lm, nnx.Param) if part == "llm" else nnx.state(getattr(model, part), FrozenParam)
    save_params(jax.tree.map(np.asarray, nnx.to_pure_dict(state)), folder / part / "params")
  (folder / "nanoemox.json").write_text(json.dumps({"preset": preset}))
  (folder / DONE).write_text(settings + "\n")
  return folder
