"""Compiled memory of the phase-3 train step on the FULL config, from abstract shapes (nothing allocated).

    python -m benchmarks.memory [--preset full --batch 3 --seq 512 --accumulation 4 --compute bf16 --no-remat]

Frozen towers and LM base in bf16, trainable parameters and AdamW state in fp32, remat on, compute in
bf16 (`--compute fp32` computes in fp32: every bf16 weight is then widened to fp32 in the step).
`jax.jit(step).lower(abstract).compile().memory_analysis()`: arguments (parameters, optimizer state,
micro-batches), temporaries (activations, gradients, workspace); the step donates its state, so outputs
alias arguments. Also the lowering and compile times.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import report
from benchmarks.phase_step import abstract_batch, abstract_state, lowered_step
from nanoemox_jax.model.presets import get
from nanoemox_jax.model.frozen import FrozenParam

GB = 1e9
DTYPES = {"bf16": jnp.bfloat16, "fp32": jnp.float32}


def nbytes(tree) -> int:
  return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def breakdown(cfg, phase: str, batch: int, seq: int, accumulation: int) -> dict[str, float]:
  """GB of each kind of argument: frozen weights, trainable parameters, optimizer state, micro-batches."""
  _, state = abstract_state(cfg, phase, tower_dtype=jnp.bfloat16)
  model_state, opt_state = state[0], state[1]
  return {"frozen weights (bf16)": nbytes(nnx.state(model_state, FrozenParam)) / GB,
          "trainable params (fp32)": nbytes(nnx.state(model_state, nnx.Param)) / GB,
          "AdamW state + counters": nbytes(opt_state) / GB,
          "micro-batches (K x b)": nbytes(abstract_batch(cfg, batch, seq, accumulation)) / GB}


def measure(preset: str, phase: str, batch: int, seq: int, accumulation: int, remat: bool, compute: str) -> dict:
  cfg = get(preset)
  start = time.perf_counter()
  lowered = lowered_step(cfg, phase, batch, seq, accumulation, remat=remat, dtype=DTYPES[compute],
                         tower_dtype=jnp.bfloat16)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  total = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
  return dict(preset=preset, phase=phase, batch=batch, seq=seq, accumulation=accumulation, remat=remat,
              compute=compute, lower_s=lower_s, compile_s=compile_s, argument_gb=mem.argument_size_in_bytes / GB,
              temp_gb=mem.temp_size_in_bytes / GB, output_gb=mem.output_size_in_bytes / GB,
              alias_gb=mem.alias_size_in_bytes / GB, total_gb=total / GB,
              arguments=breakdown(cfg, phase, batch, seq, accumulation))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="full")
  parser.add_argument("--phase", default="3")
  parser.add_argument("--batch", type=int, default=3)
  parser.add_argument("--seq", type=int, default=512)
  parser.add_argument("--accumulation", type=int, default=4)
  parser.add_argument("--compute", choices=sorted(DTYPES), default="bf16")
  parser.add_argument("--no-remat", dest="remat", action="store_false")
  args = parser.parse_args(argv)
  r = measure(args.preset, args.phase, args.batch, args.seq, args.accumulation, args.remat, args.compute)
  rows = [(f"{k}", f"{v:.2f} GB", "argument") for k, v in r["arguments"].items()]
  rows += [("arguments (compiled)", f"{r['argument_gb']:.2f} GB", "donated: outputs alias them"),
           ("temporaries (activations, grads)", f"{r['temp_gb']:.2f} GB", f"remat={r['remat']}, compute {r['compute']}"),
           ("peak = args + temps + unaliased outputs", f"{r['total_gb']:.2f} GB", "target <= 22 GB"),
           ("lowering", f"{r['lower_s']:.1f} s", ""),
           ("compile", f"{r['compile_s']:.1f} s", f"{jax.devices()[0].platform}")]
  report("memory", rows, r)


if __name__ == "__main__":
  main()
