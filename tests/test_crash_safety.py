"""Crash safety of the artifacts `nanoemox_jax.checkpoints` and `train.checkpoint` write: a model-folder export is
atomic (a simulated full disk at each write keeps the previous export and leaves no partial folder), damage is
named on read (size / CRC-32 lists beside Orbax folders), and a damaged training checkpoint falls back to the
step before it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from nanoemox_jax.checkpoints import params_io, parts
from nanoemox_jax.model import presets
from nanoemox_jax.model.nanoemox import init_model
from nanoemox_jax.train.checkpoint import Checkpointer


def _adapters(folder: Path) -> dict[str, np.ndarray]:
  """The stored trainable parameters of model folder `folder`, read with Orbax directly (no validation)."""
  path = folder / "adapters" / "params"
  with ocp.StandardCheckpointer() as ckpt:
    tree = ckpt.restore(path)
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, list]:
  """A parts folder holding only `nanoemox.json` (tiny preset) and two tiny models with different adapters."""
  source = tmp_path_factory.mktemp("parts")
  (source / "nanoemox.json").write_text(json.dumps({"preset": "tiny"}))
  return source, [init_model(presets.tiny(), seed) for seed in (0, 1)]


def _enospc(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_written_orbax_save(self, path, *args, **kwargs):
  Path(path).mkdir(parents=True, exist_ok=True)
  (Path(path) / "_METADATA").write_text("{")
  _enospc()


FAILURES = {  # where the disk fills up: the Orbax arrays, nanoemox.json, adapters/conversion.json, the file list
    "orbax_arrays": lambda mp: mp.setattr(ocp.StandardCheckpointer, "save", _half_written_orbax_save),
    "nanoemox_json": lambda mp: mp.setattr(parts, "atomic_write", lambda path, data: _enospc() if path.name ==
                                           "nanoemox.json" else params_io.atomic_write(path, data)),
    "conversion_json": lambda mp: mp.setattr(parts, "atomic_write", lambda path, data: _enospc() if path.name ==
                                             "conversion.json" else params_io.atomic_write(path, data)),
    "files_list_fsync": lambda mp: mp.setattr(params_io.os, "fsync", _enospc),
}


@pytest.mark.parametrize("where", sorted(FAILURES))
def test_full_disk_during_export_keeps_the_previous_export(models, tmp_path, monkeypatch, where):
  source, (first, second) = models
  out = tmp_path / "model"
  parts.export(first, source, out, "phase1a")
  before = _adapters(out)
  spec = (out / "nanoemox.json").read_text()
  with monkeypatch.context() as mp:
    FAILURES[where](mp)
    with pytest.raises(OSError, match=r"model: export failed \(No space left on device\); the previous export") as e:
      parts.export(second, source, out, "phase2")
  assert e.value.errno == errno.ENOSPC
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .model.partial / .model.old left
  assert (out / "nanoemox.json").read_text() == spec
  after = _adapters(out)
  assert before.keys() == after.keys() and len(before) > 10
  for key in before:
    np.testing.assert_array_equal(after[key], before[key], err_msg=key)
  params_io.check_files(out / "adapters" / "params")  # its file list still matches
  parts.export(second, source, out, "phase2")  # the disk has room again
  replaced = _adapters(out)
  assert any(not np.array_equal(replaced[k], before[k]) for k in before)
  assert json.loads((out / "adapters" / "conversion.json").read_text())["source"] == "phase2"


def test_a_killed_export_leaves_nothing_that_is_read(models, tmp_path):
  """A `.model.partial` left by a SIGKILL is neither read nor in the way of the next export."""
  source, (first, _) = models
  partial = tmp_path / ".model.partial"
  (partial / "adapters").mkdir(parents=True)
  (partial / "nanoemox.json").write_text('{"pres')
  parts.export(first, source, tmp_path / "model", "phase1a")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
  assert parts.read_spec(tmp_path / "model")["preset"] == "tiny"


def test_export_refuses_a_folder_that_is_not_a_model_folder(models, tmp_path):
  source, (first, _) = models
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="is not a model folder"):
    parts.export(first, source, tmp_path, "phase1a")
  assert (tmp_path / "notes.txt").read_text() == "mine"


DAMAGE = {  # what a crash or a bad disk leaves in an exported folder -> the words of the one-line error
    "data_truncated": (lambda f: os.truncate(max(_data(f), key=lambda p: p.stat().st_size), 7), "truncated or damaged"),
    "data_zero_bytes": (lambda f: os.truncate(max(_data(f), key=lambda p: p.stat().st_size), 0), "truncated or damaged"),
    "data_bit_flip": (lambda f: _flip(max(_data(f), key=lambda p: p.stat().st_size)), "crc32 differs"),
    "data_file_missing": (lambda f: _data(f)[0].unlink(), "missing .listed in params.files.json"),
    "metadata_missing": (lambda f: (f / "adapters/params/_METADATA").unlink(), "_METADATA: missing"),
    "files_list_garbage": (lambda f: (f / "adapters/params.files.json").write_text("[1"), "unreadable file list"),
    "params_is_a_file": (lambda f: _replace_with_file(f / "adapters/params"), "not a folder"),
    "nanoemox_json_truncated": (lambda f: os.truncate(f / "nanoemox.json", 9), "nanoemox.json: not JSON"),
    "nanoemox_json_no_preset": (lambda f: (f / "nanoemox.json").write_text("{}"), "nanoemox.json: preset: missing"),
    "nanoemox_json_missing": (lambda f: (f / "nanoemox.json").unlink(), "no nanoemox.json .not a model folder"),
}


def _data(folder: Path) -> list[Path]:
  return sorted(p for p in (folder / "adapters/params/ocdbt.process_0").rglob("*") if p.is_file())


def _flip(path: Path) -> None:
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _replace_with_file(path: Path) -> None:
  import shutil

  shutil.rmtree(path)
  path.write_text("x")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_exports_are_named_on_read(models, tmp_path, damage):
  source, (first, second) = models
  out = tmp_path / "model"
  parts.export(first, source, out, "phase1a")
  corrupt, words = DAMAGE[damage]
  corrupt(out)
  with pytest.raises((ValueError, FileNotFoundError)) as e:
    parts.read_spec(out)
    params_io.restore_into(second, out / "adapters" / "params", nnx.Param, partial=True)
  message = str(e.value)
  assert "\n" not in message and str(out) in message, message
  assert __import__("re").search(words, message), message


def test_a_missing_parts_folder_names_the_command_that_makes_it(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    parts.load(tmp_path / "checkpoints" / "nanoemox")
  assert f"python -m converters.assemble --out {tmp_path / 'checkpoints' / 'nanoemox'}" in str(e.value)


class _Small(nnx.Module):
  def __init__(self):
    self.linear = nnx.Linear(3, 4, rngs=nnx.Rngs(0))


def test_a_damaged_training_checkpoint_falls_back_to_the_step_before(tmp_path, caplog):
  model = _Small()
  optimizer = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)
  ckpt = Checkpointer(tmp_path, keep=3, asynchronous=False)
  kernels = {}
  for step in (1, 2):
    model.linear.kernel[...] = jnp.full((3, 4), float(step))
    ckpt.save(step, model, optimizer, {"position": step})
    kernels[step] = np.asarray(model.linear.kernel[...])
  ckpt.wait()
  for data_file in (tmp_path / "2" / "state").rglob("*.ocdbt"):  # a disk that lost step 2's array index
    os.truncate(data_file, 0)
  fresh = _Small()
  step, data, _ = ckpt.restore(fresh, nnx.Optimizer(fresh, optax.adam(0.1), wrt=nnx.Param))
  assert (step, data) == (1, {"position": 1})
  np.testing.assert_array_equal(np.asarray(fresh.linear.kernel[...]), kernels[1])
  assert any(f"{tmp_path / '2'}: unreadable" in r.getMessage() for r in caplog.records)
  with pytest.raises(ValueError, match=r"/2: unreadable Orbax checkpoint .*; move it away to resume"):
    ckpt.restore(fresh, nnx.Optimizer(fresh, optax.adam(0.1), wrt=nnx.Param), step=2)
  ckpt.close()


def test_a_damaged_folder_without_a_file_list_is_one_line_in_a_fresh_process(models, tmp_path):
  """Folders written before the file lists: Orbax's own read error becomes one line, and the reports of its other
  abandoned reads (printed when collected or at exit) are dropped."""
  import subprocess
  import sys

  source, (first, _) = models
  out = tmp_path / "model"
  parts.export(first, source, out, "phase1a")
  (out / "adapters" / "params.files.json").unlink()
  for data_file in _data(out):
    os.truncate(data_file, 3)
  code = ("import sys\nfrom flax import nnx\nfrom nanoemox_jax.checkpoints import params_io\n"
          "from nanoemox_jax.model import presets\nfrom nanoemox_jax.model.nanoemox import init_model\n"
          f"try:\n  params_io.restore_into(init_model(presets.tiny(), 0), {str(out / 'adapters' / 'params')!r}, "
          "nnx.Param, partial=True)\nexcept ValueError as e:\n  print(f'error: {e}', file=sys.stderr)\n  sys.exit(2)\n")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  lines = [line for line in run.stderr.splitlines() if not line.startswith(("W0", "I0", "WARNING"))]
  assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
  assert lines[0].startswith(f"error: {out / 'adapters' / 'params'}: unreadable Orbax checkpoint"), lines
