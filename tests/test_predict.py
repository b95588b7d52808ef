"""Batch inference on demo-corpus records: batched greedy decoding gives every sample the tokens that one-at-a-time
decoding gives, and its first token is the training forward's argmax at the end of the unpadded prompt."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest
from flax import nnx

from nanoemox_jax.data import templates
from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.media import decode_sample
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig, template_counts
from nanoemox_jax.data.predictions import Prediction, split_think
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.infer import predict as pred
from nanoemox_jax.model.nanoemox import IGNORE, Batch, NanoEmoX
from tests.test_nanoemox import CFG

FOLDER = BUNDLED  # the Qwen2 tokenizer files shipped with the package
NEW_TOKENS = 8
COUNTS = {"audio_tokens": CFG.audio_qformer.num_query_tokens, "frame_tokens": CFG.video_qformer.num_query_tokens,
          "face_tokens": CFG.face_queries, "multi_tokens": 1}  # build_example's placeholder counts


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
  return Tokenizer(FOLDER)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
  """Held-out demo items of 129-331 prompt tokens: two audio-only CREMA-D clips (video masked), three MIntRec
  videos (audio from their track), an MER-Caption+ video with its wav (the fusion token is real), an AvaMERG
  dialogue (the 512 bucket: its batch pads the records after it to 512, one at a time they stay at 256) and
  that MER-Caption+ item without any media."""
  corpus = demo.write_corpus(tmp_path_factory.mktemp("demo"), seed=0, per_class=1)
  out = []
  for dataset, n in (("cremad", 2), ("mintrec", 3), ("mercaptionplus", 1), ("avamerg", 1)):
    annotation, media_root = corpus[dataset]["test"]
    out += read_source(dataset, annotation, "test", media_root)[0][:n]
  return out + [dataclasses.replace(out[5], id="no_media", video=None, audio=None)]


@functools.cache
def tiny_model() -> NanoEmoX:
  """The tiny preset with its LM matrices redrawn at std 0.2 (at 0.02 every row repeats one token), in eval
  mode; built once per session (tests/test_infer_cli.py saves it)."""
  m = NanoEmoX(CFG, rngs=nnx.Rngs(0))
  key = jax.random.key(1)
  for _, var in nnx.iter_graph(m.llm):
    if isinstance(var, nnx.Variable) and var[...].ndim == 2:
      key, sub = jax.random.split(key)
      var[...] = 0.2 * jax.random.normal(sub, var[...].shape, var[...].dtype)
  m.eval()
  return m


@pytest.fixture(scope="module")
def model() -> NanoEmoX:
  return tiny_model()


@pytest.fixture(scope="module")
def one_at_a_time(model, tok, records) -> np.ndarray:
  return pred.generate_tokens(model, tok, records, batch_size=1, max_new_tokens=NEW_TOKENS)


def test_batched_greedy_equals_one_at_a_time(model, tok, records, one_at_a_time):
  batched = pred.generate_tokens(model, tok, records, batch_size=3, max_new_tokens=NEW_TOKENS)  # 3 + 3 + (2 + 1 copy)
  assert batched.shape == (len(records), NEW_TOKENS) and batched.dtype == np.int32
  assert len({tuple(row) for row in batched}) >= 5  # the rows differ: a mix-up of rows would show
  np.testing.assert_array_equal(batched, one_at_a_time)
  predictions = pred.predict(model, tok, records, batch_size=3, max_new_tokens=NEW_TOKENS)
  assert [(p.id, p.task, p.dataset) for p in predictions] == [(r.id, r.task, r.dataset) for r in records]
  assert all(p.checkpoint == "" for p in predictions)
  assert [p.text for p in predictions] == [pred.answer_text(tok, row) for row in one_at_a_time]
  names = ["speech2_vision2", "speech3_vision3", "speech4_vision4"]  # the tiny preset's expert layer pairs
  for p in predictions:  # gates only where video and audio both decoded (CREMA-D has no video, no_media nothing)
    assert (p.gates is None) == (p.dataset == "cremad" or p.id == "no_media"), p.id
    assert p.gates is None or (list(p.gates) == names and abs(sum(p.gates.values()) - 1) < 1e-5)


def test_prediction_lines_split_the_erg_think_block():
  chain = {"event_scenario": "a lost job", "speaker_emotion": "sad", "emotion_cause": "the layoff",
           "goal_to_response": "comfort"}
  text = templates.erg_answer(chain, "I am sorry to hear that.")
  line = Prediction.from_text("d1", "erg", "avamerg", text, checkpoint="/ckpt").to_json()
  assert line == {"id": "d1", "task": "erg", "dataset": "avamerg", "text": text, "answer": "I am sorry to hear that.",
                  "think": text[len("<think>"):text.index("</think>")], "gates": None, "checkpoint": "/ckpt"}
  assert line["think"].startswith("Firstly, the event scenario") and line["think"].endswith("comfort")
  assert split_think("<think>Firstly, cut by max_new_tokens") == ("Firstly, cut by max_new_tokens", "")
  assert split_think("no block") == (None, "no block")
  other = Prediction.from_text("m1", "mer", "mer", "<think>x</think> happy", {"speech16_vision12": 1.0},
                               "c").to_json()
  assert (other["answer"], other["think"], other["gates"]) == ("<think>x</think> happy", None, {"speech16_vision12": 1.0})


def test_first_token_is_the_training_forward_argmax(model, tok, records, one_at_a_time):
  forward = nnx.jit(lambda m, batch: m(batch).logits[0, -1])
  for i in (1, 2):  # an audio-only CREMA-D item and a MIntRec video (each length compiles once)
    record, tokens = records[i], one_at_a_time[i]
    prompt, _ = templates.build_example(record, **COUNTS)
    ids = np.array([[tok.bos_id, *tok.encode(prompt)]], np.int32)
    d = decode_sample(record.video, record.audio, CFG.face_input)
    batch = Batch(ids, np.ones_like(ids), np.full_like(ids, IGNORE), d.frames[None], d.faces[None], d.audio[None],
                  np.array([d.video_mask]), np.array([d.audio_mask]))
    logits = np.asarray(forward(model, batch))
    top2 = np.sort(logits)[-2:]
    assert top2[1] - top2[0] > 1e-3, record.id  # a clear winner: the paths' rounding cannot flip it
    assert tokens[0] == logits.argmax(), record.id


def test_answer_text_stops_at_the_stop_sequence_or_eos(tok):
  ids = tok.encode(" The most likely label is thank.###\nextra")
  assert pred.answer_text(tok, ids) == "The most likely label is thank."
  assert pred.answer_text(tok, [*tok.encode(" joy "), tok.eos_id, *tok.encode("more")]) == "joy"


def test_prompt_only_rows_are_the_training_prompts(tok):
  records = tuple(Record(f"mir{i}", "mir", "mintrec", "test", "The most likely label is thank.",
                         candidates=("thank", "greet"), subtitle=f"line {i}") for i in range(3))
  config = PipelineConfig(batch_size=3, buckets=(256,), train=False)
  train = next(iter(Pipeline([MixSource("m", records)], tok, CFG, config)))
  prompts = next(iter(Pipeline([MixSource("m", records)], tok, CFG, dataclasses.replace(config, prompt_only=True))))
  for row in range(3):
    n = int(prompts.attention_mask[row].sum())
    target = (train.labels[row] != IGNORE).sum()
    assert n == train.attention_mask[row].sum() - target  # [BOS] prompt: the training row without its target
    np.testing.assert_array_equal(prompts.input_ids[row, :n], train.input_ids[row, :n])
    assert (prompts.labels[row] == IGNORE).all()
  with pytest.raises(ValueError, match="mir0: prompt of .* tokens does not fit in 64"):
    next(iter(Pipeline([MixSource("m", records)], tok, CFG, PipelineConfig(batch_size=1, buckets=(64,),
                                                                           train=False, prompt_only=True))))


def test_cut_left_drops_the_first_text_tokens_and_keeps_the_placeholders(tok):
  record = Record("long", "mir", "mintrec", "test", "", candidates=("thank", "greet"),
                  subtitle=" ".join(f"w{i}" for i in range(400)))
  full = [tok.bos_id, *tok.encode(templates.build_example(record, **template_counts(tok, CFG))[0])]
  config = PipelineConfig(batch_size=1, buckets=(256,), train=False, prompt_only=True)
  with pytest.raises(ValueError, match=f"long: prompt of {len(full)} tokens does not fit in 256"):
    next(iter(Pipeline([MixSource("m", (record,))], tok, CFG, config)))
  rows = iter(Pipeline([MixSource("m", (record,))], tok, CFG, dataclasses.replace(config, cut_left=True)))
  batch = next(rows)
  ids = batch.input_ids[0].tolist()
  assert len(full) > 600 and len(ids) == 256 and batch.attention_mask.all() and rows.stats.truncated == 1
  placeholders = set(tok.placeholder_ids.values())
  is_text = lambda t: t not in placeholders
  assert ids[0] == tok.bos_id
  assert [t for t in ids if not is_text(t)] == [t for t in full if not is_text(t)]  # every placeholder kept
  kept = [t for t in ids[1:] if is_text(t)]
  assert kept == [t for t in full[1:] if is_text(t)][-len(kept):]  # the text's last tokens, its first ones cut
  assert tok.decode(ids).endswith(tok.decode(full[-20:]))  # the question and the answer cue intact


def test_record_keys_follow_dataset_and_id_only():
  a, b = Record("v1", "msa", "sims", "test", ""), Record("v1", "msa", "simsv2", "test", "")
  keys = jax.random.key_data(pred.record_keys(3, [a, b, a]))
  np.testing.assert_array_equal(keys[0], keys[2])  # the same record, wherever it stands
  assert (keys[0] != keys[1]).any()  # SIMS and SIMSv2 share ids, not keys
  np.testing.assert_array_equal(jax.random.key_data(pred.record_keys(3, [b]))[0], keys[1])
  assert (jax.random.key_data(pred.record_keys(4, [a]))[0] != keys[0]).any()  # the seed counts


def test_prompt_lengths_are_the_pipeline_rows(tok, records):
  # What `generate_batches` sorts by: each record's prompt-only row length, counted here from the pipeline's rows.
  config = PipelineConfig(batch_size=1, buckets=(256, 512, 1024), train=False, prompt_only=True)
  rows = [int(b.attention_mask.sum()) for b in Pipeline([MixSource("p", tuple(records))], tok, CFG, config)]
  assert pred.prompt_lengths(tok, CFG, records) == rows and min(rows) < 256 < max(rows)
