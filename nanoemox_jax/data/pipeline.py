"""Grain input pipeline: manifests -> weighted mixture -> prompt ids, labels and media -> bucketed `Batch`es.

Per sample (inside the worker processes): the mixture gives the sample at a global position; its prompt and
target come from `templates.build_example` (the question paraphrase drawn from a rng seeded by the position),
are tokenised as `[BOS] prompt target [EOS]` with the model's placeholder counts, and its media are decoded by
`media.decode_sample`. In the main process: skipped samples are counted and dropped, rows are padded to the
smallest length bucket that holds the batch's longest row, and statistics are kept. Every per-sample stage
is a pure function of the global position, so the sequence does not depend on the number of workers and a
saved iterator state (grain's plus the statistics) resumes it exactly.

Facts from the authors' code (GitHub waHAHJIAHAO/Nano-EmoX @ b08f985): `datasets/datasets/base_dataset.py`
keeps a random `int(n * ratio)` subset of a dataset's annotations once, at construction
(`func_random_sample_subset`, seeded by `train.py::setup_seeds` with `run.seed + rank`), tokenises prompt and
target separately, skips (resamples) a sample whose media fail or whose text exceeds `max_length`, and its
`collater` adds BOS/EOS and pads to the batch's longest row; `runners/runner_base.py::create_loaders` draws
each whole batch from one dataset (`MultiIterLoader`, uniform unless `sample_ratio` is set, which no config does).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import flags

from nanoemox_jax.data import media, templates
from nanoemox_jax.data.features import FeatureCache, MediaStatus, media_key
from nanoemox_jax.data.manifest import Record, read_jsonl
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.model.nanoemox import IGNORE, Batch, NanoEmoXConfig, check_placeholders

MEDIA_FAILURES = ("mask", "skip")  # a media error masks its modality, or drops the sample
OVERLONG = ("truncate", "skip")  # an over-long sample loses the end of its target, or is dropped (authors)
PHASE3_TASK_WEIGHTS = {"mer": 18, "ovmer": 28, "mir": 5, "eri": 31, "erg": 18}  # paper, P2E phase 3
# Record task -> the phase-3 task whose share it draws from: AvaMERG's speaker-emotion items are the paper's MER
# share (the authors' `hybird` AvaMERG alternates `empathic_response_with_coe` and `emotion_recognition`).
TASK_GROUPS = {"erg_emotion": "mer"}
_TEMPLATE_ARGS = {"<AudioHere>": "audio_tokens", "<FrameHere>": "frame_tokens", "<FaceHere>": "face_tokens",
                  "<MultiHere>": "multi_tokens"}
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MixSource:
  """One dataset of a phase: its records and its mixing weight (relative to the other sources)."""
  name: str
  records: tuple[Record, ...]
  weight: float = 1.0

  def __post_init__(self):
    if not self.records:
      raise ValueError(f"source {self.name!r} has no records")
    if not self.weight > 0:
      raise ValueError(f"source {self.name!r}: weight must be positive, got {self.weight}")


def load_source(name: str, manifest: str | Path | Sequence[Record], weight: float = 1.0,
                subsample: float | None = None, seed: int = 0) -> MixSource:
  """A source from a JSONL manifest or records. `subsample` in (0, 1] keeps a random `int(n * subsample)`
  of the records, drawn once from (`seed`, `name`): the authors' per-dataset `ratio`."""
  records = read_jsonl(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
  if subsample is not None:
    if not 0 < subsample <= 1:
      raise ValueError(f"source {name!r}: subsample must be in (0, 1], got {subsample}")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    records = [records[i] for i in np.sort(rng.choice(len(records), int(len(records) * subsample), replace=False))]
  return MixSource(name, tuple(records), weight)


def by_task(sources: Sequence[MixSource], weights: Mapping[str, float] = PHASE3_TASK_WEIGHTS) -> list[MixSource]:
  """Pools the records of `sources` into one source per task weighted by `weights` (phase 3's ratio is
  per task; a record's task is grouped by `TASK_GROUPS`); within a task, records are drawn uniformly. A task
  without records is left out (logged)."""
  pools = {task: [] for task in weights}
  for source in sources:
    for r in source.records:
      task = TASK_GROUPS.get(r.task, r.task)
      if task not in pools:
        raise ValueError(f"source {source.name!r}: record {r.id!r} has task {r.task!r}, "
                         f"not weighted in {dict(weights)}")
      pools[task].append(r)
  for task in [t for t, rs in pools.items() if not rs]:
    log.warning("by_task: no records for task %r; the mixture leaves it out", task)
  return [MixSource(task, tuple(rs), weights[task]) for task, rs in pools.items() if rs]


def _seeds(seed: int, n: int) -> list[int]:
  return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def _tagged(sources: Sequence[MixSource]) -> list[grain.MapDataset]:
  """Per source, its records as (source index, Record)."""
  return [grain.MapDataset.source(s.records).map(lambda r, i=i: (i, r)) for i, s in enumerate(sources)]


def mixture(sources: Sequence[MixSource], seed: int, window: int = 1024) -> grain.MapDataset:
  """Infinite `MapDataset` of (source index, Record).

  Each source is shuffled with its own seed and repeated (reshuffled every epoch); grain interleaves them in
  exact proportion to the weights, and the order is shuffled within windows of `window` positions.
  """
  seeds = _seeds(seed, len(sources) + 1)
  parts = [part.shuffle(seeds[i]).repeat() for i, part in enumerate(_tagged(sources))]
  mixed = grain.MapDataset.mix(parts, [s.weight for s in sources])
  return grain.experimental.WindowShuffleMapDataset(mixed, window_size=window, seed=seeds[-1])


def encode(tokenizer: Tokenizer, prompt: str, target: str | None, max_length: int,
           cut_left: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
  """int32 ids [n] = `[BOS] prompt target [EOS]` (target None: `[BOS] prompt`, a generation prompt), labels [n]
  (IGNORE on BOS and prompt), n <= max_length, and whether the sample was cut.

  The prompt's placeholders are never cut: an over-long sample loses the end of its target. cut_left (generation
  prompts): an over-long prompt loses its first text tokens instead, as the authors' `Chat.answer_sample` cuts
  its prompt from the left (theirs may cut into the placeholders; here they are kept, the tokens after them cut).
  Raises `ValueError` when the prompt leaves no room for one target token (target None: does not fit).
  """
  prompt_ids = tokenizer.encode(prompt)
  target_ids = [] if target is None else tokenizer.encode(target) + [tokenizer.eos_id]
  excess = len(prompt_ids) + 1 - max_length
  cut = cut_left and target is None and excess > 0
  if cut:
    placeholders = set(tokenizer.placeholder_ids.values())
    text = [i for i, t in enumerate(prompt_ids) if t not in placeholders]
    if len(text) >= excess:
      dropped = set(text[:excess])
      prompt_ids = [t for i, t in enumerate(prompt_ids) if i not in dropped]
  room = max_length - 1 - len(prompt_ids)
  if room < min(1, len(target_ids)):
    overflow = "leaves no room for the target" if target_ids else "does not fit"
    raise ValueError(f"prompt of {len(prompt_ids) + 1} tokens {overflow} in {max_length}")
  ids = np.array([tokenizer.bos_id, *prompt_ids, *target_ids[:room]], np.int32)
  labels = np.array([IGNORE] * (1 + len(prompt_ids)) + target_ids[:room], np.int32)
  return ids, labels, cut or len(target_ids) > room


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """How a phase's batches are made.

  train: shuffle, repeat, random question paraphrases, drop the last partial batch; False: one ordered pass
  with the first paraphrase. buckets: the padded sequence lengths (the largest is the length limit).
  workers: decoding processes (0: in the main process). media_failure / overlong: see `MEDIA_FAILURES`,
  `OVERLONG`. window: positions within which the mixture's order is shuffled. prompt_only: rows are
  `[BOS] prompt` (labels all IGNORE) for generation; a prompt longer than the largest bucket raises
  `ValueError` naming the record instead of being skipped, so that rows stay aligned with the records, unless
  cut_left, which cuts its first text tokens (`encode`; counted in `Stats.truncated`).
  """
  batch_size: int
  buckets: tuple[int, ...] = (256, 512, 1024)
  seed: int = 0
  train: bool = True
  workers: int = 0
  worker_buffer: int = 2
  read_threads: int = 1
  read_buffer: int = 4
  media_failure: str = "mask"
  overlong: str = "truncate"
  window: int = 1024
  prompt_only: bool = False
  cut_left: bool = False

  def __post_init__(self):
    object.__setattr__(self, "buckets", tuple(sorted(self.buckets)))
    if self.batch_size < 1 or not self.buckets or self.buckets[0] < 2:
      raise ValueError(f"PipelineConfig: batch_size={self.batch_size} and buckets={self.buckets} must be positive")
    if self.media_failure not in MEDIA_FAILURES:
      raise ValueError(f"PipelineConfig: media_failure={self.media_failure!r} is not one of {MEDIA_FAILURES}")
    if self.overlong not in OVERLONG:
      raise ValueError(f"PipelineConfig: overlong={self.overlong!r} is not one of {OVERLONG}")


def template_counts(tokenizer: Tokenizer, model: NanoEmoXConfig) -> dict[str, int]:
  """`templates.build_example` keyword -> placeholder tokens per sample, checked against the tokenizer."""
  tokenizer.check_model(model)
  names = {i: p for p, i in tokenizer.placeholder_ids.items()}
  counts = dict.fromkeys(_TEMPLATE_ARGS.values(), 1)  # a disabled branch keeps one (unreplaced) placeholder
  for token_id, n in model.placeholder_counts.items():
    counts[_TEMPLATE_ARGS[names[token_id]]] = n
  return counts


@dataclasses.dataclass(frozen=True)
class _Sample:
  """The per-sample transform (runs in the workers): global position, (source, record) -> element dict."""
  tokenizer: Tokenizer
  counts: Mapping[str, int]  # build_example keyword -> placeholder tokens
  config: PipelineConfig
  face_input: str
  media_status: Mapping[tuple[str | None, str | None], MediaStatus] | None = None  # cached features: no decoding

  def __call__(self, index: int, item: tuple[int, Record]) -> dict[str, Any]:
    source, record = item
    cfg = self.config
    rng = random.Random(f"{cfg.seed}:{index}") if cfg.train else None
    prompt, target = templates.build_example(record, rng=rng, **self.counts)
    try:
      ids, labels, truncated = encode(self.tokenizer, prompt, None if cfg.prompt_only else target, cfg.buckets[-1],
                                      cfg.cut_left)
    except ValueError as e:
      if cfg.prompt_only:
        raise ValueError(f"{record.id}: {e}") from None
      return {"source": source, "skip": "too_long", "errors": (f"{record.id}: {e}",)}
    if truncated and cfg.overlong == "skip":
      return {"source": source, "skip": "too_long", "errors": (f"{record.id}: longer than {cfg.buckets[-1]} tokens",)}
    if self.media_status is not None:  # cached tower features: the main process adds them by key
      key = media_key(record)
      s = self.media_status[key]
      errors, present, arrays = s.errors, (s.has_video, s.has_audio), {"media_key": key}
    else:
      d = media.decode_sample(record.video, record.audio, self.face_input)
      errors, present = d.errors, (d.video_mask, d.audio_mask)
      # Contiguous arrays travel to the main process through shared memory; others are pickled through a pipe.
      arrays = {name: np.ascontiguousarray(getattr(d, name)) for name in ("frames", "faces", "audio")}
    if errors and cfg.media_failure == "skip":
      return {"source": source, "skip": "media", "errors": errors}
    return {"source": source, "skip": "", "errors": errors, "input_ids": ids, "labels": labels, "truncated": truncated,
            "has_video": present[0], "has_audio": present[1], **arrays}


@dataclasses.dataclass
class Stats:
  """Counters since the start of the run (saved and restored with the iterator state).

  samples: delivered samples per source; masked: delivered samples per missing modality ("video", "audio");
  skipped: dropped samples per reason ("media", "too_long"); truncated: delivered samples whose target (cut_left:
  prompt) was cut.
  """
  samples: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  masked: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  truncated: int = 0

  def flat(self) -> dict[str, int]:
    """For logging: {"samples/<source>": n, "masked/video": n, "skipped/media": n, "truncated": n, ...}."""
    out = {f"{group}/{key}": n for group in ("samples", "masked", "skipped") for key, n in getattr(self, group).items()}
    return out | {"truncated": self.truncated}

  def to_state(self) -> dict[str, Any]:
    return {"samples": dict(self.samples), "masked": dict(self.masked), "skipped": dict(self.skipped),
            "truncated": self.truncated}

  @classmethod
  def from_state(cls, state: Mapping[str, Any]) -> Stats:
    return cls(*(collections.Counter(state[k]) for k in ("samples", "masked", "skipped")), state["truncated"])


class PipelineIterator(Iterator[Batch]):
  """Yields numpy `Batch`es; `get_state()` / `set_state()` for checkpoints, `stats` for logging."""

  def __init__(self, elements: grain.DatasetIterator, names: Sequence[str], config: PipelineConfig, pad_id: int,
               counts: Mapping[int, int], features: FeatureCache | None = None):
    self._elements, self._names, self._config, self._pad_id, self._counts = elements, names, config, pad_id, counts
    self._features = features
    self.stats = Stats()

  def __next__(self) -> Batch:
    rows = []
    while len(rows) < self._config.batch_size:
      try:
        x = next(self._elements)
      except StopIteration:
        if rows and not self._config.train:
          break
        raise
      for error in x["errors"]:
        log.info("%s sample %s: %s", self._names[x["source"]], "skipped" if x["skip"] else "masked", error)
      if x["skip"]:
        self.stats.skipped[x["skip"]] += 1
        continue
      rows.append(x)
      self.stats.samples[self._names[x["source"]]] += 1
      self.stats.masked.update([m for m in ("video", "audio") if not x[f"has_{m}"]])
      self.stats.truncated += bool(x["truncated"])
    batch = self._collate(rows)
    check_placeholders(batch.input_ids, self._counts)
    return batch

  def _collate(self, rows: Sequence[dict[str, Any]]) -> Batch:
    """Right-pads ids (pad id), labels (IGNORE) and mask (0) to the smallest bucket >= the longest row."""
    longest = max(len(x["input_ids"]) for x in rows)
    length = next(b for b in self._config.buckets if b >= longest)
    ids = np.full((len(rows), length), self._pad_id, np.int32)
    labels = np.full((len(rows), length), IGNORE, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, x in enumerate(rows):
      n = len(x["input_ids"])
      ids[i, :n], labels[i, :n], mask[i, :n] = x["input_ids"], x["labels"], 1
    stack = lambda key, dtype: np.stack([x[key] for x in rows]).astype(dtype, copy=False)
    present = stack("has_video", bool), stack("has_audio", bool)
    if self._features is not None:
      return Batch(ids, mask, labels, None, None, None, *present,
                   features=self._features.gather([x["media_key"] for x in rows]))
    return Batch(ids, mask, labels, stack("frames", np.float32), stack("faces", np.float32),
                 stack("audio", np.float32), *present)

  def get_state(self) -> dict[str, Any]:
    return {"elements": self._elements.get_state(), "stats": self.stats.to_state()}

  def set_state(self, state: Mapping[str, Any]) -> None:
    self._elements.set_state(state["elements"])
    self.stats = Stats.from_state(state["stats"])

  def close(self) -> None:
    """Stops the worker processes (also done on garbage collection)."""
    self._elements.close()


class Pipeline:
  """A phase's input: `iter(pipeline)` gives a fresh `PipelineIterator` (restore it with `set_state`)."""

  def __init__(self, sources: Sequence[MixSource], tokenizer: Tokenizer, model: NanoEmoXConfig,
               config: PipelineConfig, shard: grain.sharding.ShardOptions | None = None,
               features: FeatureCache | None = None):
    if (model.num_frames, model.num_audio_clips) != (media.FRAMES, media.CLIPS):
      raise ValueError(f"model wants {model.num_frames} frames / {model.num_audio_clips} audio clips; the media "
                       f"decoder gives {media.FRAMES} / {media.CLIPS}")
    if config.buckets[-1] > model.llm.max_position_embeddings:
      raise ValueError(f"bucket {config.buckets[-1]} > the LM's {model.llm.max_position_embeddings} positions")
    counts = template_counts(tokenizer, model)
    if config.workers and not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()  # grain's multiprocessing reads absl flags: outside an absl app, the defaults
    shard = shard or grain.sharding.ShardByJaxProcess()
    if config.train:
      ds = mixture(sources, config.seed, config.window)
    else:
      ds = grain.MapDataset.concatenate(_tagged(sources))
    if features is not None and (missing := {media_key(r) for s in sources for r in s.records} - set(features.index)):
      raise ValueError(f"the feature cache lacks {len(missing)} media item(s) of the sources, e.g. "
                       f"{min(missing, key=str)}")
    status = None if features is None else features.status
    sample = _Sample(tokenizer, counts, config, model.face_input, status)
    ds = ds.map_with_index(sample)[shard.shard_index::shard.shard_count]
    self.elements = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                                         prefetch_buffer_size=config.read_buffer)).mp_prefetch(
        grain.MultiprocessingOptions(num_workers=config.workers, per_worker_buffer_size=config.worker_buffer))
    self.names, self.config, self.pad_id = [s.name for s in sources], config, tokenizer.pad_id
    self.placeholder_counts, self.features = model.placeholder_counts, features

  def __iter__(self) -> PipelineIterator:
    return PipelineIterator(iter(self.elements), self.names, self.config, self.pad_id, self.placeholder_counts,
                            self.features)


def build(manifests: Mapping[str, str | Path | Sequence[Record]], tokenizer: Tokenizer, model: NanoEmoXConfig,
          config: PipelineConfig, weights: Mapping[str, float] | None = None,
          subsample: Mapping[str, float] | None = None, task_weights: Mapping[str, float] | None = None,
          shard: grain.sharding.ShardOptions | None = None, features: FeatureCache | None = None) -> Pipeline:
  """A phase's pipeline from config values: one source per named manifest, mixed by `weights[name]`
  (default 1 each) after the one-time `subsample[name]` fraction; with `task_weights` (phase 3:
  `PHASE3_TASK_WEIGHTS`) the records are pooled and mixed per task instead. With `features` (see
  `data.features.build_cache`) batches carry cached tower features instead of decoded media."""
  return Pipeline(sources(manifests, config.seed, weights, subsample, task_weights), tokenizer, model, config,
                  shard, features)


def sources(manifests: Mapping[str, str | Path | Sequence[Record]], seed: int,
            weights: Mapping[str, float] | None = None, subsample: Mapping[str, float] | None = None,
            task_weights: Mapping[str, float] | None = None) -> list[MixSource]:
  """What `build` mixes (see there): one source per manifest, or per task with `task_weights`."""
  for what, keys in (("weights", weights), ("subsample", subsample)):
    if unknown := set(keys or ()) - set(manifests):
      raise ValueError(f"{what} names {sorted(unknown)}, which are not among the manifests {sorted(manifests)}")
  per_set = [load_source(name, m, (weights or {}).get(name, 1.0), (subsample or {}).get(name), seed)
             for name, m in manifests.items()]
  return by_task(per_set, task_weights) if task_weights else per_set
