"""Save and restore a module's parameters as an Orbax checkpoint of plain nested dicts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

M = TypeVar("M", bound=nnx.Module)


class CheckpointError(ValueError):
  """A parameter checkpoint that does not fit the model or fails its checks; one line naming the file."""


def save_params(tree: dict[str, Any], path: str | Path) -> None:
  """Write a nested dict of arrays (e.g. `nnx.to_pure_dict(nnx.state(model, nnx.Param))`) to `path`, then the
  size and CRC-32 of every file Orbax wrote to `<path>.files.json` (fsynced; `check_files` validates them on read).
  Orbax itself writes to a temporary folder and renames it (with `force`, after deleting an old `path`)."""
  path = Path(path).absolute()
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, tree, force=True)
  if jax.process_index() == 0:
    files = {str(f.relative_to(path)): [f.stat().st_size, _crc32(f)] for f in sorted(path.rglob("*")) if f.is_file()}
    atomic_write(manifest_path(path), json.dumps({"format": "size, crc32", "files": files}, indent=0).encode())


def manifest_path(path: Path) -> Path:
  """The file list `save_params` writes beside the Orbax folder `path`."""
  return path.with_name(path.name + ".files.json")


def _crc32(path: Path) -> int:
  crc = 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 22):
      crc = zlib.crc32(chunk, crc)
  return crc


def atomic_write(path: Path, data: bytes) -> None:
  """`path` gets `data` or keeps its old content: written to a temporary sibling, fsynced, renamed, and the
  folder fsynced. An OSError (a full disk: ENOSPC) removes the temporary file and propagates."""
  tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # unique: concurrent writers never share one
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError:
    tmp.unlink(missing_ok=True)
    raise
  fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
  fd = os.open(folder, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def check_files(path: Path) -> None:
  """Raise ValueError naming the first file of the Orbax folder `path` whose size or CRC-32 differs from
  `<path>.files.json` (a truncated, damaged or missing file). Folders written before these lists existed (no
  list) are not checked here; `_read` still turns their read errors into one line."""
  listing = manifest_path(path)
  if not listing.exists():
    return
  try:
    files = json.loads(listing.read_text())["files"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"{listing}: files: unreadable file list ({type(e).__name__}: {e})") from None
  for name, (size, crc) in files.items():
    f = path / name
    if not f.is_file():
      raise CheckpointError(f"{f}: missing (listed in {listing.name}); the checkpoint is incomplete")
    if f.stat().st_size != size:
      raise CheckpointError(f"{f}: size {f.stat().st_size} bytes, {size} when written (truncated or damaged)")
    if _crc32(f) != crc:
      raise CheckpointError(f"{f}: crc32 differs from the one recorded when written (damaged)")


@contextlib.contextmanager
def orbax_errors(path: Path) -> Iterator[None]:
  """Any error reading the Orbax checkpoint `path` becomes one CheckpointError line naming it (Orbax's own is a
  multi-line TensorStore spec). Its other failed reads, left in Orbax's event loop, would each print a traceback
  (when collected, at exit, or from TensorStore's threads as they finish): those reports, and only those, are
  dropped (filters installed on first use)."""
  _drop_failed_read_reports()
  try:
    yield
  except (CheckpointError, FileNotFoundError):
    raise
  except Exception as e:  # TensorStore / Orbax raise bare Exception, ValueError, AttributeError, ... per damage
    reason = (str(e).strip().splitlines() or [""])[0].split(" See full TensorStore")[0][:160]
    raise CheckpointError(f"{path}: unreadable Orbax checkpoint ({type(e).__name__}: {reason})") from None


_READ_FAILURE = ("_read_array_index_and_device_put", "Encountered error while reading array index", "OCDBT database")


def _failed_read(exc: BaseException | None, obj: Any = None) -> bool:
  """Whether a report is about one of Orbax's abandoned array reads (or its closed event loop)."""
  chain = [exc, getattr(exc, "__cause__", None), getattr(exc, "__context__", None)]
  text = repr(obj) + "".join(str(e) for e in chain if e is not None)
  return any(marker in text for marker in _READ_FAILURE) or (
      isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc))


class _DropFailedReads(logging.Filter):
  """asyncio logs "Future exception was never retrieved" for each abandoned read."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not (_failed_read(exc) or any(m in record.getMessage() for m in _READ_FAILURE))


def _drop_failed_read_reports() -> None:
  """Filters on `sys.unraisablehook`, `threading.excepthook` and `sys.excepthook` (what a C++ callback's
  `PyErr_Print` uses; installed once) that drop the reports of Orbax's abandoned array reads and pass everything
  else on."""
  if getattr(sys.unraisablehook, "_drops_failed_reads", False):
    return
  unraisable, thread, uncaught = sys.unraisablehook, threading.excepthook, sys.excepthook

  def unraisable_hook(u):
    if not _failed_read(u.exc_value, u.object):
      unraisable(u)

  def thread_hook(args):
    if not _failed_read(args.exc_value):
      thread(args)

  def uncaught_hook(kind, value, tb):  # only the closed loop: a real uncaught error (ours included) still prints
    if not (isinstance(value, RuntimeError) and "Event loop is closed" in str(value)):
      uncaught(kind, value, tb)

  unraisable_hook._drops_failed_reads = True
  sys.unraisablehook, threading.excepthook, sys.excepthook = unraisable_hook, thread_hook, uncaught_hook
  logging.getLogger("asyncio").addFilter(_DropFailedReads())


@contextlib.contextmanager
def _read(path: Path) -> Iterator[ocp.StandardCheckpointer]:
  """A checkpointer for reading the Orbax folder `path`, checked first (`check_files`), inside `orbax_errors`."""
  if not path.is_dir():
    raise FileNotFoundError(f"no parameter checkpoint at {path}" if not path.exists() else
                            f"{path}: not a folder (expected an Orbax checkpoint)")
  check_files(path)
  with orbax_errors(path), ocp.StandardCheckpointer() as ckpt:
    yield ckpt


def _stored_tree(ckpt: ocp.StandardCheckpointer, path: Path) -> Any:
  metadata = ckpt.metadata(path)
  tree = getattr(getattr(metadata, "item_metadata", None), "tree", None)
  if tree is None:
    raise CheckpointError(f"{path}: _METADATA: missing or unreadable (not an Orbax checkpoint, or a damaged one)")
  return tree


def restore_params(abstract: M, path: str | Path, param_dtype: Any | None = None) -> M:
  """Fill an abstract module (from `nnx.eval_shape`) with the parameters stored at `path`.

  Leaves are restored in the abstract model's dtype (or `param_dtype`); a checkpoint whose tree
  or shapes differ from the model raises ValueError naming the first differing parameter.
  """
  path = Path(path).absolute()
  graphdef, state = nnx.split(abstract)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # jax arrays, not numpy copies per call
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, param_dtype or s.dtype, sharding=device),
                        nnx.to_pure_dict(state))
  with _read(path) as ckpt:
    stored = _stored_tree(ckpt, path)
    check_same_tree(stored, target, str(path))
    restored = ckpt.restore(path, target)
  nnx.replace_by_pure_dict(state, restored)
  return nnx.merge(graphdef, state)


def restore_into(module: nnx.Module, path: str | Path, variables: Any = nnx.Param, partial: bool = False,
                 only: Any = None) -> list[str]:
  """Overwrite, in place, the `variables` (an NNX filter) of `module` with the checkpoint at `path`.

  The checkpoint must hold exactly those variables (same tree and shapes) unless `partial`, where it
  may hold a subset; of those, only the ones matching the filter `only` (default: all) are written.
  Returns the written paths. Values are cast to the module's dtypes.
  """
  path = Path(path).absolute()
  state = nnx.state(module, variables)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), nnx.to_pure_dict(state))
  with _read(path) as ckpt:
    stored = _stored_tree(ckpt, path)
    if partial:
      stored_keys = {_key(p) for p, _ in jax.tree_util.tree_flatten_with_path(stored)[0]}
      flat = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(target)[0] if _key(p) in stored_keys}
      target = unflatten_paths(flat)
    check_same_tree(stored, target, str(path))
    restored = ckpt.restore(path, target)
  flat_restored = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(restored)[0]}
  keep = nnx.filterlib.to_predicate(True if only is None else only)
  written = []
  for var_path, var in nnx.to_flat_state(state):
    key = ".".join(map(str, var_path))
    if key in flat_restored and keep(var_path, var):
      var.set_value(flat_restored[key])
      written.append(key)
  nnx.update(module, state)
  return sorted(written)


def flatten_paths(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': x, 0: y}} -> {'a.b': x, 'a.0': y}."""
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    out.update(flatten_paths(v, key + ".") if isinstance(v, Mapping) else {key: v})
  return out


def unflatten_paths(flat: Mapping[str, Any]) -> dict[Any, Any]:
  """Inverse of `flatten_paths`; digit components become int keys (nnx.List indices)."""
  out: dict[Any, Any] = {}
  for key, v in flat.items():
    node = out
    *parents, leaf = [int(p) if p.isdigit() else p for p in key.split(".")]
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def load_converted(path: str | Path, config_from_hf: Callable[[dict, str], Any], abstract_fn: Callable[..., M],
                   dtype: Any, param_dtype: Any | None) -> M:
  """A converter's output folder (config.json + Orbax `params/`) -> the module, compute `dtype`."""
  path = Path(path)
  if not (path / "config.json").exists():
    raise FileNotFoundError(f"{path}: no config.json (expected a folder written by a converter)")
  cfg = config_from_hf(json.loads((path / "config.json").read_text()), str(path / "config.json"))
  return restore_params(abstract_fn(cfg, dtype, param_dtype or jnp.float32), path / "params", param_dtype=param_dtype)


def check_same_tree(found: dict[str, Any], expected: dict[str, Any], where: str) -> None:
  """Raise ValueError naming missing, unexpected and mis-shaped leaves of two nested dicts."""
  flat_found = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(found)[0]}
  flat_expected = {_key(p): v for p, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
  problems = [f"missing {k} (expected shape {tuple(flat_expected[k].shape)})" for k in flat_expected
              if k not in flat_found]
  problems += [f"unexpected {k} (shape {tuple(flat_found[k].shape)})" for k in flat_found if k not in flat_expected]
  problems += [f"{k}: shape {tuple(flat_found[k].shape)} != expected {tuple(flat_expected[k].shape)}"
               for k in flat_expected if k in flat_found
               and tuple(flat_found[k].shape) != tuple(flat_expected[k].shape)]
  if problems:
    raise CheckpointError(f"{where}: parameters do not match the model: " + "; ".join(problems[:20])
                     + (f" (+{len(problems) - 20} more)" if len(problems) > 20 else ""))


def _key(path: tuple) -> str:
  return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def param_count(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
