"""Frozen pretrained weights (the CLIP, HuBERT and face towers) as a Variable type of their own.

`FrozenParam` is not an `nnx.Param`, so anything that selects `nnx.Param` (optimizers, gradients,
trainable-parameter filters) never sees tower weights: they are frozen by construction, and may be
stored in bf16 independently of the trainable fp32 parameters.
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax.numpy as jnp
from flax import nnx

M = TypeVar("M", bound=nnx.Module)


class FrozenParam(nnx.Variable):
  """A pretrained tower weight: read in the forward pass, never trained."""


def freeze(module: M, dtype: Any | None = None) -> M:
  """Re-type every `nnx.Param` of `module` (in place) as `FrozenParam`, cast to `dtype` when given."""
  for _, sub in nnx.iter_modules(module):
    for name, value in list(vars(sub).items()):
      if type(value) in (nnx.Param, FrozenParam):
        array = value[...]
        setattr(sub, name, FrozenParam(array if dtype is None else array.astype(dtype)))
  return module


def frozen_dtype(module: nnx.Module) -> set[jnp.dtype]:
  """The storage dtypes of a module's frozen weights (for checks and summaries)."""
  return {v.dtype for v in nnx.to_flat_state(nnx.state(module, FrozenParam)).leaves}
