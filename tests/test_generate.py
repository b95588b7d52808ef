"""Jitted generation against HF `generate` (PyTorch) on the same random weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from nanoemox_jax.infer import generate as gen
from tests.hf_models import random_qwen2, save_and_convert, tiny_qwen2_config
from tests.test_qwen2 import left_padded

LENGTHS = [5, 11, 8]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  # initializer_range 0.2 makes greedy continuations vary (0.02 collapses to one repeated token)
  hf = random_qwen2(tiny_qwen2_config(initializer_range=0.2, num_attention_heads=6, num_key_value_heads=2))
  return hf, save_and_convert(hf, tmp_path_factory.mktemp("gen"))


def hf_generate(hf, ids, mask, n, **kw) -> np.ndarray:
  with torch.no_grad():
    out = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=n,
                      do_sample=False, pad_token_id=0, **kw)
  new = out[:, ids.shape[1]:].numpy()
  return np.pad(new, ((0, 0), (0, n - new.shape[1])))  # HF stops early when every row is done


def test_greedy_32_tokens_identical_to_hf(models):
  hf, model = models
  ids, mask = left_padded(LENGTHS, 211, seed=0)
  ref = hf_generate(hf, ids, mask, 32, eos_token_id=None)
  ours = np.asarray(gen.generate(model, ids, mask, max_new_tokens=32))
  assert ours.dtype == np.int32 and ours.shape == (3, 32)
  assert all(len(set(row)) >= 10 for row in ref)  # a non-degenerate continuation
  np.testing.assert_array_equal(ours, ref)


def test_eos_stops_each_row_like_hf(models):
  hf, model = models
  ids, mask = left_padded(LENGTHS, 211, seed=0)
  free = hf_generate(hf, ids, mask, 32, eos_token_id=None)
  eos = int(free[1, 6])  # a token that row 1 emits at step 6
  ref = hf_generate(hf, ids, mask, 32, eos_token_id=eos)
  ours = np.asarray(gen.generate(model, ids, mask, 32, eos_ids=[eos], pad_id=0))
  np.testing.assert_array_equal(ours, ref)
  assert ours[1, 6] == eos and (ours[1, 7:] == 0).all()


def test_stop_sequence_ends_row(models):
  _, model = models
  ids, mask = left_padded(LENGTHS, 211, seed=0)
  free = np.asarray(gen.generate(model, ids, mask, 32))
  seq = tuple(int(t) for t in free[2, 3:5])  # a two-token sequence row 2 produces at steps 3-4
  first_end = next(i for i in range(1, 32) if tuple(free[2, i - 1:i + 1]) == seq)
  ours = np.asarray(gen.generate(model, ids, mask, 32, stop_sequences=[seq], pad_id=7))
  np.testing.assert_array_equal(ours[2, :first_end + 1], free[2, :first_end + 1])
  assert (ours[2, first_end + 1:] == 7).all()
  for row in (0, 1):  # rows without the sequence are untouched
    hits = [i for i in range(1, 32) if tuple(free[row, i - 1:i + 1]) == seq]
    if not hits:
      np.testing.assert_array_equal(ours[row], free[row])


def test_embeddings_prompt_equals_ids_prompt(models):
  _, model = models
  ids, mask = left_padded(LENGTHS, 211, seed=4)
  a = gen.generate(model, ids, mask, 12)
  b = gen.generate(model, None, mask, 12, inputs_embeds=model.embed(jnp.asarray(ids, jnp.int32)))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sampling_follows_softmax_and_seed(models):
  _, model = models
  ids, _ = left_padded([6], 211, seed=5)
  batch = np.repeat(ids, 4000, axis=0)
  logits = np.asarray(model(jnp.asarray(ids, jnp.int32)))[0, -1]
  temperature = 1.5
  p = np.exp((logits - logits.max()) / temperature)
  p /= p.sum()
  draws = np.asarray(gen.generate(model, batch, None, 1, temperature=temperature, seed=3))[:, 0]
  freq = np.bincount(draws, minlength=p.size) / draws.size
  expected_tv = 0.5 * np.sqrt(2 * p * (1 - p) / (np.pi * draws.size)).sum()  # E|freq - p| of a fair sampler
  tv = 0.5 * np.abs(freq - p).sum()
  assert tv < 1.3 * expected_tv, (tv, expected_tv)
  skewed = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()  # temperature 1 instead
  assert 0.5 * np.abs(freq - skewed).sum() > 3 * expected_tv  # the test can tell temperatures apart
  same = np.asarray(gen.generate(model, batch[:8], None, 5, temperature=temperature, seed=3))
  other = np.asarray(gen.generate(model, batch[:8], None, 5, temperature=temperature, seed=4))
  np.testing.assert_array_equal(same, np.asarray(gen.generate(model, batch[:8], None, 5, temperature=temperature,
                                                              seed=3)))
  assert (same != other).any()


def test_a_row_samples_from_its_own_key_alone(models):
  # Row b's draws depend on keys[b] and its own prompt only: alone, or among other rows in another order and
  # padded to another length, it samples the same 16 tokens.
  _, model = models
  ids, mask = left_padded(LENGTHS, 211, seed=8)
  keys = jax.random.split(jax.random.key(5), 3)
  kw = dict(max_new_tokens=16, temperature=1.0, top_p=0.9)
  together = np.asarray(gen.generate(model, ids, mask, keys=keys, **kw))
  assert len({tuple(row) for row in together}) == 3 and all(len(set(row)) >= 6 for row in together)
  for b, n in enumerate(LENGTHS):
    alone = gen.generate(model, ids[b:b + 1, -n:], None, keys=keys[b:b + 1], **kw)
    np.testing.assert_array_equal(np.asarray(alone)[0], together[b])
  swapped = np.asarray(gen.generate(model, ids[::-1], mask[::-1], keys=keys[::-1], **kw))
  np.testing.assert_array_equal(swapped[::-1], together)
  other = np.asarray(gen.generate(model, ids, mask, keys=jax.random.split(jax.random.key(6), 3), **kw))
  assert (other != together).any()  # the keys do decide the draws


def test_nucleus_is_the_sorted_cumulative_rule():
  # Reference: HF TopPLogitsWarper's rule in numpy (sort descending, keep while the mass before a token < top_p).
  rng = np.random.default_rng(0)
  for scale, top_p in [(0.5, 0.9), (3.0, 0.9), (8.0, 0.5), (1.0, 0.99), (3.0, 1e-6)]:
    logits = (scale * rng.standard_normal((16, 5000))).astype(np.float32)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, -1).astype(np.float64)
    keep_sorted = np.cumsum(sorted_p, -1) - sorted_p < top_p
    ref = np.zeros_like(keep_sorted)
    np.put_along_axis(ref, order, keep_sorted, -1)
    ours = np.asarray(gen.nucleus(jnp.asarray(probs), jnp.float32(top_p)))
    assert ref.sum(-1).min() >= 1 and (top_p < 0.01 or ref.sum(-1).max() > 1)  # a set, not just the argmax
    np.testing.assert_array_equal(ours, ref, err_msg=f"scale {scale}, top_p {top_p}")


def test_top_p_keeps_only_the_nucleus():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]] * 3000))
  keys = jax.random.split(jax.random.key(0), 3000)
  draws = np.asarray(gen.sample_token(logits, keys, jnp.float32(1.0), jnp.float32(0.7)))
  freq = np.bincount(draws, minlength=4) / draws.size
  assert freq[2] == freq[3] == 0  # 0.5 + 0.3 >= 0.7: the nucleus is {0, 1}
  np.testing.assert_allclose(freq[:2], [0.625, 0.375], atol=0.04)
  greedy = np.asarray(gen.sample_token(logits[:5], keys[:5], jnp.float32(1.0), jnp.float32(1e-6)))
  assert (greedy == 0).all()


def test_buckets_reuse_compiled_programs(models):
  _, model = models
  assert [gen.bucket(n) for n in (1, 16, 17, 100, 128, 129)] == [16, 16, 32, 128, 128, 256]
  gen.generate(model, *left_padded([9, 3, 7], 211, seed=6), max_new_tokens=4)
  before = gen._generate._cache_size()
  gen.generate(model, *left_padded([12, 2, 5], 211, seed=7), max_new_tokens=4)  # same bucket, new lengths
  assert gen._generate._cache_size() == before
