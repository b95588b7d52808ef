"""nanoemox_jax: Nano-EmoX and its P2E curriculum in JAX / Flax NNX.

The names a user imports, from the layer that defines each:

  load, load_part                   a model folder / one converted part      (checkpoints.parts)
  NanoEmoX, NanoEmoXConfig, presets the network and its configs            (model)
  Tokenizer                         the Qwen2 tokenizer + placeholders       (data.tokenizer)
  Record, Prediction                the manifest and predictions records    (data.manifest, data.predictions)
  generate, predict                 KV-cache decoding; answers for records   (infer)
  Run, paper, run                   the typed training config; run it        (train.config, train.loop)

Each is imported on first use (PEP 562 `__getattr__`), so `import nanoemox_jax.model...` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {  # name -> (module, attribute)
    "load": ("nanoemox_jax.checkpoints.parts", "load"),
    "load_part": ("nanoemox_jax.checkpoints.parts", "load_part"),
    "NanoEmoX": ("nanoemox_jax.model.nanoemox", "NanoEmoX"),
    "NanoEmoXConfig": ("nanoemox_jax.model.nanoemox", "NanoEmoXConfig"),
    "presets": ("nanoemox_jax.model.presets", None),
    "Tokenizer": ("nanoemox_jax.data.tokenizer", "Tokenizer"),
    "Record": ("nanoemox_jax.data.manifest", "Record"),
    "Prediction": ("nanoemox_jax.data.predictions", "Prediction"),
    "generate": ("nanoemox_jax.infer.generate", "generate"),
    "predict": ("nanoemox_jax.infer.predict", "predict"),
    "Run": ("nanoemox_jax.train.config", "Run"),
    "paper": ("nanoemox_jax.train.config", "paper"),
    "run": ("nanoemox_jax.train.loop", "run"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:
    raise AttributeError(f"module 'nanoemox_jax' has no attribute {name!r}")
  module, attribute = _EXPORTS[name]
  value = importlib.import_module(module)
  return value if attribute is None else getattr(value, attribute)


def __dir__() -> list[str]:
  return sorted([*globals(), *_EXPORTS])
