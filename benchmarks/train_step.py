"""The full Nano-EmoX phase-3 train step on a mid-size config: steps/s with and without remat and bf16.

    python -m benchmarks.train_step [--width 128 --llm-layers 4 --batch 3 --accumulation 4 --seq 256]

Every branch of the model at a reduced size (`model.presets._small`: CLIP, HuBERT, Swin, Q-Formers,
fusion, Qwen2 with LoRA; the real 151,936-token vocabulary), random weights, the training loop's step
(`make_train_step`, AdamW, K micro-batches of b). Variants: remat off/on x fp32 / bf16 (frozen towers and
LM base stored in bf16 and compute in bf16; trainable parameters fp32). Per variant: compile seconds,
compilations in the second call (0 = nothing recompiled), compiled temporaries, best step time.
"""

from __future__ import annotations

import argparse
import os

import jax.numpy as jnp

from benchmarks.common import report
from benchmarks.phase_step import time_steps
from nanoemox_jax.model.presets import _small

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--llm-layers", type=int, default=4)
  parser.add_argument("--batch", type=int, default=3)
  parser.add_argument("--accumulation", type=int, default=4)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3)
  args = parser.parse_args(argv)
  load = os.getloadavg()[0]
  cfg = _small(width=args.width, llm_layers=args.llm_layers, vocab=151936, lora_rank=8)
  samples = args.batch * args.accumulation
  rows, runs = [], []
  for dtype, remat in VARIANTS:
    d = {"fp32": (jnp.float32, None), "bf16": (jnp.bfloat16, jnp.bfloat16)}[dtype]
    r = dict(dtype=dtype, remat=remat, **time_steps(cfg, "3", args.batch, args.seq, args.accumulation, remat=remat,
                                                      dtype=d[0], tower_dtype=d[1], steps=args.steps))
    runs.append(r)
    rows.append((f"{dtype} remat={'on' if remat else 'off'}", f"{1 / r['step_s']:.3f} steps/s",
                 f"{samples / r['step_s']:.2f} samples/s, compile {r['compile_s']:.0f} s, temps {r['temp_gb']:.2f} GB, "
                 f"recompiles {r['second_call_compilations']}"))
  base = runs[0]["step_s"]
  rows += [(f"{r['dtype']} remat={'on' if r['remat'] else 'off'} vs fp32 remat=off", f"{base / r['step_s']:.2f}x", "")
           for r in runs[1:]]
  rows.append(("load average (1 min) at start", f"{load:.2f}", "2 cores shared"))
  report("train_step", rows, dict(width=args.width, llm_layers=args.llm_layers, batch=args.batch,
                                  accumulation=args.accumulation, seq=args.seq, load=load, runs=runs))


if __name__ == "__main__":
  main()
