"""Reads the `.npz` files the reference code writes, without running arbitrary pickles.

MERBench's label files (`label.npz`: `{"test_corpus": {name: {"emo": ..., "val": ...}}}`) and AffectGPT's raw
answers (`name2reason` dicts) are 0-d object arrays, i.e. pickles (`np.save(..., allow_pickle=True)`); the
judge's `-openset.npz` / `-openset-sentiment.npz` hold plain unicode arrays. Arrays without objects are read with
`allow_pickle=False`; an object array is unpickled by an unpickler that may build only numpy arrays, dtypes and
scalars and the builtin containers, so a file carrying any other object (code) is refused. Numpy scalars come back
as Python numbers (`tolist`).
"""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# (module, name) the pickle of a numpy object array may reference: the array, its dtypes and numpy scalars.
_ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype")}


class NpzError(ValueError):
  """The file is not an npz of the expected kind; the message names the file (and member)."""


class _Unpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refused {module}.{name} (only numpy arrays, dtypes and scalars)")


def _read_member(data: bytes, where: str) -> Any:
  f = io.BytesIO(data)
  try:
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _, _, dtype = header(f)
    if not dtype.hasobject:
      return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False).tolist()
    array = _Unpickler(f).load()
  except (ValueError, EOFError, pickle.UnpicklingError, AttributeError, TypeError) as e:
    raise NpzError(f"{where}: not a readable numpy array ({e})") from None
  if not isinstance(array, np.ndarray):
    raise NpzError(f"{where}: the pickle holds {type(array).__name__}, not a numpy array")
  return _plain(array.tolist())


def _plain(value: Any) -> Any:
  """Numpy scalars inside containers -> Python numbers."""
  if isinstance(value, dict):
    return {_plain(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value.item() if isinstance(value, np.generic) else value


def load(path: str | Path) -> dict[str, Any]:
  """member name (without `.npy`) -> its content as Python values (arrays as nested lists, a 0-d object array as
  the object it holds). A missing, unreadable or non-npz file, or a refused pickle, is an NpzError."""
  try:
    with zipfile.ZipFile(path) as z:
      members = {name.removesuffix(".npy"): z.read(name) for name in z.namelist()}
  except OSError as e:
    raise NpzError(f"{path}: cannot read: {e.strerror or e}") from None
  except (zipfile.BadZipFile, EOFError, zlib.error) as e:
    raise NpzError(f"{path}: not an .npz file (a broken zip archive: {e})") from None
  return {name: _read_member(data, f"{path} member {name!r}") for name, data in members.items()}
