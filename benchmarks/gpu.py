"""GPU: MFU of the full-config phase-3 step and the projected wall-clock of the P2E schedule vs the paper's 32 h.

    python -m benchmarks.gpu [--preset full --seq 288 --budget 240 --out DIR]
    bash benchmarks/gpu.sh        # on the lent device machine: carried wheels, then this, results in $OUT

Random weights (timing only). Per run: compile seconds, compiled `memory_analysis()`, compilations in the
first two calls, best step time (one optimizer update = K micro-batches of b), model FLOPs (XLA's count
without recomputation) / step time / the bf16 matmul peak measured in the same process = MFU. Runs are
started in order while `--budget` seconds remain. The paper configs train on stored tower features
(`data.cache_features`, issue 17), so the projection of P2E at the authors' sample budget (`paper_phase` steps)
uses the stored-feature runs; a phase without its own run is projected with phase 3's step time (every phase runs
the LM forward + backward; only the trained parameters differ). --seq 288: the median bucket of the real phase-2/3
annotation files (`benchmarks.padding`); issue 8's figures were taken at 512.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.common import best_time, machine, report
from benchmarks.phase_step import model_flops, time_steps
from nanoemox_jax.model.presets import get
from nanoemox_jax.train.config import paper_phase

PAPER_HOURS = 32.0  # Nano-EmoX's full P2E on one RTX 4090
SCHEDULE = ("1a", "1b", "2", "3")
DTYPES = {"bf16": jnp.bfloat16, "fp32": jnp.float32}
CUDNN, SCAN = dict(attention_implementation="cudnn"), dict(scan_layers=True)
# (phase, compute dtype, remat of the micro-batch loss, model options, stored tower features): phase 3 on stored
# features first (the acceptance rows: XLA's attention, cuDNN's fused flash attention, then cuDNN with the LM's
# decoder layers scanned for the compile time), the step with the towers for comparison, the other phases for
# the projection, then per-layer remat.
RUNS = (("3", "bf16", False, {}, True), ("3", "bf16", False, CUDNN, True), ("3", "bf16", False, CUDNN | SCAN, True),
        ("3", "bf16", False, {}, False), ("1a", "bf16", False, {}, True), ("2", "bf16", False, {}, True),
        ("1b", "bf16", False, {}, True), ("3", "bf16", False, CUDNN | SCAN | dict(remat_layers=True), True),
        ("3", "bf16", True, {}, True))


def matmul_peak(dtype, n: int) -> float:
  """FLOP/s of the best of 5 jitted [n, n] @ [n, n] products."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  mm = jax.jit(lambda a, b: a @ b)
  mm(a, b).block_until_ready()
  return 2 * n**3 / best_time(lambda: mm(a, b).block_until_ready(), 5)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="full")
  parser.add_argument("--batch", type=int, default=3)
  parser.add_argument("--seq", type=int, default=288)
  parser.add_argument("--accumulation", type=int, default=4)
  parser.add_argument("--budget", type=float, default=240.0, help="start no new run after this many seconds")
  parser.add_argument("--matmul", type=int, default=8192)
  parser.add_argument("--out", default=".")
  args = parser.parse_args(argv)
  begin = time.perf_counter()
  cfg = get(args.preset)
  out = Path(args.out) / "gpu.json"
  shape = dict(preset=args.preset, batch=args.batch, seq=args.seq, accumulation=args.accumulation)
  result = dict(machine=machine(), device=jax.devices()[0].device_kind, jax=jax.__version__, **shape,
                peak_bf16=matmul_peak(jnp.bfloat16, args.matmul), peak_fp32=matmul_peak(jnp.float32, args.matmul),
                runs=[])
  print(f"{result['device']}: matmul peak bf16 {result['peak_bf16'] / 1e12:.0f} TFLOP/s, "
        f"fp32 {result['peak_fp32'] / 1e12:.0f} TFLOP/s", flush=True)
  for phase, dtype, remat, options, stored in RUNS:
    if time.perf_counter() - begin > args.budget:
      break
    kw = dict(dtype=DTYPES[dtype], tower_dtype=jnp.bfloat16, stored=stored)
    run_cfg = dataclasses.replace(cfg, **options)
    try:
      run = dict(phase=phase, compute=dtype, remat=remat, options=options, stored=stored,
                 **time_steps(run_cfg, phase, args.batch, args.seq, args.accumulation, remat=remat, **kw))
    except Exception as e:  # e.g. a cuDNN without fused attention for these shapes: recorded, the others still run
      result["runs_failed"] = result.get("runs_failed", []) + [dict(phase=phase, options=options, stored=stored,
                                                                    error=repr(e))]
      print(f"phase {phase} {dtype} {options}: {e!r}", flush=True)
      continue
    print(json.dumps(run), flush=True)
    # model FLOPs of the plain layer loop: XLA counts a scan body once, and remat's recomputation is not model work
    plain = dataclasses.replace(run_cfg, scan_layers=False, remat_layers=False)
    run["flops"] = model_flops(plain, phase, args.batch, args.seq, args.accumulation, **kw)
    run["mfu"] = run["flops"] / run["step_s"] / result["peak_bf16"] if run["flops"] else None
    result["runs"].append(run)
    out.write_text(json.dumps(result, indent=1))
  best = {}
  for r in result["runs"]:  # fastest bf16 stored-feature run per phase, any model options
    if r["stored"] and r["compute"] == "bf16":
      best[r["phase"]] = min(best.get(r["phase"], r["step_s"]), r["step_s"])
  if "3" in best:
    per_phase = {p: paper_phase(p).optim.steps * best.get(p, best["3"]) / 3600 for p in SCHEDULE}
    result["projection_hours"] = dict(per_phase=per_phase, measured=sorted(best), total=sum(per_phase.values()),
                                      paper_rtx4090=PAPER_HOURS, updates={p: paper_phase(p).optim.steps for p in SCHEDULE})
  out.write_text(json.dumps(result, indent=1))
  rows = [(f"phase {r['phase']} {r['compute']} remat={r['remat']} {r['options'] or 'xla attention, layer loop'} "
           f"{'stored features' if r['stored'] else 'towers'}", f"{r['step_s']:.3f} s/step",
           f"MFU {100 * (r['mfu'] or 0):.1f}%, compile {r['compile_s']:.0f} s, peak {r['peak_gb']:.1f} GB, "
           f"recompiles {r['second_call_compilations']}") for r in result["runs"]]
  if "projection_hours" in result:
    p = result["projection_hours"]
    rows.append(("P2E projected at the authors' budget (updates x s/step)", f"{p['total']:.1f} h",
                 f"paper {PAPER_HOURS:.0f} h on RTX 4090 ({PAPER_HOURS / p['total']:.1f}x); measured {p['measured']}"))
  report("gpu", rows, result)


if __name__ == "__main__":
  main()
