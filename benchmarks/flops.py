"""Achieved FLOP/s of the jitted LM prefill as a fraction of this machine's matmul peak, measured in the same run.

    python -m benchmarks.flops [--layers 4 --batch 4 --prompt 512]

The prefill is generation's: Qwen2.5-1.5B's layer shapes (width 1536, MLP 8960, 12 q / 2 kv heads of 128;
`--layers` of its 28), random fp32 weights, the prompt written into a fresh KV cache, logits of the last
position. FLOPs: XLA's count of the lowered program. Peak: the best fp32 matrix product (XLA or numpy's BLAS; squares
and the prefill's largest product), timed interleaved with the prefill.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import best_time, report
from benchmarks.phase_step import flops
from nanoemox_jax.model import qwen2


def matmul_candidates(shapes) -> dict[str, tuple[float, Callable[[], object]]]:
  """name -> (FLOPs, blocking runner) of fp32 matrix products [m, k] @ [k, n] in XLA (jitted) and numpy (BLAS)."""
  out = {}
  for m, k, n in shapes:
    a, b = jax.random.normal(jax.random.key(0), (m, k)), jax.random.normal(jax.random.key(1), (k, n))
    mm = jax.jit(lambda a, b: a @ b)
    mm(a, b).block_until_ready()
    an, bn = np.asarray(a), np.asarray(b)
    out[f"XLA [{m}, {k}] @ [{k}, {n}]"] = (2 * m * k * n, lambda mm=mm, a=a, b=b: mm(a, b).block_until_ready())
    out[f"numpy [{m}, {k}] @ [{k}, {n}]"] = (2 * m * k * n, lambda a=an, b=bn: a @ b)
  return out


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  load = os.getloadavg()[0]
  cfg = dataclasses.replace(qwen2.Qwen2Config(), num_hidden_layers=args.layers)
  model = qwen2.Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)

  @jax.jit
  def prefill(state, ids, mask):  # -> last-position logits [B, V] and the filled cache
    m = nnx.merge(graphdef, state)
    cache = qwen2.KVCache.zeros(cfg, ids.shape[0], ids.shape[1], m.dtype)
    hidden, cache = m.hidden_states(ids, mask, cache=cache)
    return m.logits(hidden[:, -1]), cache

  ids = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (args.batch, args.prompt)), jnp.int32)
  mask = jnp.ones_like(ids)
  count = flops(prefill.lower(state, ids, mask))
  run_prefill = lambda: jax.block_until_ready(prefill(state, ids, mask))
  run_prefill()
  tokens = args.batch * args.prompt
  peaks = matmul_candidates(((2048, 2048, 2048), (4096, 4096, 4096), (tokens, cfg.hidden_size, cfg.intermediate_size)))
  best = {name: float("inf") for name in ["prefill", *peaks]}
  for _ in range(args.repeats):  # interleaved, so that other jobs on the machine slow both sides alike
    best["prefill"] = min(best["prefill"], best_time(run_prefill, 1))
    for name, (_, fn) in peaks.items():
      best[name] = min(best[name], best_time(fn, 1))
  t = best["prefill"]
  rates = {name: f / best[name] for name, (f, _) in peaks.items()}
  name = max(rates, key=rates.get)
  peak, xla_peak = rates[name], max(r for n, r in rates.items() if n.startswith("XLA"))
  achieved = count / t
  rows = [("matmul peak (fp32)", f"{peak / 1e9:.1f} GFLOP/s", f"best: {name}"),
          ("XLA's own matmul peak", f"{xla_peak / 1e9:.1f} GFLOP/s", f"prefill = {100 * achieved / xla_peak:.0f}% of it"),
          ("LM prefill", f"{achieved / 1e9:.1f} GFLOP/s",
           f"{count / 1e9:.0f} GFLOP in {t * 1e3:.0f} ms; {args.batch} x {args.prompt} tokens, {args.layers} layers"),
          ("fraction of peak", f"{100 * achieved / peak:.0f}%", "target >= 50%"),
          ("load average (1 min) at start", f"{load:.2f}", "2 cores shared")]
  report("flops", rows, dict(layers=args.layers, batch=args.batch, prompt=args.prompt, flops=count, prefill_s=t,
                             achieved=achieved, peak=peak, peak_matmul=name, xla_peak=xla_peak, rates=rates, fraction=achieved / peak,
                             load=load))


if __name__ == "__main__":
  main()
