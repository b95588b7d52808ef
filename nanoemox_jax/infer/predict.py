"""Batch inference over manifest records: training prompts, jitted multimodal embeddings, `generate`.

Counterpart of the authors' `inference_hybird.py` (one sample at a time through HF `generate`, the answer
cut at `###`). Here the data pipeline's prompt-only mode builds each record's `[BOS] prompt` row and media
with the training code (templates, tokenizer, media decoder, first question paraphrase); rows are moved to
left padding and every batch is completed to `batch_size` rows with copies of its first row (their outputs
are dropped), so one compiled program serves each pipeline length bucket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial

import grain
import jax
import numpy as np
from flax import nnx

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.infer.generate import generate
from nanoemox_jax.model.nanoemox import Batch, NanoEmoX


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One record's answer. text: the decoded generation up to `###` / EOS, stripped; labels: the record's."""
  id: str
  task: str
  text: str
  labels: tuple[str, ...]


@partial(jax.jit, static_argnames="graphdef")
def _embeddings(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch) -> jax.Array:
  """LM input embeddings [B, T, L]: towers -> branch tokens -> spliced over the placeholder embeddings."""
  model = nnx.merge(graphdef, state)
  model.eval()  # a local copy: dropout off, the caller's module is untouched
  tokens, _ = model.branch_tokens(model.tower_features(batch.frames, batch.faces, batch.audio))
  return model.embed_inputs(batch.input_ids, tokens, model.present(batch.has_video, batch.has_audio))


def _left_padded(batch: Batch, size: int) -> Batch:
  """The pipeline's right-padded numpy batch of n <= size rows as `size` left-padded rows (copies of row 0
  after the n real ones)."""
  n, t = batch.input_ids.shape
  rows = np.concatenate([np.arange(n), np.zeros(size - n, int)])
  shift = t - batch.attention_mask.sum(axis=1)  # [n] padding per row
  cols = (np.arange(t) - shift[:, None]) % t  # [n, T]: each row rolled right by its padding
  fields = {name: x[rows] for name, x in batch._asdict().items()}
  for name in ("input_ids", "attention_mask", "labels"):
    fields[name] = np.take_along_axis(fields[name], cols[rows], axis=1)
  return Batch(**fields)


def generate_tokens(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], batch_size: int = 8,
                    max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
                    seed: int = 0) -> np.ndarray:
  """int32 [len(records), max_new_tokens]: each record's new tokens (a stop sequence or EOS kept, then pad).

  temperature 0 is greedy; otherwise batch k samples with the seed `SeedSequence([seed, k])` draws. A prompt
  longer than the pipeline's largest bucket (1024 tokens) raises `ValueError` naming its record.
  """
  if not records:
    return np.zeros((0, max_new_tokens), np.int32)
  config = PipelineConfig(batch_size=batch_size, train=False, prompt_only=True)
  rows = Pipeline([MixSource("predict", tuple(records))], tokenizer, model.config, config,
                  grain.sharding.NoSharding())
  graphdef, state = nnx.split(model)
  stops = tokenizer.stop_sequences(templates.STOP)
  out = []
  for k, batch in enumerate(rows):
    n = batch.input_ids.shape[0]
    batch = _left_padded(batch, batch_size)
    embeds = _embeddings(graphdef, state, batch)
    batch_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
    tokens = generate(model.llm, None, batch.attention_mask, max_new_tokens, temperature, top_p,
                      [tokenizer.eos_id], batch_seed, stop_sequences=stops, pad_id=tokenizer.pad_id,
                      inputs_embeds=embeds)
    out.append(np.asarray(tokens)[:n])
  return np.concatenate(out)


def answer_text(tokenizer: Tokenizer, tokens: Sequence[int]) -> str:
  """The decoded answer: `tokens` up to the first EOS, cut at `###`, stripped."""
  ids = [int(i) for i in tokens]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids).split(templates.STOP)[0].strip()


def predict(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], batch_size: int = 8,
            max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
            seed: int = 0) -> list[Prediction]:
  """One `Prediction` per record, in order (see `generate_tokens`)."""
  tokens = generate_tokens(model, tokenizer, records, batch_size, max_new_tokens, temperature, top_p, seed)
  return [Prediction(r.id, r.task, answer_text(tokenizer, t), tuple(r.labels)) for r, t in zip(records, tokens)]
