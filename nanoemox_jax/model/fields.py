"""Nested frozen dataclass configs <-> plain nested dicts, field for field.

  to_dict(cfg)                   dataclass -> {field: value} (nested dataclasses and dicts of them too)
  from_dict(cls, d, where)       the reverse; an unknown key is refused naming it and the nearest valid field
  replace(cfg, overrides, where) `cfg` with a nested dict of changes ({"fusion": {"weighting": "average"}})

Tuples stay tuples (a JSON list or an ml_collections tuple is turned back into one); a field typed
`X | None` takes None or a dict for X. Used for the model config (`nanoemox.json` overrides) and the
training config (`train.config`, from the command line's ConfigDict).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


class UnknownFieldError(ValueError):
  """A key that is no field of the config it was given for."""


def to_dict(cfg: Any) -> Any:
  """A dataclass (or dict / tuple of them) as plain nested dicts; tuples stay tuples."""
  if dataclasses.is_dataclass(cfg):
    return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
  if isinstance(cfg, Mapping):
    return {k: to_dict(v) for k, v in cfg.items()}
  if isinstance(cfg, (tuple, list)):
    return tuple(to_dict(v) for v in cfg)
  return cfg


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def nearest(name: str, valid: list[str]) -> str:
  """`; did you mean 'x'?` for the closest valid name, or the list of valid names."""
  close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
  return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(valid))}"


def check_keys(cls: type, keys, where: str) -> None:
  """Refuse the first key of `keys` that is not a field of dataclass `cls`."""
  valid = [f.name for f in dataclasses.fields(cls)]
  for key in keys:
    if key not in valid:
      raise UnknownFieldError(f"{where}.{key} is not a field of {cls.__name__}{nearest(key, valid)}")


def _convert(tp: Any, value: Any, where: str) -> Any:
  """`value` (plain data) as type `tp`: dataclasses and their dicts / tuples rebuilt, the rest as given."""
  origin = typing.get_origin(tp)
  if origin in (types.UnionType, typing.Union):
    if value is None:
      return None
    members = [t for t in typing.get_args(tp) if t is not type(None)]
    return _convert(members[0], value, where) if len(members) == 1 else value
  if dataclasses.is_dataclass(tp):
    return value if isinstance(value, tp) else from_dict(tp, value, where)
  if origin is tuple and isinstance(value, (tuple, list)):
    args = typing.get_args(tp)
    item = args[0] if args else Any
    return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
  if origin in (dict, Mapping) and isinstance(value, Mapping):
    item = typing.get_args(tp)[1]
    return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
  if tp is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def from_dict(cls: type, d: Mapping[str, Any], where: str = "config") -> Any:
  """Dataclass `cls` from a nested mapping with the same field names (missing fields keep their defaults)."""
  if not isinstance(d, Mapping):
    raise TypeError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
  check_keys(cls, d.keys(), where)
  hints = _hints(cls)
  return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in d.items()})


def replace(cfg: Any, overrides: Mapping[str, Any], where: str = "config") -> Any:
  """`cfg` with `overrides` applied: nested dicts change single fields of nested dataclasses."""
  check_keys(type(cfg), overrides.keys(), where)
  hints, changes = _hints(type(cfg)), {}
  for key, value in overrides.items():
    current = getattr(cfg, key)
    if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
      changes[key] = replace(current, value, f"{where}.{key}")
    else:
      changes[key] = _convert(hints[key], value, f"{where}.{key}")
  return dataclasses.replace(cfg, **changes)
