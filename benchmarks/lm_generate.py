"""Greedy generation: nanoemox_jax's jitted prefill + KV-cache loop vs HF `generate` (PyTorch).

    python -m benchmarks.lm_generate [--batch 8 --prompt 128 --new 64 --size bench|full --dtype fp32|bf16]

Same random weights (HF init, saved and converted by `converters.qwen2`), the same dtype on both sides
(`--size full`: Qwen2.5-1.5B's shapes; PyTorch on CUDA when a GPU is visible, else the CPU). With bf16 the
greedy tokens may part where two logits tie within bf16 rounding: the agreement is reported as a fraction.
Also reports our decode step against its memory-bound limit: bytes read per step (weights + KV
cache) / memory bandwidth measured in the same run, for one sequence (the memory-bound case: every
weight is read to make one token) and for the whole batch (where CPU matmuls with a handful of rows
run below bandwidth).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers

import jax.numpy as jnp

from benchmarks.common import best_time, memory_bandwidth, report
from converters.qwen2 import convert_qwen2
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.infer.generate import bucket, generate
from nanoemox_jax.model import qwen2

BENCH_CONFIG = dict(vocab_size=151936, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                    num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True,
                    max_position_embeddings=4096, rope_theta=1e6)
FULL_CONFIG = BENCH_CONFIG | dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                  num_attention_heads=12)  # Qwen2.5-1.5B-Instruct
SIZES = {"bench": BENCH_CONFIG, "full": FULL_CONFIG}
DTYPES = {"fp32": (torch.float32, jnp.float32), "bf16": (torch.bfloat16, jnp.bfloat16)}


def add_size_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--size", choices=sorted(SIZES), default="bench")
  parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")


def hf_and_ours(args: argparse.Namespace) -> tuple[transformers.Qwen2ForCausalLM, qwen2.Qwen2ForCausalLM, str]:
  """(HF model on its device in `--dtype`, our converted copy of the same weights, the torch device)."""
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_dtype, jax_dtype = DTYPES[args.dtype]
  hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SIZES[args.size]))
  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(Path(tmp) / "hf")
    convert_qwen2(Path(tmp) / "hf", Path(tmp) / "jax")
    model = load_part("llm", Path(tmp) / "jax", dtype=jax_dtype, param_dtype=jax_dtype)
  return hf.to(device=device, dtype=torch_dtype), model, device


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=128)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  add_size_args(parser)
  args = parser.parse_args(argv)
  hf, model, device = hf_and_ours(args)
  hf.eval()
  ids = np.random.RandomState(0).randint(0, BENCH_CONFIG["vocab_size"], (args.batch, args.prompt))
  mask = np.ones_like(ids)

  def ours(n, rows=args.batch):
    return lambda: np.asarray(generate(model, ids[:rows], mask[:rows], n))

  def theirs():
    with torch.no_grad():
      out = hf.generate(input_ids=torch.tensor(ids, device=device), attention_mask=torch.tensor(mask, device=device),
                        max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, pad_token_id=0)
      return out.cpu()

  def decode_step(rows: int) -> float:  # same prefill and cache bucket: the difference is new - 1 decode steps
    ours(args.new, rows)(), ours(1, rows)()  # compile
    return (best_time(ours(args.new, rows), args.repeats) - best_time(ours(1, rows), args.repeats)) / (args.new - 1)

  ours(args.new)(), theirs()  # compile / warm up
  t_ours, t_hf = best_time(ours(args.new), args.repeats), best_time(theirs, args.repeats)
  agree = float((ours(args.new)() == theirs()[:, args.prompt:].numpy()).mean())
  tokens = args.batch * args.new
  cfg = model.config
  width = torch.finfo(DTYPES[args.dtype][0]).bits // 8
  weight_bytes = width * sum(p.numel() for p in hf.parameters())
  cache_len = bucket(bucket(args.prompt) + args.new)
  bandwidth = memory_bandwidth()

  def bound(rows: int) -> float:
    cache_bytes = 2 * width * cfg.num_hidden_layers * rows * cache_len * cfg.num_key_value_heads * cfg.head_dim
    return (weight_bytes + cache_bytes) / bandwidth

  steps = {rows: (decode_step(rows), bound(rows)) for rows in sorted({1, args.batch})}
  rows = [
      (f"HF generate (PyTorch {torch.__version__}, {device}, {args.dtype})", f"{tokens / t_hf:,.1f} tok/s", f"{t_hf:.3f} s"),
      ("nanoemox_jax generate", f"{tokens / t_ours:,.1f} tok/s", f"{t_ours:.3f} s"),
      ("speed-up", f"{t_hf / t_ours:.2f}x", "target >= 1.5x"),
      ("tokens equal to HF's", f"{100 * agree:.1f}%", ""),
      ("memory bandwidth", f"{bandwidth / 1e9:.1f} GB/s", "2 GiB copy"),
  ]
  for n, (step, limit) in steps.items():
    rows.append((f"decode step, {n} row(s)", f"{step * 1e3:.2f} ms",
                 f"bound {limit * 1e3:.2f} ms ({limit * bandwidth / 1e6:,.0f} MB weights + KV cache): "
                 f"{step / limit:.2f}x (target <= 1.5x)"))
  report("lm_generate", rows, dict(batch=args.batch, prompt=args.prompt, new=args.new, size=args.size,
                                   dtype=args.dtype, torch_device=device, hf_tok_s=tokens / t_hf,
                                   ours_tok_s=tokens / t_ours, speedup=t_hf / t_ours, agreement=agree,
                                   bandwidth_gbs=bandwidth / 1e9,
                                   decode={str(n): dict(step_ms=s * 1e3, bound_ms=b * 1e3)
                                           for n, (s, b) in steps.items()}))

if __name__ == "__main__":
  main()
