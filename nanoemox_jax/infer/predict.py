"""Batch inference over manifest records: training prompts, jitted multimodal embeddings, `generate`.

Counterpart of the authors' `inference_hybird.py` (one sample at a time through HF `generate`, the answer
cut at `###`). Here the data pipeline's prompt-only mode builds each record's `[BOS] prompt` row and media
with the training code (templates, tokenizer, media decoder, first question paraphrase; a media failure masks
its modality); rows are moved to left padding and every batch is completed to `batch_size` rows with copies
of its first row (their outputs are dropped), so one compiled program serves each pipeline length bucket.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple

import grain
import jax
import numpy as np
from flax import nnx

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.infer.generate import generate
from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, NanoEmoXConfig

BUCKETS = (256, 512, 1024)  # padded prompt lengths (the largest is the prompt limit)
MAX_NEW_TOKENS = 32
# The authors' `inference_hybird.py` -> `Chat.answer_sample(num_beams=1, do_sample=True, temperature=1, top_p=0.9,
# max_new_tokens=1200, max_length=2000)`; their prompt is cut from the left to max_length - max_new_tokens.
AUTHORS_SAMPLING = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 1200}


class Generated(NamedTuple):
  """One batch's results for its n real rows (numpy)."""
  tokens: np.ndarray  # int32 [n, max_new_tokens]: new tokens, a stop sequence or EOS kept, then pad
  gates: np.ndarray | None  # float32 [n, E] fusion expert weights (None without gated fusion experts)
  has_video: np.ndarray  # bool [n]: the video decoded (else its placeholders were zeroed)
  has_audio: np.ndarray  # bool [n]


@partial(jax.jit, static_argnames="graphdef")
def _embeddings(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch) -> tuple[jax.Array, jax.Array | None]:
  """LM input embeddings [B, T, L] (towers -> branch tokens -> spliced over the placeholder embeddings) and
  the fusion gate weights [B, E] (None without gated fusion)."""
  model = nnx.merge(graphdef, state)
  model.eval()  # a local copy: dropout off, the caller's module is untouched
  return model.input_embeddings(batch)


def _left_padded(batch: Batch, size: int) -> Batch:
  """The pipeline's right-padded numpy batch of n <= size rows as `size` left-padded rows (copies of row 0
  after the n real ones)."""
  n, t = batch.input_ids.shape
  rows = np.concatenate([np.arange(n), np.zeros(size - n, int)])
  shift = t - batch.attention_mask.sum(axis=1)  # [n] padding per row
  cols = (np.arange(t) - shift[:, None]) % t  # [n, T]: each row rolled right by its padding
  batch = jax.tree.map(lambda x: x[rows], batch)
  return batch._replace(**{name: np.take_along_axis(getattr(batch, name), cols[rows], axis=1)
                           for name in ("input_ids", "attention_mask", "labels")})


def gate_names(cfg: NanoEmoXConfig) -> tuple[str, ...] | None:
  """One name per fusion expert, `speech{a}_vision{v}` from its tapped layers (None without gated fusion)."""
  if "M" not in cfg.modalities or cfg.fusion_type != "experts":
    return None
  return tuple(f"speech{a}_vision{v}" for a, v in cfg.expert_pairs)


def generate_batches(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], batch_size: int = 8,
                     max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int = 0, buckets: Sequence[int] = BUCKETS, workers: int = 0) -> Iterator[Generated]:
  """One `Generated` per batch of up to `batch_size` consecutive records, in order, as each batch finishes.

  temperature 0 is greedy; otherwise batch k samples with the seed `SeedSequence([seed, k])` draws. Prompts are
  padded to the smallest of `buckets` that holds the batch; a longer prompt raises `ValueError` naming its
  record. workers: media-decoding processes (0: the main process).
  """
  if not records:
    return
  config = PipelineConfig(batch_size=batch_size, buckets=tuple(buckets), train=False, workers=workers,
                          prompt_only=True)
  rows = iter(Pipeline([MixSource("predict", tuple(records))], tokenizer, model.config, config,
                       grain.sharding.NoSharding()))
  graphdef, state = nnx.split(model)
  stops = tokenizer.stop_sequences(templates.STOP)
  try:
    for k, batch in enumerate(rows):
      n = batch.input_ids.shape[0]
      batch = _left_padded(batch, batch_size)
      embeds, gates = _embeddings(graphdef, state, batch)
      batch_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
      tokens = generate(model.llm, None, batch.attention_mask, max_new_tokens, temperature, top_p,
                        [tokenizer.eos_id], batch_seed, stop_sequences=stops, pad_id=tokenizer.pad_id,
                        inputs_embeds=embeds)
      yield Generated(np.asarray(tokens)[:n], None if gates is None else np.asarray(gates, np.float32)[:n],
                      batch.has_video[:n], batch.has_audio[:n])
  finally:
    rows.close()


def generate_tokens(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], **options: Any) -> np.ndarray:
  """int32 [len(records), max_new_tokens]: each record's new tokens (options: see `generate_batches`)."""
  out = [g.tokens for g in generate_batches(model, tokenizer, records, **options)]
  return np.concatenate(out) if out else np.zeros((0, options.get("max_new_tokens", MAX_NEW_TOKENS)), np.int32)


def answer_text(tokenizer: Tokenizer, tokens: Sequence[int]) -> str:
  """The decoded answer: `tokens` up to the first EOS, cut at `###`, stripped."""
  ids = [int(i) for i in tokens]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids).split(templates.STOP)[0].strip()


def predict_batches(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record],
                    **options: Any) -> Iterator[list[Prediction]]:
  """The `Prediction`s of each batch, in order, as it finishes (options: see `generate_batches`): text from
  `answer_text`, gates where the fusion token was real, checkpoint left empty (the caller's to fill)."""
  names, start = gate_names(model.config), 0
  for g in generate_batches(model, tokenizer, records, **options):
    chunk, start = records[start:start + len(g.tokens)], start + len(g.tokens)
    gates = [None] * len(chunk) if g.gates is None else [
        dict(zip(names, map(float, w))) if video and audio else None
        for w, video, audio in zip(g.gates, g.has_video, g.has_audio)]
    yield [Prediction.from_text(r.id, r.task, r.dataset, answer_text(tokenizer, tokens), w)
           for r, tokens, w in zip(chunk, g.tokens, gates)]


def predict(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], **options: Any) -> list[Prediction]:
  """One `Prediction` per record, in order (options: see `generate_batches`)."""
  return [p for batch in predict_batches(model, tokenizer, records, **options) for p in batch]
