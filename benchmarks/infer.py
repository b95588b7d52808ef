"""Multimodal inference: `predict`'s samples/s on the demo preset at 1 and 4 (simulated) devices, and the full
preset's projected samples/s from XLA's cost count of its programs.

    python -m benchmarks.infer [--records 16 --batch 8 --new 32 --devices 1,4] [--checkpoint DIR]

Measured: held-out items of the synthetic demo corpus (CREMA-D audio, CAER video, MIntRec video with its audio
track, MER-Caption+ video + wav), written to a tmp folder; the demo preset with random weights (or a
`checkpoints.load` folder); the authors' sampling (temperature 1, top-p 0.9) to `--new` tokens unless every row
of a batch stops; media decoded by 2 threads. Each device count runs in its own process
(XLA_FLAGS=--xla_force_host_platform_device_count=N); compilation is excluded (a warm-up pass first), and the
sampled tokens of every count are compared (each record draws from its own key).

Projected: the full preset (Qwen2.5-1.5B LM, CLIP-L, HuBERT-L, FaceXFormer) built abstractly, its programs
lowered for `--batch` rows of a `--prompt`-token bucket: the multimodal embeddings (towers, Q-Formers, fusion),
the LM prefill into a KV cache, one decode step. FLOPs: XLA's count of each lowered program (the decode loop is
`--new` - 1 steps). Time per batch: FLOPs / a stated peak (H100 SXM bf16 dense, NVIDIA's datasheet), and the
roofline with each decode step reading every LM weight once at the stated HBM bandwidth; also FLOPs / this
CPU's measured fp32 matmul peak (`benchmarks.flops`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import best_time, report
from benchmarks.flops import matmul_candidates
from nanoemox_jax.data import media
from nanoemox_jax.model.presets import get
from nanoemox_jax.model.qwen2 import KVCache

DATASETS = ("cremad", "caer", "mintrec", "mercaptionplus")
H100_BF16_FLOPS = 989.4e12  # H100 SXM, dense bf16 tensor cores (NVIDIA datasheet)
H100_HBM_BYTES_S = 3.35e12  # H100 SXM HBM3
ROOT = Path(__file__).resolve().parents[1]


def measure(args: argparse.Namespace) -> dict:
  """This process's samples/s of `predict.generate_tokens` on the demo records (see the module docstring)."""
  from nanoemox_jax.checkpoints import parts
  from nanoemox_jax.data.sources import read_source
  from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
  from nanoemox_jax.demo import corpus as demo
  from nanoemox_jax.infer.predict import generate_tokens
  from nanoemox_jax.model import nanoemox

  tokenizer = Tokenizer(BUNDLED)
  with tempfile.TemporaryDirectory() as tmp:
    corpus = demo.write_corpus(Path(tmp), seed=0, per_class=2)
    pools = [read_source(d, corpus[d]["test"][0], "test", corpus[d]["test"][1])[0] for d in DATASETS]
    records = [pool[i] for i in range(args.records) for pool in pools if i < len(pool)][:args.records]
    if args.checkpoint:
      model = parts.load(args.checkpoint)
    else:
      model = nanoemox.NanoEmoX(get("demo"), rngs=nnx.Rngs(0))
    model.eval()
    run = lambda: generate_tokens(model, tokenizer, records, batch_size=args.batch, max_new_tokens=args.new,
                                  temperature=1.0, top_p=0.9, seed=0, threads=2)
    tokens = run()  # compiles every bucket
    t = best_time(run, args.repeats)
  return {"devices": jax.device_count(), "records": len(records), "seconds": t, "samples_s": len(records) / t,
          "tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest(), "new_tokens": int((tokens != 0).sum())}


def measured_rows(args: argparse.Namespace) -> list[dict]:
  """`measure` in one subprocess per device count."""
  out = []
  for n in args.devices:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
    cmd = [sys.executable, "-m", "benchmarks.infer", "--child", "--records", str(args.records), "--batch",
           str(args.batch), "--new", str(args.new), "--repeats", str(args.repeats)]
    cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                          env=os.environ | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags})
    out.append(json.loads(done.stdout.strip().splitlines()[-1]))
  return out


def _cost(lowered: jax.stages.Lowered) -> float:
  cost = lowered.cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def projected(batch: int, prompt: int, new: int) -> dict:
  """FLOPs of the full preset's embeddings, prefill and one decode step for `batch` rows (see the docstring)."""
  from nanoemox_jax.infer.generate import bucket
  from nanoemox_jax.infer.predict import _embeddings
  from nanoemox_jax.model.nanoemox import Batch, NanoEmoX

  cfg = get("full")
  model = nnx.eval_shape(lambda: NanoEmoX(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  s = jax.ShapeDtypeStruct
  ids = s((batch, prompt), jnp.int32)
  video = s((batch, media.FRAMES, 3, 224, 224), jnp.float32)
  inputs = Batch(ids, ids, ids, video, video, s((batch, media.CLIPS, 32000), jnp.float32), s((batch,), bool),
                 s((batch,), bool))
  embeddings = _cost(_embeddings.lower(graphdef, state, inputs))
  llm_def, llm_state = nnx.split(model.llm)
  cache_len = bucket(prompt + new)

  @jax.jit
  def prefill(llm_state, embeds, mask):
    llm = nnx.merge(llm_def, llm_state)
    cache = KVCache.zeros(llm.config, batch, cache_len, llm.dtype)
    hidden, cache = llm.hidden_states(None, mask, inputs_embeds=embeds, cache=cache)
    return llm.logits(hidden[:, -1]), cache

  @jax.jit
  def step(llm_state, last, cache):
    llm = nnx.merge(llm_def, llm_state)
    hidden, cache = llm.hidden_states(last, jnp.ones_like(last), cache=cache)
    return llm.logits(hidden[:, -1]), cache

  embeds = s((batch, prompt, cfg.llm.hidden_size), model.llm.dtype)
  lowered = prefill.lower(llm_state, embeds, ids)
  cache = lowered.out_info[1]
  cache = jax.tree.map(lambda x: s(x.shape, x.dtype), cache)
  lm_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(llm_state))
  return {"embeddings": embeddings, "prefill": _cost(lowered),
          "step": _cost(step.lower(llm_state, s((batch, 1), jnp.int32), cache)), "lm_params": lm_params}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", help="a checkpoints.load folder instead of the random demo preset")
  parser.add_argument("--records", type=int, default=16)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--new", type=int, default=32)
  parser.add_argument("--prompt", type=int, default=512, help="projection: the prompt bucket")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--devices", type=lambda v: [int(n) for n in v.split(",")], default=[1, 4])
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(measure(args)))
    return
  load = os.getloadavg()[0]
  runs = measured_rows(args)
  cost = projected(args.batch, args.prompt, args.new)
  flops = cost["embeddings"] + cost["prefill"] + (args.new - 1) * cost["step"]
  lm_bytes = 2 * cost["lm_params"]  # bf16 weights, read once per decode step
  t_peak = flops / H100_BF16_FLOPS
  t_roof = ((cost["embeddings"] + cost["prefill"]) / H100_BF16_FLOPS
            + (args.new - 1) * max(cost["step"] / H100_BF16_FLOPS, lm_bytes / H100_HBM_BYTES_S))
  peaks = matmul_candidates(((2048, 2048, 2048),))
  cpu_peak = max(f / best_time(fn, 3) for f, fn in peaks.values())
  identical = len({r["tokens_sha256"] for r in runs}) == 1
  rows = [(f"demo preset, {r['devices']} device(s)", f"{r['samples_s']:,.2f} samples/s",
           f"{r['seconds']:.2f} s for {r['records']} records, batch {args.batch}, {r['new_tokens']} new tokens")
          for r in runs]
  rows += [("same sampled tokens", str(identical), f"at {', '.join(str(r['devices']) for r in runs)} devices"),
           ("full preset FLOPs / batch", f"{flops / 1e12:.2f} TFLOP",
            f"embeddings {cost['embeddings'] / 1e12:.2f} + prefill {cost['prefill'] / 1e12:.2f} + "
            f"{args.new - 1} x step {cost['step'] / 1e9:.1f} GFLOP; batch {args.batch}, prompt {args.prompt}"),
           ("full, H100 at peak (stated)", f"{args.batch / t_peak:,.0f} samples/s", "989.4 TFLOP/s bf16 dense: bound"),
           ("full, H100 roofline (stated)", f"{args.batch / t_roof:,.0f} samples/s",
            f"decode steps read {lm_bytes / 1e9:.1f} GB of LM weights at 3.35 TB/s"),
           ("full, this CPU at peak (measured)", f"{args.batch * cpu_peak / flops:,.3f} samples/s",
            f"fp32 matmul peak {cpu_peak / 1e9:.1f} GFLOP/s"),
           ("load average (1 min) at start", f"{load:.2f}", "")]
  report("infer", rows, dict(records=args.records, batch=args.batch, new=args.new, prompt=args.prompt, runs=runs,
                             identical=identical, full_cost=cost, full_flops=flops, full_h100_peak_samples_s=args.batch / t_peak,
                             full_h100_roofline_samples_s=args.batch / t_roof, cpu_peak=cpu_peak,
                             full_cpu_samples_s=args.batch * cpu_peak / flops, load=load))


if __name__ == "__main__":
  main()
