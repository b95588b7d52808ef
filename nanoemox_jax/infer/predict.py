"""Batch inference over manifest records: training prompts, data parallel over the local devices, jitted
multimodal embeddings, `generate`.

Counterpart of the authors' `inference_hybird.py` (one sample at a time through HF `generate`, the answer
cut at `###`). Here the data pipeline's prompt-only mode builds each record's `[BOS] prompt` row and media
with the training code (templates, tokenizer, media decoder, first question paraphrase; a media failure masks
its modality), decoding ahead of the model in `threads` threads or `workers` processes. Records are taken in
order of prompt length, so that a batch pads to its own length bucket; rows are moved to left padding, every
batch is completed to `batch_size` rounded up to a multiple of the device count with copies of its first row
(their outputs are dropped) and split over the ('data', 'fsdp') mesh of `model.mesh` (the training mesh) with
the model replicated, so one compiled program serves each bucket. Each record samples with its own key
(`record_keys`: the seed folded with a hash of its dataset and id), so its answer does not depend on the batch
it falls in, the batch size, the device count or a resumed run. With `features` (a `data.features` store folder)
the records' tower outputs come from the store, as in training: entries missing or failing their crc32 (or of
other towers / settings: another space) are decoded and run through the towers first and written to it, then
every batch carries `Batch.features` and no batch decodes media or runs a tower.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import grain
import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from nanoemox_jax.data import templates
from nanoemox_jax.data.features import build_cache
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig, template_counts
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.infer.generate import generate
from nanoemox_jax.model import mesh as mesh_lib
from nanoemox_jax.model.nanoemox import Batch, NanoEmoX, NanoEmoXConfig

BUCKETS = (256, 512, 1024)  # padded prompt lengths (the largest is the prompt limit)
MAX_NEW_TOKENS = 32
# The authors' `inference_hybird.py` -> `Chat.answer_sample(num_beams=1, do_sample=True, temperature=1, top_p=0.9,
# max_new_tokens=1200, max_length=2000)`; their prompt is cut from the left to max_length - max_new_tokens.
AUTHORS_SAMPLING = {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 1200}
log = logging.getLogger(__name__)


class Generated(NamedTuple):
  """One batch's results for its n real rows (numpy)."""
  rows: np.ndarray  # int [n]: the records' positions in the `records` given
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


@jax.jit
def _fold(key: jax.Array, words: jax.Array) -> jax.Array:
  """Typed keys [n]: `key` folded with words[i, 0], then words[i, 1] (uint32 [n, 2])."""
  return jax.vmap(lambda w: jax.random.fold_in(jax.random.fold_in(key, w[0]), w[1]))(words)


def record_keys(seed: int, records: Sequence[Record]) -> jax.Array:
  """The sampling key of each record [n]: `key(seed)` folded with the two 32-bit halves of the BLAKE2b-64 digest
  of `dataset NUL id`."""
  digests = b"".join(hashlib.blake2b(f"{r.dataset}\0{r.id}".encode(), digest_size=8).digest() for r in records)
  return _fold(jax.random.key(seed), np.frombuffer(digests, "<u4").reshape(len(records), 2))


def prompt_lengths(tokenizer: Tokenizer, config: NanoEmoXConfig, records: Sequence[Record]) -> list[int]:
  """Tokens of each record's generation prompt `[BOS] prompt` before any cut (the pipeline's prompt-only rows)."""
  counts = template_counts(tokenizer, config)
  return [1 + len(tokenizer.encode(templates.build_example(r, **counts)[0])) for r in records]


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
  """A host array, the same in every process, as a global array of `sharding` (each process puts its shards)."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _host(x: jax.Array) -> np.ndarray:
  """The whole of a global array on the host (gathered from the other processes where it spans them)."""
  return np.asarray(x) if x.is_fully_addressable else multihost_utils.process_allgather(x, tiled=True)


def generate_batches(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], batch_size: int = 8,
                     max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = 0.0, top_p: float = 1.0,
                     seed: int = 0, buckets: Sequence[int] = BUCKETS, workers: int = 0, threads: int = 2,
                     cut_left: bool = False, features: str | Path | None = None) -> Iterator[Generated]:
  """One `Generated` per batch of up to `batch_size` records of similar prompt length, as each batch finishes.

  temperature 0 is greedy; otherwise each record samples with its `record_keys(seed, ...)` key. Prompts are
  padded to the smallest of `buckets` that holds the batch; a longer prompt raises `ValueError` naming its record
  unless `cut_left` (its first text tokens are cut, never its placeholders: `pipeline.encode`). workers:
  media-decoding processes (0: threads in the main process), threads: decoding threads. features: a feature store
  folder (`data.features.build_cache`: the towers run only for records without a valid entry, which is written).
  """
  if not records:
    return
  cache = None if features is None else build_cache(features, model, records, batch_size, workers)
  order = np.argsort(prompt_lengths(tokenizer, model.config, records), kind="stable")
  config = PipelineConfig(batch_size=batch_size, buckets=tuple(buckets), train=False, workers=workers,
                          read_threads=max(threads, 1), read_buffer=2 * batch_size, prompt_only=True,
                          cut_left=cut_left)
  rows = iter(Pipeline([MixSource("predict", tuple(records[i] for i in order))], tokenizer, model.config, config,
                       grain.sharding.NoSharding(), cache))
  mesh = mesh_lib.make_mesh(mesh_lib.MeshConfig())
  split = NamedSharding(mesh, PartitionSpec(mesh_lib.AXES))  # rows over every device
  size = -(-batch_size // mesh.size) * mesh.size
  graphdef, state = nnx.split(model)
  state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))  # replicated
  llm = nnx.merge(graphdef, state).llm
  stops = tokenizer.stop_sequences(templates.STOP)
  start = 0
  try:
    for batch in rows:
      n = batch.input_ids.shape[0]
      chunk, start = order[start:start + n], start + n
      padded = jax.tree.map(lambda x: _put(x, split), _left_padded(batch, size))
      keys = record_keys(seed, [records[i] for i in np.concatenate([chunk, np.repeat(chunk[:1], size - n)])])
      embeds, gates = _embeddings(graphdef, state, padded)
      tokens = generate(llm, None, padded.attention_mask, max_new_tokens, temperature, top_p, [tokenizer.eos_id],
                        stop_sequences=stops, pad_id=tokenizer.pad_id, inputs_embeds=embeds,
                        keys=jax.random.wrap_key_data(_put(jax.random.key_data(keys), split)))
      yield Generated(chunk, _host(tokens)[:n], None if gates is None else _host(gates).astype(np.float32)[:n],
                      batch.has_video, batch.has_audio)
    if rows.stats.truncated:
      log.warning("%d prompt(s) longer than %d tokens were cut from the left", rows.stats.truncated, buckets[-1])
  finally:
    rows.close()
    if cache is not None:
      cache.store.close()


def generate_tokens(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], **options: Any) -> np.ndarray:
  """int32 [len(records), max_new_tokens]: each record's new tokens, in record order (options: see
  `generate_batches`)."""
  out = np.zeros((len(records), options.get("max_new_tokens", MAX_NEW_TOKENS)), np.int32)
  for g in generate_batches(model, tokenizer, records, **options):
    out[g.rows] = g.tokens
  return out


def answer_text(tokenizer: Tokenizer, tokens: Sequence[int]) -> str:
  """The decoded answer: `tokens` up to the first EOS, cut at `###`, stripped."""
  ids = [int(i) for i in tokens]
  if tokenizer.eos_id in ids:
    ids = ids[:ids.index(tokenizer.eos_id)]
  return tokenizer.decode(ids).split(templates.STOP)[0].strip()


def _predictions(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record],
                 **options: Any) -> Iterator[tuple[np.ndarray, list[Prediction]]]:
  """(rows, their `Prediction`s) per batch as it finishes: text from `answer_text`, gates where the fusion token
  was real, checkpoint left empty (the caller's to fill)."""
  names = gate_names(model.config)
  for g in generate_batches(model, tokenizer, records, **options):
    gates = [None] * len(g.rows) if g.gates is None else [
        dict(zip(names, map(float, w))) if video and audio else None
        for w, video, audio in zip(g.gates, g.has_video, g.has_audio)]
    yield g.rows, [Prediction.from_text(records[i].id, records[i].task, records[i].dataset,
                                        answer_text(tokenizer, tokens), w)
                   for i, tokens, w in zip(g.rows, g.tokens, gates)]


def predict_batches(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record],
                    **options: Any) -> Iterator[list[Prediction]]:
  """The `Prediction`s of each batch (in the order `generate_batches` takes the records) as it finishes."""
  return (batch for _, batch in _predictions(model, tokenizer, records, **options))


def predict(model: NanoEmoX, tokenizer: Tokenizer, records: Sequence[Record], **options: Any) -> list[Prediction]:
  """One `Prediction` per record, in record order (options: see `generate_batches`)."""
  out: list[Prediction] = [None] * len(records)  # type: ignore[list-item]
  for rows, batch in _predictions(model, tokenizer, records, **options):
    for i, p in zip(rows, batch):
      out[i] = p
  return out
