"""The persistent feature store (`data.features`): stored features against the towers run on decoded media
(`jax.jit(model.tower_features)` on `media.decode_sample`, one item at a time), the same loss and update, no
tower output computed by a second phase or a resumed run (counted), builds killed mid-shard (SIGKILL at chosen
points) and corrupted bytes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.data import features, media
from nanoemox_jax.data.features import FeatureStore, build_cache, media_key, space_settings
from nanoemox_jax.data.manifest import write_jsonl
from nanoemox_jax.data.pipeline import MixSource, Pipeline, PipelineConfig
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.demo import parts as demo
from nanoemox_jax.model import fields, presets
from nanoemox_jax.model.nanoemox import NanoEmoX
from nanoemox_jax.train import loop, phases
from nanoemox_jax.train.config import Paths, Precision, paper
from nanoemox_jax.train.step import OptimConfig, make_optimizer, make_train_step
from tests.test_pipeline import clips, media_records, tok  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
TINY = presets.tiny()


@pytest.fixture(scope="module")
def tiny_model() -> NanoEmoX:
  return NanoEmoX(TINY, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def reference(tiny_model, clips):  # noqa: F811
  """Media key -> the towers' outputs on its decoded media, one item per call."""
  towers = jax.jit(tiny_model.tower_features)
  out = {}
  for r in media_records(clips):
    d = media.decode_sample(r.video, r.audio, TINY.face_input)
    out[media_key(r)] = [np.asarray(x[0]) for x in towers(d.frames[None], d.faces[None], d.audio[None])]
  return out


def assert_matches(cache, reference):
  for key, want in reference.items():
    for field, got, ref in zip(features.TowerFeatures._fields, cache.gather([key]), want, strict=True):
      np.testing.assert_allclose(got[0], ref, atol=1e-5, rtol=1e-5, err_msg=f"{key} {field}")


@pytest.fixture
def tower_calls(monkeypatch) -> dict[str, int]:
  """Counts executions of the store's tower program ("store") and model calls (traces included) that take media,
  not features, so run the towers ("model")."""
  calls = {"store": 0, "model": 0}
  towers, method = features._towers, NanoEmoX.input_embeddings

  def counted_towers(*args):
    calls["store"] += 1
    return towers(*args)

  def counted_method(self, batch):
    calls["model"] += batch.features is None
    return method(self, batch)

  monkeypatch.setattr(features, "_towers", counted_towers)
  monkeypatch.setattr(NanoEmoX, "input_embeddings", counted_method)
  return calls


def test_stored_features_give_the_towers_loss_and_update(tiny_model, tok, clips, tmp_path, tower_calls):  # noqa: F811
  records = media_records(clips)
  source = MixSource("media", tuple(records))
  config = PipelineConfig(batch_size=4, buckets=(256,), seed=3)
  assert build_cache(tmp_path, tiny_model, records, batch_size=4).computed == len(records)
  stored = build_cache(tmp_path, tiny_model, records, batch_size=4)  # a new process's view: all from disk
  assert (stored.computed, stored.read) == (0, len(records))
  results = []
  for cache in (None, stored):
    batch = next(iter(Pipeline([source], tok, TINY, config, features=cache)))
    assert (batch.features is None) == (cache is None)
    model = NanoEmoX(TINY, rngs=nnx.Rngs(0))  # the weights that built the store
    model.eval()
    optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10)), wrt=phases.trainable("3"))
    tower_calls["model"] = 0
    loss = float(make_train_step("3")(model, optimizer, loop.stack(batch, 2))["loss"])
    results.append((loss, tower_calls["model"], {jax.tree_util.keystr(p): np.asarray(v) for p, v in
                                                 jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}))
  (loss0, calls0, p0), (loss1, calls1, p1) = results
  assert calls0 > 0 and calls1 == 0  # the stored step never calls the towers
  assert abs(loss0 - loss1) <= 1e-5
  for key in p0:
    np.testing.assert_allclose(p1[key], p0[key], atol=1e-5, rtol=0, err_msg=key)


def test_corrupt_bytes_and_indexes_are_detected_and_recomputed(tiny_model, clips, reference, tmp_path):  # noqa: F811
  records = media_records(clips)
  n = len(records)
  cache = build_cache(tmp_path, tiny_model, records, batch_size=4, shard_entries=3)
  shards = sorted(cache.store.folder.glob("*.bin"))
  assert (cache.computed, len(shards)) == (n, 3)
  assert_matches(cache, reference)
  # One byte of shard 2 flipped under a running reader: gather recomputes that entry (and only it).
  blob = bytearray(shards[1].read_bytes())
  blob[cache.store.nbytes + 5] ^= 0x40  # inside its second entry
  shards[1].write_bytes(bytes(blob))
  assert_matches(cache, reference)
  assert cache.computed == n + 1
  # A fresh build reads everything, the repaired entry from the newest shard.
  again = build_cache(tmp_path, tiny_model, records, batch_size=4, shard_entries=3)
  assert (again.computed, again.read) == (0, n)
  # An index with one byte changed (a digit of an offset): its entries fail their checks and are recomputed.
  index = shards[2].with_suffix(".json")
  text = index.read_text()
  at = text.index('": [') + 4
  index.write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:])
  fresh = build_cache(tmp_path, tiny_model, records, batch_size=4, shard_entries=3)
  assert fresh.computed == 1
  assert_matches(fresh, reference)
  # Other tower weights or another face input: another space, every entry computed anew.
  other = NanoEmoX(TINY, rngs=nnx.Rngs(1))
  assert build_cache(tmp_path, other, records, batch_size=4).computed == n
  raw = NanoEmoX(dataclasses.replace(TINY, face_input="raw_frames"), rngs=nnx.Rngs(0))
  assert space_settings(raw)["towers"] == space_settings(tiny_model)["towers"]
  assert build_cache(tmp_path, raw, records, batch_size=4).computed == n
  assert len([p for p in tmp_path.iterdir() if (p / "space.json").exists()]) == 3


def test_parts_build_one_store_together(tiny_model, clips, reference, tmp_path):  # noqa: F811
  records = media_records(clips)
  halves = [build_cache(tmp_path, tiny_model, records, batch_size=4, part=(i, 2)) for i in range(2)]
  assert sum(h.computed for h in halves) == len(records) and all(h.computed for h in halves)
  whole = build_cache(tmp_path, tiny_model, records, batch_size=4)
  assert (whole.computed, whole.read) == (0, len(records))
  assert_matches(whole, reference)


# ----------------------------------------------------------------------------- through the command line and training


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
  """A small demo corpus and tiny-preset parts (as tests/test_train_loop.py)."""
  root = tmp_path_factory.mktemp("assets")
  manifests = demo.ensure_corpus(root / "corpus", seed=0, per_class=2)
  model = demo.ensure_model(root / "model", "tiny", Tokenizer(BUNDLED), root / "corpus", lm_steps=2)
  return {"manifests": manifests, "model": model}


# A build with `atomic_write` replaced: at the N-th write of a file with SUFFIX, half of the data lands in a
# temporary file (as a write cut short) and the process SIGKILLs itself. The build is the command (argv "build ...")
# or `build_cache` with the tiny preset's seed-0 weights (argv STORE MANIFEST).
KILLER = """
import os, signal, sys
from nanoemox_jax.data import features
suffix, n, args, seen, write = sys.argv[1], int(sys.argv[2]), sys.argv[3:], [], features.atomic_write
def dying(path, data):
  seen.append(path.suffix if path.name != "space.json" else "")
  if path.suffix == suffix and seen.count(suffix) == n:
    path.with_name(path.name + ".killed.tmp").write_bytes(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
  write(path, data)
features.atomic_write = dying
if args[0] == "build":
  sys.exit(features.main(args))
from flax import nnx
from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.model import presets
from nanoemox_jax.model.nanoemox import NanoEmoX
features.build_cache(args[0], NanoEmoX(presets.tiny(), rngs=nnx.Rngs(0)), read_jsonl(args[1]), 4, shard_entries=2)
"""


def killed_build(suffix: str, *args: str) -> None:
  """Runs KILLER, which is killed while writing the third shard (suffix ".bin") or its index (".json")."""
  run = subprocess.run([sys.executable, "-c", KILLER, suffix, "3", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
  assert run.returncode == -9, run.stderr[-2000:]


@pytest.mark.parametrize("suffix", [".bin", ".json"])
def test_a_build_killed_mid_shard_completes_on_rerun(tiny_model, clips, reference, tmp_path, suffix):  # noqa: F811
  records = media_records(clips)
  write_jsonl(records, tmp_path / "media.jsonl")
  killed_build(suffix, str(tmp_path / "store"), str(tmp_path / "media.jsonl"))
  store = FeatureStore(tmp_path / "store", space_settings(tiny_model))
  assert len(store.entries) == 4 and list(store.folder.glob("*.killed.tmp"))  # two whole shards survived
  cache = build_cache(tmp_path / "store", tiny_model, records, batch_size=4, shard_entries=2)
  assert (cache.computed, cache.read) == (len(records) - 4, 4)
  assert_matches(cache, reference)
  again = build_cache(tmp_path / "store", tiny_model, records, batch_size=4)
  assert (again.computed, again.read) == (0, len(records))


@pytest.mark.slow  # 2 min on 2 shared cores (demo parts, two processes)
def test_the_build_command_killed_and_rerun(assets, clips, tmp_path, capsys):  # noqa: F811
  records = media_records(clips)
  write_jsonl(records, tmp_path / "media.jsonl")
  args = ["build", "--manifests", str(tmp_path / "media.jsonl"), "--parts", str(assets["model"]), "--out",
          str(tmp_path / "store"), "--tower-dtype", "float32", "--compute-dtype", "float32", "--workers", "0",
          "--batch-size", "4", "--shard-entries", "2"]
  killed_build(".bin", *args)
  assert features.main(args) == 0  # the same command again
  assert f"{len(records)} entries of part 0/1, {len(records) - 4} computed" in capsys.readouterr().out
  model = parts.load(assets["model"])
  cache = build_cache(tmp_path / "store", model, records, batch_size=4)
  assert (cache.computed, cache.read) == (0, len(records))
  towers = jax.jit(model.tower_features)  # the parts folder's towers, not `tiny_model`
  for r in records:
    d = media.decode_sample(r.video, r.audio, TINY.face_input)
    want = towers(d.frames[None], d.faces[None], d.audio[None])
    for field, got, ref in zip(want._fields, cache.gather([media_key(r)]), want, strict=True):
      np.testing.assert_allclose(got, np.asarray(ref), atol=1e-5, rtol=1e-5, err_msg=f"{r.id} {field}")


def test_build_command_errors_are_one_line(tmp_path, capsys):
  assert features.main(["build", "--manifests", str(tmp_path / "none.jsonl"), "--parts", str(tmp_path), "--out",
                        str(tmp_path / "s")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "none.jsonl" in err
  assert features.main(["build", "--manifests", "m", "--parts", "p", "--out", "o", "--part", "2/2"]) == 2
  assert capsys.readouterr().err.strip() == "--part: '2/2' is not I/N with 0 <= I < N"


def tiny_run(assets, store: Path, steps: int):
  """Phase 1a of the tiny preset on the demo corpus's CREMA-D (as tests/test_train_loop.py's flags)."""
  run = paper(("1a",), preset="tiny")
  phase = fields.replace(run.phases["phase1a"], {
      "seed": 0, "log_every": 1, "checkpoint_every": 2, "evaluate": False,
      "data": {"train": ("cremad",), "batch_size": 2, "accumulation": 2, "workers": 0, "buckets": (256, 384)},
      "optim": {"steps": steps, "warmup_steps": 1, "learning_rate": 3e-3}})
  return dataclasses.replace(run, phases={"phase1a": phase},
                             paths=Paths(parts=str(assets["model"]), data=str(assets["manifests"]), features=str(store)),
                             precision=Precision(tower_dtype="float32", compute_dtype="float32"))


@pytest.mark.slow  # 190 s on 2 shared cores: three phase runs, each compiling its step
def test_a_second_phase_and_a_resumed_run_compute_no_tower_output(assets, tmp_path, tower_calls):
  store = tmp_path / "store"
  loop.run_phase(tiny_run(assets, store, 2), "phase1a", tmp_path / "first")
  assert tower_calls["store"] > 0 and tower_calls["model"] == 0  # the first run filled the store
  tower_calls.update(store=0, model=0)
  loop.run_phase(tiny_run(assets, store, 2), "phase1a", tmp_path / "second")
  assert tower_calls == {"store": 0, "model": 0}
  (tmp_path / "second" / "phase1a" / "results.json").unlink()  # continue it to 4 updates from its checkpoint
  results = loop.run_phase(tiny_run(assets, store, 4), "phase1a", tmp_path / "second", resume=True)
  assert results["resumed_from"] == 2 and np.isfinite(results["final"]["loss"])
  assert tower_calls == {"store": 0, "model": 0}
  assert json.loads((tmp_path / "first" / "phase1a" / "results.json").read_text())["steps"] == 2
