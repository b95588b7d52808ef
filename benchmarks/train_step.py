"""The full Nano-EmoX phase-3 train step on a mid-size config: steps/s with and without remat and bf16, and
with stored tower features instead of the towers.

    python -m benchmarks.train_step [--width 128 --llm-layers 4 --batch 3 --accumulation 4 --seq 256]
                                    [--compare all|precision|features|layers]

Every branch of the model at a reduced size (`model.presets._small`: CLIP, HuBERT, Swin, Q-Formers,
fusion, Qwen2 with LoRA; the real 151,936-token vocabulary), random weights, the training loop's step
(`make_train_step`, AdamW, K micro-batches of b). Variants: remat off/on x fp32 / bf16 (frozen towers and
LM base stored in bf16 and compute in bf16; trainable parameters fp32). Per variant: compile seconds,
compilations in the second call (0 = nothing recompiled), compiled temporaries, best step time.

Stored features (`data.features`): the same step on micro-batches that carry the towers' outputs instead of
media. For the full config (`presets.full`, bf16, `--full-seq`), XLA's FLOP count of the compiled step on abstract
weights and inputs (nothing allocated); at the mid-size config (fp32), the compiled FLOPs and the measured step
times. Acceptance (issue 17): the step-time ratio towers / stored within 20% of the FLOP ratio.

Decoder layers (`--compare layers`): the full config's phase-3 step on stored features compiled with the LM's
layers looped, scanned (`model.scan_layers`) and rematerialised per layer (`model.remat_layers`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax.numpy as jnp

from benchmarks.common import report
from benchmarks.phase_step import lowered_step, model_flops, time_steps
from nanoemox_jax.model.presets import _small, full

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def stored_vs_towers(cfg, batch: int, seq: int, accumulation: int, steps: int, full_batch: int, full_seq: int
                     ) -> tuple[list[tuple[str, str, str]], dict]:
  """Rows and figures: full-config compiled FLOPs, mid-size compiled FLOPs and step times, towers vs stored."""
  bf16 = dict(dtype=jnp.bfloat16, tower_dtype=jnp.bfloat16)
  big = {v: model_flops(full(), "3", full_batch, full_seq, accumulation, stored=v == "stored", compiled=True, **bf16)
         for v in ("towers", "stored")}
  mid = {v: model_flops(cfg, "3", batch, seq, accumulation, stored=v == "stored", compiled=True)
         for v in ("towers", "stored")}
  runs = {v: time_steps(cfg, "3", batch, seq, accumulation, remat=False, steps=steps, stored=v == "stored")
          for v in ("towers", "stored")}
  flop_ratio, time_ratio = mid["towers"] / mid["stored"], runs["towers"]["step_s"] / runs["stored"]["step_s"]
  rows = [(f"full config, {full_batch}x{accumulation} x {full_seq} tokens, bf16: with towers",
           f"{big['towers'] / 1e12:.1f} TFLOP", "XLA, compiled step, per update"),
          ("full config: with stored features", f"{big['stored'] / 1e12:.1f} TFLOP",
           f"towers' share {100 * (1 - big['stored'] / big['towers']):.1f}%, ratio {big['towers'] / big['stored']:.2f}x"),
          ("mid-size fp32: with towers", f"{runs['towers']['step_s']:.3f} s",
           f"{mid['towers'] / 1e9:.1f} GFLOP, compile {runs['towers']['compile_s']:.0f} s"),
          ("mid-size fp32: with stored features", f"{runs['stored']['step_s']:.3f} s",
           f"{mid['stored'] / 1e9:.1f} GFLOP, compile {runs['stored']['compile_s']:.0f} s"),
          ("mid-size: time ratio / FLOP ratio", f"{time_ratio / flop_ratio:.2f}",
           f"time {time_ratio:.2f}x, FLOPs {flop_ratio:.2f}x (acceptance: 0.80-1.20)")]
  return rows, dict(full_flops=big, full_batch=full_batch, full_seq=full_seq, mid_flops=mid, stored_runs=runs,
                    flop_ratio=flop_ratio, time_ratio=time_ratio)


LAYER_VARIANTS = (("loop", {}), ("scan_layers", dict(scan_layers=True)), ("remat_layers", dict(remat_layers=True)),
                  ("scan_layers + remat_layers", dict(scan_layers=True, remat_layers=True)))


def decoder_layer_options(batch: int, seq: int, accumulation: int) -> tuple[list[tuple[str, str, str]], dict]:
  """The full config's phase-3 step on stored features (bf16, abstract inputs) compiled on this machine's CPU
  backend with the LM's decoder layers looped, scanned and/or rematerialised: compile seconds and compiled
  temporaries. (XLA's cost analysis counts a scan body once, so FLOPs are always taken from the loop.)"""
  rows, figures = [], {}
  for name, options in LAYER_VARIANTS:
    cfg = dataclasses.replace(full(), **options)
    lowered = lowered_step(cfg, "3", batch, seq, accumulation, remat=False, dtype=jnp.bfloat16,
                           tower_dtype=jnp.bfloat16, stored=True)
    began = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - began
    memory = compiled.memory_analysis()
    figures[name] = dict(compile_s=seconds, temp_gb=memory.temp_size_in_bytes / 1e9,
                         argument_gb=memory.argument_size_in_bytes / 1e9)
    rows.append((f"full config phase 3, stored features, bf16, {batch}x{accumulation} x {seq}: {name}",
                 f"compile {seconds:.0f} s", f"temporaries {figures[name]['temp_gb']:.2f} GB (CPU backend)"))
  return rows, dict(layer_options=figures)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--llm-layers", type=int, default=4)
  parser.add_argument("--batch", type=int, default=3)
  parser.add_argument("--accumulation", type=int, default=4)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--compare", choices=("all", "precision", "features", "layers"), default="all")
  parser.add_argument("--full-batch", type=int, default=3, help="micro-batch of the full-config FLOP count")
  parser.add_argument("--full-seq", type=int, default=512, help="sequence length of the full-config FLOP count")
  args = parser.parse_args(argv)
  load = os.getloadavg()[0]
  cfg = _small(width=args.width, llm_layers=args.llm_layers, vocab=151936, lora_rank=8)
  samples = args.batch * args.accumulation
  rows, runs, extra = [], [], {}
  if args.compare == "layers":
    rows, extra = decoder_layer_options(args.full_batch, args.full_seq, args.accumulation)
  elif args.compare != "precision":
    rows, extra = stored_vs_towers(cfg, args.batch, args.seq, args.accumulation, args.steps, args.full_batch,
                                   args.full_seq)
  for dtype, remat in VARIANTS if args.compare in ("all", "precision") else ():
    d = {"fp32": (jnp.float32, None), "bf16": (jnp.bfloat16, jnp.bfloat16)}[dtype]
    r = dict(dtype=dtype, remat=remat, **time_steps(cfg, "3", args.batch, args.seq, args.accumulation, remat=remat,
                                                      dtype=d[0], tower_dtype=d[1], steps=args.steps))
    runs.append(r)
    rows.append((f"{dtype} remat={'on' if remat else 'off'}", f"{1 / r['step_s']:.3f} steps/s",
                 f"{samples / r['step_s']:.2f} samples/s, compile {r['compile_s']:.0f} s, temps {r['temp_gb']:.2f} GB, "
                 f"recompiles {r['second_call_compilations']}"))
  rows += [(f"{r['dtype']} remat={'on' if r['remat'] else 'off'} vs fp32 remat=off",
            f"{runs[0]['step_s'] / r['step_s']:.2f}x", "") for r in runs[1:]]
  end = os.getloadavg()[0]
  rows.append(("load average (1 min) at start / end", f"{load:.2f} / {end:.2f}", f"{os.cpu_count()} cores"))
  report("train_step", rows, dict(width=args.width, llm_layers=args.llm_layers, batch=args.batch,
                                  accumulation=args.accumulation, seq=args.seq, load=load, load_end=end, runs=runs,
                                  **extra))


if __name__ == "__main__":
  main()
