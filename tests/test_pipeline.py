"""The Grain pipeline against independent computations: mixture counts, HF `transformers` tokenisation of
the prompt and target, media files built to fail in known ways, and replays of saved iterator states."""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
from pathlib import Path

import grain
import jax
import numpy as np
import pytest
import soundfile
from flax import nnx

from nanoemox_jax.model import presets
from nanoemox_jax.data import media, pipeline, templates
from nanoemox_jax.data.features import build_cache, media_key
from nanoemox_jax.data.manifest import Record, Turn, write_jsonl
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, PLACEHOLDERS, Tokenizer
from nanoemox_jax.model.nanoemox import IGNORE, Batch, NanoEmoX, check_placeholders
from nanoemox_jax.train.config import TASK_ORDER, paper_phase
from tests.test_media import tone, write_av, write_cv2_video

FOLDER = BUNDLED  # the Qwen2 tokenizer files shipped with the package
TINY = presets.tiny()
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "nanoemox_official"
PLACEHOLDER_COUNTS = {"audio_tokens": 8, "frame_tokens": 8, "face_tokens": 4, "multi_tokens": 1}  # tiny preset


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
  return Tokenizer(FOLDER)


@pytest.fixture(scope="module")
def hf():
  """HF `transformers` Qwen2 tokenizer from the same files, placeholders added as special tokens."""
  import transformers

  t = transformers.AutoTokenizer.from_pretrained(str(FOLDER))
  t.add_special_tokens({"additional_special_tokens": list(PLACEHOLDERS)})
  return t


def rec(task: str, i: int, **kw) -> Record:
  kw.setdefault("target", f"answer {task} {i}")
  return Record(id=f"{task}{i}", task=task, dataset=kw.pop("dataset", task), split=kw.pop("split", "train"), **kw)


def text_records(n: int) -> list[Record]:
  """Tasks whose question is fixed (no paraphrase pool), each with a unique subtitle or dialogue."""
  out = []
  for i in range(n):
    out.append(rec("mir", i, subtitle=f"line {i}", candidates=("thank", "greet")))
    out.append(rec("mer", i, subtitle=f"utterance {i}", candidates=("happy", "sad")))
    out.append(rec("erg", i, subtitle=f"now {i}", history=(Turn("user", f"hi {i}"), Turn("assistant", "hello")),
                   meta={"context": f"ctx {i}"}, target=f"<think>steps {i}</think>\n reply"))
  return out


def expected(hf, record: Record) -> tuple[list[int], list[int]]:
  """Unpadded ids and labels from the HF tokenizer: [BOS] prompt target+'###' [EOS]; loss on the target."""
  prompt, _ = templates.build_example(record, **PLACEHOLDER_COUNTS)
  bos, eos = hf.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
  p = hf(prompt, add_special_tokens=False).input_ids
  t = hf(record.target + "###", add_special_tokens=False).input_ids + [eos]
  return [bos, *p, *t], [IGNORE] * (1 + len(p)) + t


def batches(it, n: int) -> list[Batch]:
  return [next(it) for _ in range(n)]


def assert_same(a: list[Batch], b: list[Batch]):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for field in Batch._fields:
      np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)


# ----------------------------------------------------------------------------- mixture

PHASE3 = paper_phase("3")  # the paper's phase-3 datasets, task weights (TASK_ORDER) and seed
# Annotation files the readers take: the authors' real files in ../shared where there are any, else fixtures in
# the authors' formats (tests/fixtures/README.md), also read by tests/test_sources.py.
PHASE3_FIXTURES = {name: FIXTURES / name for name in PHASE3.data.train}
PHASE3_REAL = PHASE3_FIXTURES | {"merr_fine": OFFICIAL / "MERR_fine_grained.first150.json",
                                 "mintrec": OFFICIAL / "train_MIntRec_ann.json",
                                 "mintrec2": OFFICIAL / "train_MIntRec2_ann.json"}


def annotation(path: Path, name: str) -> Path:
  return path / name if path.is_dir() else path


def phase3_pool_sizes(files: dict[str, Path]) -> dict[str, int]:
  """Records per phase-3 task, counted in the annotation files themselves: MER = AvaMERG turns (their speaker
  emotion), ERG = AvaMERG turns, OV-MER = MER-Caption+ rows, ERI = MER-Caption+ rows with a reason + MERR items,
  MIR = MIntRec + MIntRec2.0 items."""
  load = lambda name, file: json.loads(annotation(files[name], file).read_text(encoding="utf-8"))
  rows = lambda file: list(csv.DictReader((files["mercaptionplus"] / file).read_text(encoding="utf-8").splitlines()))
  turns = sum(len(c["turns"]) for c in load("avamerg", "train.json"))
  ov = {r["name"] for r in rows("track2_train_mercaptionplus.csv")}
  reasons = sum(r["name"] in ov and bool(r["reason"]) for r in rows("track3_train_mercaptionplus.csv"))
  return {"mer": turns, "ovmer": len(ov), "mir": len(load("mintrec", "train_MIntRec_ann.json")) +
          len(load("mintrec2", "train_MIntRec2_ann.json")), "eri": reasons +
          len(load("merr_fine", "MERR_fine_grained.json")), "erg": turns}


@pytest.mark.parametrize("files", [PHASE3_FIXTURES, pytest.param(PHASE3_REAL, marks=pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason=f"the authors' annotation files are not at {OFFICIAL}"))], ids=["fixtures", "real"])
def test_phase3_mixture_of_reader_records_matches_the_paper_ratio_over_10000_draws(tok, tmp_path, files):
  manifests = {}
  for name in PHASE3.data.train:  # as `python -m nanoemox_jax.data.prepare` writes them
    manifests[name] = tmp_path / f"{name}_train.jsonl"
    write_jsonl(read_source(name, files[name])[0], manifests[name])
  weights = dict(zip(TASK_ORDER, PHASE3.data.task_weights))  # as `train.loop.make_data` passes them
  tasks = pipeline.by_task([pipeline.load_source(name, path) for name, path in manifests.items()], weights)
  assert {s.name: len(s.records) for s in tasks} == phase3_pool_sizes(files)
  assert {s.name: {r.task for r in s.records} for s in tasks} == {
      "mer": {"erg_emotion"}, "ovmer": {"ovmer"}, "mir": {"mir"}, "eri": {"eri"}, "erg": {"erg"}}
  # 10,000 draws of the training sampler: the shares are the paper's 18 : 28 : 5 : 31 : 18.
  ds = pipeline.mixture(tasks, PHASE3.seed)
  draws = [ds[i] for i in range(10_000)]
  shares = collections.Counter(tasks[i].name for i, _ in draws)
  for task, weight in weights.items():
    assert abs(shares[task] / 10_000 - weight / 100) <= 0.02, (task, shares)
  # ... which is what the phase's pipeline delivers, sample for sample.
  config = PipelineConfig(batch_size=8, buckets=(1024,), seed=PHASE3.seed)
  it = iter(pipeline.build(manifests, tok, TINY, config, task_weights=weights))
  batches(it, 5)
  assert it.stats.samples == collections.Counter(tasks[i].name for i, _ in draws[:40]) and it.stats.skipped == {}
  # Whole shuffle windows hold a prefix of every pool's epochs: each record is drawn n or n + 1 times.
  for i, task in enumerate(tasks):
    per_record = collections.Counter(r.id for k, r in draws[:9 * 1024] if k == i)
    counts = [per_record[r.id] for r in task.records]
    assert len({r.id for r in task.records}) == len(counts) and max(counts) - min(counts) <= 1, task.name
  # Another seed, another order; same seed, same order.
  ids = lambda seed: [r.id for _, r in (pipeline.mixture(tasks, seed)[i] for i in range(50))]
  assert ids(PHASE3.seed) == [r.id for _, r in draws[:50]] != ids(PHASE3.seed + 1)


def test_subsample_keeps_a_fixed_random_subset():
  records = [rec("mir", i) for i in range(101)]
  a = pipeline.load_source("mintrec", records, subsample=0.3, seed=1)
  assert len(a.records) == int(101 * 0.3) == len({r.id for r in a.records})
  assert all(r in records for r in a.records)
  assert a.records == pipeline.load_source("mintrec", records, subsample=0.3, seed=1).records
  assert a.records != pipeline.load_source("mintrec", records, subsample=0.3, seed=2).records
  with pytest.raises(ValueError, match="subsample"):
    pipeline.load_source("mintrec", records, subsample=1.5)
  with pytest.raises(ValueError, match="no records"):
    MixSource("empty", ())
  with pytest.raises(ValueError, match=r"weights names \['mintrek'\]"):
    pipeline.build({"mintrec": records}, None, TINY, PipelineConfig(batch_size=1), weights={"mintrek": 2.0})


# ----------------------------------------------------------------------------- text

def test_labels_are_ignore_on_bos_and_prompt_and_the_target_on_answer_stop_eos(tok, hf):
  records = text_records(400)  # 1200 records: more than the mixture's shuffle window, so no repeats below
  pipe = Pipeline([MixSource("text", tuple(records))], tok, TINY, PipelineConfig(batch_size=4, buckets=(256, 512)))
  want = {tuple(ids): (r.id, labels) for r in records for ids, labels in [expected(hf, r)]}
  seen = set()
  for batch in batches(iter(pipe), 3):
    lengths = []
    for ids, mask, labels in zip(batch.input_ids, batch.attention_mask, batch.labels):
      n = int(mask.sum())
      record_id, want_labels = want[tuple(ids[:n].tolist())]
      lengths.append(len(want_labels))
      seen.add(record_id)
      assert labels[:n].tolist() == want_labels and mask[:n].all()
      assert (ids[n:] == tok.pad_id).all() and (labels[n:] == IGNORE).all()
      assert labels[n - 1] == tok.eos_id and tok.decode(labels[labels != IGNORE][-3:-1]).endswith("###")
    assert batch.input_ids.shape == (4, 256 if max(lengths) <= 256 else 512)
  assert len(seen) == 12 and {r[:3] for r in seen} == {"mir", "mer", "erg"}


def test_question_paraphrases_are_drawn_per_sample(tok):
  records = tuple(rec("eri", i, subtitle=f"s{i}") for i in range(6))
  config = PipelineConfig(batch_size=6, buckets=(384,))
  rows = [tok.decode(ids) for ids in next(iter(Pipeline([MixSource("eri", records)], tok, TINY, config))).input_ids]
  questions = [[q for q in templates.ERI_QUESTIONS if q in row] for row in rows]
  assert all(len(q) == 1 for q in questions) and len({q[0] for q in questions}) > 1
  # Evaluation (train=False): one ordered pass with the first question.
  ordered = next(iter(Pipeline([MixSource("eri", records)], tok, TINY, dataclasses.replace(config, train=False))))
  assert all(templates.ERI_QUESTIONS[0] in tok.decode(ids) for ids in ordered.input_ids)
  assert [tok.decode(ids).count(f"<Subtitle>s{i}</Subtitle>") for i, ids in enumerate(ordered.input_ids)] == [1] * 6


def test_bucketed_shapes_truncation_and_overlong_skip(tok, hf):
  short = rec("mir", 0, subtitle="short", candidates=("thank",))
  medium = rec("mir", 1, subtitle=" ".join(f"word{i}" for i in range(40)), candidates=("thank",))
  long_target = rec("mir", 2, subtitle="x", candidates=("thank",), target=" ".join(f"t{i}" for i in range(400)))
  long_prompt = rec("mir", 3, subtitle=" ".join(f"w{i}" for i in range(400)), candidates=("thank",))
  lengths = {r.id: len(expected(hf, r)[0]) for r in (short, medium, long_target)}
  buckets = (200, 300, 400)
  assert lengths["mir0"] <= 200 < lengths["mir1"] <= 300 and lengths["mir2"] > 400
  assert expected(hf, long_target)[1].count(IGNORE) < 400 <= expected(hf, long_prompt)[1].count(IGNORE)
  records = (short, medium, short, short, long_target, long_prompt)
  config = PipelineConfig(batch_size=2, buckets=buckets, train=False)
  it = iter(Pipeline([MixSource("m", records)], tok, TINY, config))
  b1, b2, b3 = batches(it, 3)
  assert b1.input_ids.shape == (2, 300) and b2.input_ids.shape == (2, 200)  # the longest row picks the bucket
  assert b3.input_ids.shape == (1, 400)  # last partial batch kept off training; long_prompt is dropped
  ids, labels = expected(hf, long_target)
  assert b3.input_ids[0].tolist() == ids[:400] and b3.labels[0].tolist() == labels[:400]
  assert b3.attention_mask.all() and labels[399] != tok.eos_id  # the prompt is whole, the target lost its end
  assert it.stats.truncated == 1 and it.stats.skipped == {"too_long": 1} and it.stats.samples == {"m": 5}
  with pytest.raises(StopIteration):
    next(it)
  it = iter(Pipeline([MixSource("m", records)], tok, TINY, dataclasses.replace(config, overlong="skip")))
  assert [b.input_ids.shape[0] for b in batches(it, 2)] == [2, 2]
  with pytest.raises(StopIteration):
    next(it)
  assert it.stats.truncated == 0 and it.stats.skipped == {"too_long": 2}


def test_shards_split_the_single_process_stream(tok):
  source = MixSource("text", tuple(text_records(3)))
  config = PipelineConfig(batch_size=1, buckets=(256,))
  ids = lambda shard, n: [b.input_ids[0] for b in batches(iter(Pipeline([source], tok, TINY, config, shard)), n)]
  whole = ids(grain.sharding.NoSharding(), 6)
  halves = [ids(grain.sharding.ShardOptions(k, 2), 3) for k in range(2)]
  for k in range(2):
    for a, b in zip(whole[k::2], halves[k]):
      np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- media

FRAMES = [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(10)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[str | None, str | None]]:
  """(video, audio) per case: three good samples, four bad files and a silent track."""
  d = tmp_path_factory.mktemp("media")
  wav = d / "speech.wav"
  soundfile.write(wav, tone(300.0, 1.0, 16_000, 1)[0], 16_000)
  muxed = write_av(d / "muxed.mp4", FRAMES, tone(440.0, 1.0, 16_000, 1), rate=16_000)
  (d / "empty.mp4").write_bytes(b"")
  (d / "cut.mp4").write_bytes(muxed.read_bytes()[: muxed.stat().st_size // 2])  # mp4 index (moov) lost
  (d / "notes.mp4").write_text("not a video\n" * 40)
  mute = write_cv2_video(d / "mute.mp4", FRAMES)
  one = write_cv2_video(d / "one_frame.mp4", FRAMES[:1])
  soundfile.write(d / "silent.wav", np.zeros(16_000, np.float32), 16_000)
  return {"good_wav": (str(mute), str(wav)), "one_frame": (str(one), str(wav)), "silent": (str(mute), str(d / "silent.wav")), "good_muxed": (str(muxed), None), "empty": (str(d / "empty.mp4"), None),
          "truncated": (str(d / "cut.mp4"), None), "no_audio_track": (str(mute), None),
          "not_video": (str(d / "notes.mp4"), None)}


# what each case should decode to: (video, audio)
DECODES = {"good_wav": (True, True), "one_frame": (True, True), "silent": (True, False), "good_muxed": (True, True), "empty": (False, False), "truncated": (False, False),
           "no_audio_track": (True, False), "not_video": (False, False)}


def media_records(clips) -> list[Record]:
  return [rec("mir", i, subtitle=name, candidates=("thank",), video=v, audio=a)
          for i, (name, (v, a)) in enumerate(clips.items())]


@pytest.mark.parametrize("mode", ["mask", "skip"])
def test_bad_media_manifest_finishes_and_counts(tok, clips, tmp_path, mode):
  write_jsonl(media_records(clips), tmp_path / "m.jsonl")
  config = PipelineConfig(batch_size=2, buckets=(256,), train=False, media_failure=mode)
  it = iter(pipeline.build({"media": tmp_path / "m.jsonl"}, tok, TINY, config))
  rows = {}
  for batch in it:
    check_placeholders(batch.input_ids, TINY.placeholder_counts)
    for i, ids in enumerate(batch.input_ids):
      name = tok.decode(ids).split("<Subtitle>")[1].split("</Subtitle>")[0]
      rows[name] = (bool(batch.has_video[i]), bool(batch.has_audio[i]))
      assert batch.frames[i].any() == batch.faces[i].any() == rows[name][0] and batch.audio[i].any() == rows[name][1]
  good = [n for n, d in DECODES.items() if all(d)]
  if mode == "mask":
    assert rows == DECODES
    assert it.stats.masked == {"video": 3, "audio": 5} and it.stats.skipped == {}
  else:
    assert rows == {n: DECODES[n] for n in good}
    assert it.stats.skipped == {"media": 5} and it.stats.masked == {}
  assert it.stats.samples == {"media": len(rows)}


def test_batches_feed_the_model_batch_with_the_tiny_counts(tok, clips):
  it = iter(Pipeline([MixSource("media", tuple(media_records(clips)))], tok, TINY, PipelineConfig(batch_size=3)))
  batch = Batch(*next(it))
  check_placeholders(batch.input_ids, TINY.placeholder_counts)
  b, s = batch.input_ids.shape
  assert (b, s) == (3, 256)
  want = {"input_ids": ((b, s), np.int32), "attention_mask": ((b, s), np.int32), "labels": ((b, s), np.int32),
          "frames": ((b, TINY.num_frames, 3, 224, 224), np.float32),
          "faces": ((b, TINY.num_frames, 3, 224, 224), np.float32),
          "audio": ((b, TINY.num_audio_clips, 32_000), np.float32), "has_video": ((b,), np.bool_),
          "has_audio": ((b,), np.bool_)}
  for field, (shape, dtype) in want.items():
    x = getattr(batch, field)
    assert isinstance(x, np.ndarray) and x.shape == shape and x.dtype == dtype, field


def test_restored_state_continues_the_identical_sequence(tok, clips):
  source = MixSource("media", tuple(media_records(clips)))
  config = PipelineConfig(batch_size=2, buckets=(256,), seed=7)
  it = iter(Pipeline([source], tok, TINY, config))
  batches(it, 2)
  state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
  stats = it.stats.flat()
  tail = batches(it, 4)
  resumed = iter(Pipeline([source], tok, TINY, config))  # a new process would build it again
  resumed.set_state(state)
  assert resumed.stats.flat() == stats
  assert_same(batches(resumed, 4), tail)
  assert resumed.stats.flat() == it.stats.flat()


def test_worker_processes_give_the_in_process_sequence_and_restore(tok, clips):
  source = MixSource("media", tuple(media_records(clips)))
  config = PipelineConfig(batch_size=2, buckets=(256,), seed=7)
  reference = batches(iter(Pipeline([source], tok, TINY, config)), 5)
  pipe = Pipeline([source], tok, TINY, dataclasses.replace(config, workers=2))
  it = iter(pipe)
  head = batches(it, 2)
  state = it.get_state()
  tail = batches(it, 3)
  it.close()
  assert_same(head + tail, reference)  # the sequence does not depend on the number of workers
  resumed = iter(pipe)  # fresh worker processes, as after a restart
  resumed.set_state(state)
  assert_same(batches(resumed, 3), tail)
  resumed.close()


# ----------------------------------------------------------------------------- cached tower features


@pytest.fixture(scope="module")
def tiny_model():
  return NanoEmoX(TINY, rngs=nnx.Rngs(0))


def test_feature_cache_holds_the_towers_outputs_and_the_decoder_status(tiny_model, clips, tmp_path):
  records = media_records(clips) + [rec("mir", 99, subtitle="text only", candidates=("thank",))]
  cache = build_cache(tmp_path, tiny_model, records + records[:2], batch_size=3)  # 9 distinct: a padded last batch
  assert len(cache.index) == len(records) == cache.computed
  towers = jax.jit(tiny_model.tower_features)
  for name, r in zip([*clips, "text_only"], records, strict=True):
    d = media.decode_sample(r.video, r.audio, TINY.face_input)
    s = cache.status[media_key(r)]
    assert (s.has_video, s.has_audio, s.errors) == (d.video_mask, d.audio_mask, d.errors), name
    assert (s.has_video, s.has_audio) == DECODES.get(name, (False, False)), name
    want = towers(d.frames[None], d.faces[None], d.audio[None])  # one at a time: independent of the batching
    for field, got, ref in zip(want._fields, cache.gather([media_key(r)]), want, strict=True):
      np.testing.assert_allclose(got, np.asarray(ref), atol=1e-5, rtol=1e-5, err_msg=f"{name} {field}")


@pytest.mark.parametrize("mode", ["mask", "skip"])
def test_cached_pipeline_gives_the_decoding_pipeline_batches(tiny_model, tok, clips, mode, tmp_path):
  records = media_records(clips)
  source = MixSource("media", tuple(records))
  config = PipelineConfig(batch_size=2, buckets=(256,), seed=7, media_failure=mode)
  cache = build_cache(tmp_path, tiny_model, records, batch_size=4)
  reference, cached = iter(Pipeline([source], tok, TINY, config)), iter(Pipeline([source], tok, TINY, config,
                                                                                  features=cache))
  by_subtitle = {r.subtitle: media_key(r) for r in records}
  for _ in range(6):
    want, got = next(reference), next(cached)
    assert got.frames is got.faces is got.audio is None
    for field in ("input_ids", "attention_mask", "labels", "has_video", "has_audio"):
      np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    keys = [by_subtitle[tok.decode(ids).split("<Subtitle>")[1].split("</Subtitle>")[0]] for ids in want.input_ids]
    for a, b in zip(got.features, cache.gather(keys), strict=True):
      np.testing.assert_array_equal(a, b)
  assert cached.stats.flat() == reference.stats.flat()
  assert (reference.stats.skipped["media"] > 0) == (mode == "skip")


def test_a_cache_without_some_media_is_refused(tiny_model, tok, clips, tmp_path):
  records = media_records(clips)
  cache = build_cache(tmp_path, tiny_model, records[:3], batch_size=4)
  with pytest.raises(ValueError, match="lacks 5 media item"):
    Pipeline([MixSource("media", tuple(records))], tok, TINY, PipelineConfig(batch_size=2), features=cache)
