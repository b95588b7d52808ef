"""Folders of converted parts: one tower or LM (`load_part`), or a whole Nano-EmoX (`load`, `export`).

A part folder (written by `converters.clip / hubert / facexformer / qwen2`) is `config.json` (the HF
config, or FaceXFormer's dict) + Orbax `params/`. A model folder is

  nanoemox.json            {"preset": NAME, "overrides": {nested fields}} (`model.presets`),
                           "token_ids": {"frame_token_id": 151667, ...} (the placeholder ids of the folder's
                           tokenizer; absent: the config's, i.e. the bundled Qwen2 tokenizer's), and from
                           `converters.assemble` "sources": {part: {"source", "revision", "sha256"}}
  clip/ hubert/ face/ llm/ part folders (or links to them)
  adapters/                (optional) `converters.nanoemox_official` output or a training export:
                           `params/` + `conversion.json`; absent: adapters start from `seed`
  tokenizer/               (optional) what `python -m nanoemox_jax.infer` reads
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.experimental import multihost_utils

from nanoemox_jax.checkpoints.params_io import atomic_write, fsync_dir, restore_into, restore_params, save_params
from nanoemox_jax.model import clip_vision, face, fields, hubert, presets, qwen2
from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model.layers import DType
from nanoemox_jax.model.nanoemox import TOKEN_ID_FIELDS, TOWERS, NanoEmoX, NanoEmoXConfig, init_model


class Part(NamedTuple):
  read_config: Callable[[dict, str], Any]  # config.json contents, its path -> the part's config dataclass
  abstract_model: Callable[..., nnx.Module]  # (cfg, dtype, param_dtype) -> the module with abstract leaves


PARTS = {"clip": Part(clip_vision.CLIPVisionConfig.from_hf, clip_vision.abstract_model),
         "hubert": Part(hubert.HubertConfig.from_hf, hubert.abstract_model),
         "face": Part(face.FaceXFormerConfig.from_dict, face.abstract_model),
         "llm": Part(qwen2.Qwen2Config.from_hf, qwen2.abstract_model)}  # keys = NanoEmoX attributes (TOWERS)
assert tuple(PARTS) == TOWERS


def read_part_config(name: str, path: str | Path) -> Any:
  """The config dataclass of part `name` from its folder's config.json."""
  config_file = Path(path) / "config.json"
  if not config_file.exists():
    raise FileNotFoundError(f"{path}: no config.json (expected the folder of a converted '{name}' part)")
  return PARTS[name].read_config(json.loads(config_file.read_text()), str(config_file))


def load_part(name: str, path: str | Path, dtype: DType = jnp.float32, param_dtype: DType | None = None
              ) -> nnx.Module:
  """One converted part ("clip", "hubert", "face" or "llm") in compute `dtype` (params in `param_dtype`)."""
  cfg = read_part_config(name, path)
  abstract = PARTS[name].abstract_model(cfg, dtype, param_dtype or jnp.float32)
  return restore_params(abstract, Path(path) / "params", param_dtype=param_dtype)


def read_spec(path: str | Path) -> dict[str, Any]:
  """`nanoemox.json` of model folder `path`."""
  spec_file = Path(path) / "nanoemox.json"
  if not Path(path).exists():
    raise FileNotFoundError(f"{path} does not exist: make it with `python -m converters.assemble --out {path}` "
                            "(converts the pretrained towers and LM; README: Towers, the full model and the authors' "
                            "checkpoints)")
  if not spec_file.exists():
    raise FileNotFoundError(f"{path}: no nanoemox.json (not a model folder: `python -m converters.assemble --out "
                            "DIR` makes one; a training phase exports one as <workdir>/<phase>/model)")
  try:
    spec = json.loads(spec_file.read_text())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{spec_file}: not JSON ({e})") from None
  if not isinstance(spec, dict) or not isinstance(spec.get("preset"), str):
    raise ValueError(f"{spec_file}: preset: missing (expected an object with a \"preset\" name)")
  return spec


def _with_token_ids(cfg: NanoEmoXConfig, spec: Mapping[str, Any], path: Path) -> NanoEmoXConfig:
  """`cfg` with the placeholder ids recorded in `spec` (the `nanoemox.json` of folder `path`), if any."""
  ids = spec.get("token_ids", {})
  bad = [f"{k}={v!r}" for k, v in ids.items() if k not in TOKEN_ID_FIELDS or not isinstance(v, int) or v < 0]
  if bad:
    raise ValueError(f"{path / 'nanoemox.json'}: token_ids {', '.join(bad)}: expected ids (ints >= 0) of "
                     f"{', '.join(TOKEN_ID_FIELDS)}")
  return dataclasses.replace(cfg, **ids)


def model_config(path: str | Path) -> NanoEmoXConfig:
  """The model config recorded in folder `path`: its preset with its nested overrides and its token ids."""
  spec = read_spec(path)
  return _with_token_ids(presets.get(spec["preset"], spec.get("overrides")), spec, Path(path))


def config_differences(found: Any, want: Any) -> list[tuple[str, Any, Any]]:
  """(dotted field, found, want) for each field where two config dataclasses differ (nested ones by field)."""

  def walk(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      return [d for k in b for d in walk(a.get(k), b[k], f"{prefix}{k}.")]
    return [] if a == b else [(prefix[:-1], a, b)]

  return walk(fields.to_dict(found), fields.to_dict(want), "")


def load(path: str | Path, config: NanoEmoXConfig | None = None, dtype: DType = jnp.float32,
         tower_dtype: DType | None = None, seed: int = 0) -> NanoEmoX:
  """The model of folder `path` (see the module docstring). `config` (e.g. a training run's, with its ablation
  switches) replaces the recorded one, except for the recorded token ids (the folder's tokenizer's), which
  replace its own. Each part's config.json must equal its field of the config in use; a mismatch names the
  part's file and the differing fields."""
  path, spec = Path(path), read_spec(path)
  cfg = _with_token_ids(config or presets.get(spec["preset"], spec.get("overrides")), spec, path)
  against = "the given model config" if config else f"preset {spec['preset']!r}"
  model = init_model(cfg, seed, dtype, tower_dtype=tower_dtype)
  for name in PARTS:
    module = getattr(model, name)
    if module is None:  # a branch the modalities leave out
      continue
    differences = config_differences(read_part_config(name, path / name), getattr(cfg, name))
    if differences:
      raise ValueError(f"{path / name / 'config.json'}: the converted {name} does not match {against}: "
                       + ", ".join(f"{field} {a!r} != {b!r}" for field, a, b in differences))
    restore_into(module, path / name / "params", FrozenParam)
  adapters = path / "adapters"
  if adapters.exists():
    report = json.loads((adapters / "conversion.json").read_text()) if (adapters / "conversion.json").exists() else {}
    restore_into(model, adapters / "params", nnx.Param, partial=bool(report.get("missing")))
  return model


def _changes(value: Any, base: Any) -> Any:
  """The nested fields of `value` that differ from `base` (plain dicts from `fields.to_dict`)."""
  if isinstance(value, Mapping) and isinstance(base, Mapping):
    out = {k: _changes(v, base[k]) for k, v in value.items() if v != base.get(k)}
    return {k: v for k, v in out.items() if v != {}}
  return value


def export(model: NanoEmoX, parts: str | Path, out: str | Path, source: str, tokenizer: str | Path | None = None,
           write_files: bool = True) -> Path:
  """Make `out` a model folder: `model`'s trainable parameters as `adapters/`, links to the frozen parts of
  folder `parts`, its preset with `model.config` as overrides and token ids, the parts' sources, and a link to
  `tokenizer`. Every process of a multi-process run must call it (the parameters are saved collectively);
  `write_files` on one only.

  Atomic: everything is written (and fsynced) into `.<out>.partial` beside `out`, which then replaces `out` by
  two renames (the previous folder is `.<out>.old` between them). A failure (OSError, e.g. ENOSPC) removes the
  partial folder, keeps the previous `out` and raises an OSError naming `out`."""
  parts, out = Path(parts), Path(out).absolute()
  if out.exists() and out.resolve() == parts.resolve():
    raise ValueError(f"{out}: is the parts folder the export links to; export to another folder")
  if out.is_dir() and any(out.iterdir()) and not (out / "nanoemox.json").exists():
    raise FileExistsError(f"{out}: exists and is not a model folder; export to a new or empty folder")
  tmp = out.with_name(f".{out.name}.partial")
  if write_files and tmp.exists():
    shutil.rmtree(tmp)  # left by a killed export
  _sync(f"export {out} start")
  try:
    save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), tmp / "adapters" / "params")
    if write_files:
      spec, config = read_spec(parts), fields.to_dict(model.config)
      ids = {k: config.pop(k) for k in TOKEN_ID_FIELDS}
      record = {"preset": spec["preset"], "overrides": _changes(config, fields.to_dict(presets.get(spec["preset"]))),
                "token_ids": ids} | ({"sources": spec["sources"]} if "sources" in spec else {})
      atomic_write(tmp / "nanoemox.json", json.dumps(record, indent=2).encode())
      for name in PARTS:
        if (parts / name).exists():
          (tmp / name).symlink_to((parts / name).absolute(), target_is_directory=True)
      if tokenizer is not None:
        (tmp / "tokenizer").symlink_to(Path(tokenizer).absolute(), target_is_directory=True)
      atomic_write(tmp / "adapters" / "conversion.json", json.dumps({"source": source, "missing": []}).encode())
      fsync_dir(tmp)
      _replace(tmp, out)
  except OSError as e:
    if write_files:
      shutil.rmtree(tmp, ignore_errors=True)
    raise OSError(e.errno, f"{out}: export failed ({e.strerror or e}); the previous export, if any, is kept"
                  ) from None
  _sync(f"export {out} done")
  return out


def _replace(new: Path, out: Path) -> None:
  """`out` becomes the folder `new`: the old `out` is moved aside first and deleted after."""
  old = out.with_name(f".{out.name}.old")
  if old.exists():
    shutil.rmtree(old)
  if out.is_symlink() or out.is_file():
    out.unlink()
  elif out.exists():
    os.rename(out, old)
  os.rename(new, out)
  fsync_dir(out.parent)
  shutil.rmtree(old, ignore_errors=True)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
