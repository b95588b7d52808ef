"""What every converter shares: reading checkpoint files, the regex rename table, strict checks, CLI.

A converter is a table of `Rule`s (HF key regex -> our parameter path, plus a transform) and an
abstract target model; `convert` refuses missing, unexpected and mis-shaped tensors by name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import ml_dtypes
import numpy as np
from tqdm import tqdm

from nanoemox_jax.checkpoints.params_io import flatten_paths, save_params, unflatten_paths


class ConversionError(ValueError):
  """A checkpoint does not fit the target model; the message names every offending key."""


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                       "BOOL": np.bool_}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
  """Memory-mapped arrays of one .safetensors file (bf16 as `ml_dtypes.bfloat16`); nothing is copied. A file that
  is not one (truncated, bad header, a tensor outside the data) is a one-line ConversionError naming the field."""
  size = path.stat().st_size
  with open(path, "rb") as f:
    prefix = f.read(8)
    if len(prefix) < 8:
      raise ConversionError(f"{path}: header: {size} bytes, shorter than a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", prefix)
    if n > size - 8:
      raise ConversionError(f"{path}: header: length {n} exceeds the file's {size} bytes (truncated or not "
                            "safetensors)")
    try:
      header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ConversionError(f"{path}: header: not JSON ({e})") from None
  if not isinstance(header, dict):
    raise ConversionError(f"{path}: header: a JSON {type(header).__name__}, not an object")
  data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    except (KeyError, TypeError, ValueError):
      raise ConversionError(f"{path}: tensor {name}: entry {info!r} lacks dtype, shape or data_offsets") from None
    if dtype not in _SAFETENSORS_DTYPES:
      raise ConversionError(f"{path}: tensor {name}: unsupported dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
      raise ConversionError(f"{path}: tensor {name}: shape {shape!r} is not a list of sizes")
    want = math.prod(shape) * np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
    if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
      raise ConversionError(f"{path}: tensor {name}: data_offsets {[begin, end]!r} are not 0 <= begin <= end")
    if end > data.size:
      raise ConversionError(f"{path}: tensor {name}: data_offsets end {end} beyond the file's {data.size} data "
                            "bytes (truncated?)")
    if end - begin != want:
      raise ConversionError(f"{path}: tensor {name}: data_offsets span {end - begin} bytes, shape {shape} of "
                            f"{dtype} needs {want}")
    out[name] = data[begin:end].view(_SAFETENSORS_DTYPES[dtype]).reshape(shape)
  return out


def read_torch_bin(path: Path) -> dict[str, Any]:
  """A pickled PyTorch state dict, read with `weights_only=True` only (no arbitrary code runs); tensors, also in
  nested dicts (the authors' `{"model": state_dict}`), become numpy (bf16 as `ml_dtypes.bfloat16`). A file torch
  cannot read is a one-line ConversionError."""
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"{path}: reading PyTorch .bin/.pt files needs torch (pip install torch)") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors, ... per damage
    reason = (str(e).strip().splitlines() or [""])[0][:200]
    raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {reason})") from None
  if not isinstance(obj, Mapping):
    raise ConversionError(f"{path}: expected a state dict, found {type(obj).__name__}")

  def to_numpy(value: Any) -> Any:
    if isinstance(value, Mapping):
      return {k: to_numpy(v) for k, v in value.items()}
    if not isinstance(value, torch.Tensor):
      return value
    if value.dtype == torch.bfloat16:
      return value.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return value.detach().numpy()

  return to_numpy(obj)


def checkpoint_files(src: str | Path) -> list[Path]:
  """The weight files of an HF checkpoint that `read_checkpoint` reads: the file itself, a folder's sharded
  index's shards, its model.safetensors / pytorch_model.bin, or its only *.safetensors file."""
  src = Path(src)
  if not src.exists():
    raise ConversionError(f"{src}: no such file or folder")
  if src.is_file():
    return [src]
  for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
    if (src / index_name).exists():
      try:
        shards = sorted(set(json.loads((src / index_name).read_text())["weight_map"].values()))
      except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ConversionError(f"{src / index_name}: weight_map: not a JSON object of tensor -> shard file "
                              f"({type(e).__name__}: {e})") from None
      missing = [shard for shard in shards if not (src / shard).exists()]
      if missing:
        raise ConversionError(f"{src / index_name}: shard {missing[0]} is missing")
      return [src / shard for shard in shards]
  for name in ("model.safetensors", "pytorch_model.bin"):
    if (src / name).exists():
      return [src / name]
  found = sorted(src.glob("*.safetensors"))
  if len(found) == 1:
    return found
  raise ConversionError(f"{src}: no model.safetensors(.index.json) or pytorch_model.bin(.index.json) found")


def read_checkpoint(src: str | Path) -> dict[str, np.ndarray]:
  """All tensors of an HF checkpoint: a folder (sharded index, single file) or one file."""
  files = checkpoint_files(src)
  tensors: dict[str, np.ndarray] = {}
  for path in tqdm(files, desc=f"reading {Path(src).name}", unit="shard", disable=len(files) < 2):
    tensors.update(read_safetensors(path) if path.suffix == ".safetensors" else read_torch_bin(path))
  return tensors


def read_hf_config(src: Path, from_hf: Callable[[dict, str], Any]) -> Any:
  """The model config from the `config.json` beside the weights; a bad field is a ConversionError."""
  if not src.exists():
    raise ConversionError(f"{src}: no such file or folder")
  path = (src if src.is_dir() else src.parent) / "config.json"
  if not path.exists():
    raise ConversionError(f"{path.parent}: config.json not found next to the weights")
  try:
    config = json.loads(path.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ConversionError(f"{path}: not JSON ({e})") from None
  if not isinstance(config, dict):
    raise ConversionError(f"{path}: a JSON {type(config).__name__}, not an object")
  try:
    return from_hf(config, str(path))
  except ValueError as e:
    raise ConversionError(str(e)) from None
  except (KeyError, TypeError) as e:
    raise ConversionError(f"{path}: {type(e).__name__}: {e}") from None


def expected_params(abstract: Any) -> dict[str, Any]:
  """Flat path -> ShapeDtypeStruct of an abstract module's `nnx.Param`s (what a converter must fill)."""
  from flax import nnx

  return flatten_paths(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))


@dataclasses.dataclass(frozen=True)
class Rule:
  """Source keys matching `pattern` become `target` (a `re.sub` template) after `transform`."""

  pattern: str
  target: str
  transform: Callable[[np.ndarray], np.ndarray] = lambda x: x


def transpose(x: np.ndarray) -> np.ndarray:  # torch Linear weight [out, in] -> kernel [in, out]
  return x.T


def conv_to_hwio(x: np.ndarray) -> np.ndarray:
  """torch Conv2d weight [out, in, kh, kw] -> Flax [kh, kw, in, out]; other ranks pass through to the shape check."""
  return x.transpose(2, 3, 1, 0) if x.ndim == 4 else x


@dataclasses.dataclass
class Report:
  converted: int = 0
  ignored: list[str] = dataclasses.field(default_factory=list)
  missing: list[str] = dataclasses.field(default_factory=list)  # only with allow_missing


def convert(tensors: Mapping[str, np.ndarray], rules: Iterable[Rule], expected: Mapping[str, Any], *,
            source: str, ignore: Iterable[str] = (), dtype: Any = np.float32,
            allow_missing: bool = False) -> tuple[dict, Report]:
  """Rename and reshape `tensors` into a nested dict matching `expected` (flat path -> ShapeDtypeStruct).

  Every problem is collected and raised together as a ConversionError naming the source key.
  `allow_missing` lists absent parameters in the report instead of refusing (partial checkpoints).
  """
  rules, ignore = list(rules), [re.compile(p) for p in ignore]
  out, report, problems, origin = {}, Report(), [], {}
  for key, value in tqdm(tensors.items(), desc=f"converting {Path(source).name}", unit="tensor",
                         disable=len(tensors) < 64):
    if any(p.fullmatch(key) for p in ignore):
      report.ignored.append(key)
      continue
    if not isinstance(value, np.ndarray):
      problems.append(f"entry {key} is a {type(value).__name__}, not a tensor")
      continue
    rule = next((r for r in rules if re.fullmatch(r.pattern, key)), None)
    if rule is None:
      problems.append(f"unexpected tensor {key} {tuple(value.shape)} (no parameter of the model takes it)")
      continue
    path = re.sub(rule.pattern, rule.target, key)
    if path not in expected:
      problems.append(f"unexpected tensor {key} {tuple(value.shape)} (maps to {path}, which the model lacks)")
      continue
    array = rule.transform(np.asarray(value))
    want = tuple(expected[path].shape)
    if array.shape != want:
      problems.append(f"mis-shaped tensor {key}: checkpoint {tuple(value.shape)}, model {path} expects {want}"
                      + (" after transposing" if rule.transform is transpose else ""))
      continue
    out[path], origin[path] = array.astype(dtype), key
    report.converted += 1
  missing = [path for path in expected if path not in out]
  if allow_missing:
    report.missing = missing
  else:
    problems += [f"missing tensor for {path} {tuple(expected[path].shape)}" for path in missing]
  if problems:
    raise ConversionError(f"{source}: checkpoint does not fit the model:\n  " + "\n  ".join(problems))
  return unflatten_paths(out), report


def write(out_dir: str | Path, params: dict, config: dict[str, Any], report: Report, source: str) -> Path:
  """OUT/config.json, OUT/params (Orbax), OUT/conversion.json (what was converted and ignored)."""
  out_dir = Path(out_dir).absolute()
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "config.json").write_text(json.dumps(config, indent=2))
  save_params(jax.tree.map(np.asarray, params), out_dir / "params")
  (out_dir / "conversion.json").write_text(json.dumps(
      {"source": str(source), "converted": report.converted, "ignored": report.ignored, "missing": report.missing},
      indent=2))
  return out_dir


def cli(description: str, run: Callable[[str, str, Any], Path], argv: list[str] | None = None) -> None:
  """`--src DIR_OR_FILE --out DIR [--dtype float32|bfloat16]`; a ConversionError exits with code 2."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--src", required=True, help="HF folder or checkpoint file")
  parser.add_argument("--out", required=True, help="output folder (Orbax checkpoint + config.json)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="stored parameter dtype")
  args = parser.parse_args(argv)
  try:
    out = run(args.src, args.out, np.dtype(args.dtype) if args.dtype == "float32" else ml_dtypes.bfloat16)
  except ConversionError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {out}")
