"""Inference from the persistent feature store (`predict.generate_batches(features=...)`, `infer --features`):
the answers equal those of the towers run on decoded media, whether the store holds every record, some, or a corrupt
entry; a fully stored run decodes nothing and runs no tower (counted: executions of the store's tower program and
of the inference embeddings on media batches), also through the command with the model saved to a folder. A store
of other towers is another space (tests/test_features.py): every entry is computed, as for an empty store. A store
on a read-only mount is read as it is: the command computes what it lacks in memory and answers the same."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanoemox_jax.data import features
from nanoemox_jax.data.features import FeatureStore, build_cache, space_settings
from nanoemox_jax.data.manifest import write_jsonl
from nanoemox_jax.infer import predict as pred
from nanoemox_jax.infer.__main__ import main
from tests.test_infer_cli import setup  # noqa: F401 (fixture)
from tests.test_predict import model, tok  # noqa: F401 (fixtures)

NEW_TOKENS = 8


@pytest.fixture
def calls(monkeypatch) -> dict[str, int]:
  """Executions of the store's tower program ("store", as tests/test_features.py counts) and of the inference
  embeddings on batches of decoded media, which run the towers ("media")."""
  out = {"store": 0, "media": 0}
  towers, embeddings = features._towers, pred._embeddings

  def counted_towers(*args):
    out["store"] += 1
    return towers(*args)

  def counted_embeddings(graphdef, state, batch):
    out["media"] += batch.features is None
    return embeddings(graphdef, state, batch)

  monkeypatch.setattr(features, "_towers", counted_towers)
  monkeypatch.setattr(pred, "_embeddings", counted_embeddings)
  return out


def test_stored_entries_give_the_towers_answers(setup, model, tok, tmp_path, calls, caplog, capsys):  # noqa: F811
  folder, items = setup  # an OV-MER video with its wav, a MIntRec video, a CREMA-D clip, the first without video
  tokens = lambda **options: pred.generate_tokens(model, tok, items, batch_size=2, max_new_tokens=NEW_TOKENS,
                                                  **options)
  want = tokens()
  assert calls == {"store": 0, "media": 2}  # 2 + 2 records: both batches ran the towers
  assert len({tuple(row) for row in want}) == len(items)  # the rows differ: a mix-up of rows or features would show
  # Two records in the store, two not: those are computed (one tower batch) and written, none decoded in batches.
  store = tmp_path / "store"
  assert build_cache(store, model, items[1:3], batch_size=2).computed == 2
  calls.update(store=0, media=0)
  np.testing.assert_array_equal(tokens(features=store), want)
  assert calls == {"store": 1, "media": 0}
  space = FeatureStore(store, space_settings(model))
  assert len(space.entries) == len(items)
  # Every record stored: no tower output computed.
  calls.update(store=0, media=0)
  np.testing.assert_array_equal(tokens(features=store), want)
  assert calls == {"store": 0, "media": 0}
  # One byte of the first shard's second entry flipped: it fails its crc32 and is recomputed, the answers stay.
  shard = min(space.folder.glob("*.bin"), key=lambda p: p.stat().st_mtime_ns)
  blob = bytearray(shard.read_bytes())
  blob[space.nbytes + 7] ^= 0x10
  shard.write_bytes(bytes(blob))
  calls.update(store=0, media=0)
  np.testing.assert_array_equal(tokens(features=store), want)
  assert calls == {"store": 1, "media": 0}
  # The command with the model saved to a folder (the same weights) finds every entry: the same key.
  write_jsonl(items, tmp_path / "test.jsonl")
  calls.update(store=0, media=0)
  assert main(["--checkpoint", str(folder), "--manifest", str(tmp_path / "test.jsonl"), "--out",
               str(tmp_path / "preds.jsonl"), "--max-new-tokens", str(NEW_TOKENS), "--batch-size", "2",
               "--features", str(store)]) == 0
  assert calls == {"store": 0, "media": 0}
  assert f"{len(items)} read, 0 computed" in caplog.text  # the store's summary line
  got = {p["id"]: p["text"] for p in map(json.loads, (tmp_path / "preds.jsonl").read_text().splitlines())}
  assert got == {r.id: pred.answer_text(tok, row) for r, row in zip(items, want)}
  capsys.readouterr()
  with pytest.raises(SystemExit, match="2"):  # a file, not a store folder: exit 2, the usage and one error line
    main(["--checkpoint", str(folder), "--manifest", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "o"),
          "--features", str(tmp_path / "test.jsonl")])
  last = capsys.readouterr().err.strip().splitlines()[-1]
  assert f"--features {tmp_path / 'test.jsonl'}: not a folder" in last


def read_only(folder: Path, *command: str) -> subprocess.CompletedProcess:
  """Runs `command` with `folder` on a read-only mount: a bind mount remounted read-only in a mount namespace of
  its own when root (whom file modes do not stop), else with the write bits removed."""
  env = os.environ | {"JAX_PLATFORMS": "cpu"}
  if os.geteuid() != 0:
    subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
    try:
      return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    finally:
      subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
  mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
  probe = subprocess.run(["unshare", "-m", "sh", "-c", mount + " 2>&1", str(folder), "touch", str(folder / "probe")],
                         capture_output=True, text=True) if shutil.which("unshare") else None
  if probe is None or "Read-only file system" not in probe.stdout + probe.stderr:
    pytest.skip(f"cannot mount {folder} read-only here as root (unshare -m): "
                f"{probe and (probe.stdout + probe.stderr).strip()}")
  return subprocess.run(["unshare", "-m", "sh", "-c", mount, str(folder), *command], capture_output=True, text=True,
                        timeout=600, env=env)


def test_a_read_only_store_is_read_and_what_it_lacks_computed_in_memory(setup, model, tok, tmp_path):  # noqa: F811
  folder, items = setup
  want = pred.generate_tokens(model, tok, items, batch_size=2, max_new_tokens=NEW_TOKENS)
  store = tmp_path / "store"
  assert build_cache(store, model, items[1:3], batch_size=2).computed == 2  # two of the four records stored
  before = sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*"))
  write_jsonl(items, tmp_path / "test.jsonl")
  run = read_only(store, sys.executable, "-m", "nanoemox_jax.infer", "--checkpoint", str(folder), "--manifest",
                  str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "preds.jsonl"), "--max-new-tokens",
                  str(NEW_TOKENS), "--batch-size", "2", "--features", str(store))
  assert run.returncode == 0, run.stderr
  assert "is not writable (Read-only file system" in run.stderr or "is not writable (Permission denied" in run.stderr
  assert "Traceback" not in run.stderr
  got = {p["id"]: p["text"] for p in map(json.loads, (tmp_path / "preds.jsonl").read_text().splitlines())}
  assert got == {r.id: pred.answer_text(tok, row) for r, row in zip(items, want)}
  assert sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*")) == before
  # Building into it is refused before any work: one line, exit 2.
  run = read_only(store, sys.executable, "-m", "nanoemox_jax.data.features", "build", "--manifests",
                  str(tmp_path / "test.jsonl"), "--parts", str(folder), "--out", str(store))
  assert run.returncode == 2 and run.stderr.strip() == (f"--out {store}: not writable (a read-only store is for "
                                                        "reading: training and inference use it as it is)")


def test_a_bfloat16_store_built_for_training_serves_bfloat16_inference(setup, tmp_path, calls, caplog):  # noqa: F811
  """`features build` with bfloat16 towers and compute (what the paper configs train with) makes the entries that
  `infer --compute-dtype bfloat16 --tower-dtype bfloat16` (its defaults on a GPU) reads: no tower runs, and the
  answers equal those of the towers run on decoded media at the same dtypes."""
  from nanoemox_jax.data.features import main as features_main
  folder, items = setup
  items = items[:2]  # an OV-MER video with its wav, a MIntRec video: one batch
  write_jsonl(items, tmp_path / "test.jsonl")
  bf16 = ["--compute-dtype", "bfloat16", "--tower-dtype", "bfloat16"]
  assert features_main(["build", "--manifests", str(tmp_path / "test.jsonl"), "--parts", str(folder), "--out",
                        str(tmp_path / "store"), "--workers", "0", "--batch-size", "2", *bf16]) == 0
  answers = {}
  for name, extra in (("towers", []), ("store", ["--features", str(tmp_path / "store")])):
    calls.update(store=0, media=0)
    out = tmp_path / f"{name}.jsonl"
    assert main(["--checkpoint", str(folder), "--manifest", str(tmp_path / "test.jsonl"), "--out", str(out),
                 "--max-new-tokens", str(NEW_TOKENS), "--batch-size", "2", *bf16, *extra]) == 0
    answers[name] = {p["id"]: p["text"] for p in map(json.loads, out.read_text().splitlines())}
  assert calls == {"store": 0, "media": 0}
  assert f"{len(items)} read, 0 computed" in caplog.text
  assert answers["store"] == answers["towers"] and len(answers["towers"]) == len(items)
