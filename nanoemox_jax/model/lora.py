"""Low-rank adapters on `Linear` layers. Corresponds to PEFT `LoraConfig` / `lora.Linear`.

The adapted layer keeps the base `kernel`/`bias` at their original paths and adds
`lora_a` [in, r] and `lora_b` [r, out] typed `nnx.LoRAParam`, so optimizers can select adapters
by type: y = x W + b + (alpha / r) * dropout(x) A B. Adapters are stored in fp32 (or the base's dtype if
wider) even over a bf16 base, like every trainable parameter.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
from flax import nnx

from nanoemox_jax.model.layers import Linear

DEFAULT_TARGETS = r"(.*\.)?(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  """rank r, alpha (scale alpha / r), dropout on the adapter input, regex over module paths."""

  rank: int = 32
  alpha: float = 16.0
  dropout: float = 0.0
  targets: str = DEFAULT_TARGETS


class LoRALinear(Linear):
  """A `Linear` that adopts an existing layer's parameters and adds a low-rank update."""

  def __init__(self, base: Linear, cfg: LoRAConfig, *, rngs: nnx.Rngs):
    self.in_features, self.out_features, self.dtype = base.in_features, base.out_features, base.dtype
    self.kernel, self.bias = base.kernel, base.bias
    param_dtype = jnp.promote_types(base.kernel[...].dtype, jnp.float32)  # trainable: fp32 over a bf16 base
    bound = 1.0 / self.in_features**0.5  # PEFT: kaiming_uniform(a=sqrt(5)) on A, zeros on B
    self.lora_a = nnx.LoRAParam(jax.random.uniform(rngs.params(), (self.in_features, cfg.rank), param_dtype,
                                                   -bound, bound))
    self.lora_b = nnx.LoRAParam(jnp.zeros((cfg.rank, self.out_features), param_dtype))
    self.scale = cfg.alpha / cfg.rank
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
    self.merged = False

  def delta(self) -> jax.Array:  # [in, out] = scale * A B, in fp32
    return self.scale * (self.lora_a[...].astype(jnp.float32) @ self.lora_b[...].astype(jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    y = super().__call__(x)
    if self.merged:
      return y
    h = self.dropout(x).astype(self.dtype) @ self.lora_a[...].astype(self.dtype)
    return y + self.scale * (h @ self.lora_b[...].astype(self.dtype))

  def merge(self) -> None:
    """kernel <- kernel + scale * A B; the forward then skips the adapter branch."""
    if not self.merged:
      self.kernel[...] = (self.kernel[...].astype(jnp.float32) + self.delta()).astype(self.kernel[...].dtype)
      self.merged = True

  def unmerge(self) -> None:
    if self.merged:
      self.kernel[...] = (self.kernel[...].astype(jnp.float32) - self.delta()).astype(self.kernel[...].dtype)
      self.merged = False


def apply_lora(model: nnx.Module, cfg: LoRAConfig, *, rngs: nnx.Rngs) -> list[str]:
  """Replace every `Linear` whose dotted path fully matches `cfg.targets` by a `LoRALinear`, in place.

  Returns the adapted paths; raises ValueError when nothing matches.
  """
  pattern = re.compile(cfg.targets)
  paths = [p for p, m in nnx.iter_modules(model)
           if type(m) is Linear and pattern.fullmatch(".".join(map(str, p)))]
  if not paths:
    raise ValueError(f"LoRA: no Linear layer matches targets={cfg.targets!r}")
  for path in paths:
    parent = model
    for key in path[:-1]:
      parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    base = parent[path[-1]] if isinstance(path[-1], int) else getattr(parent, path[-1])
    adapted = LoRALinear(base, cfg, rngs=rngs)
    if isinstance(path[-1], int):
      parent[path[-1]] = adapted
    else:
      setattr(parent, path[-1], adapted)
  return [".".join(map(str, p)) for p in paths]


def lora_layers(model: nnx.Module) -> list[LoRALinear]:
  return [m for _, m in nnx.iter_modules(model) if isinstance(m, LoRALinear)]


def merge(model: nnx.Module) -> None:
  """Fold every adapter into its base kernel (for fast inference)."""
  for layer in lora_layers(model):
    layer.merge()


def unmerge(model: nnx.Module) -> None:
  """Undo `merge` (up to rounding of the stored dtype)."""
  for layer in lora_layers(model):
    layer.unmerge()
