"""Greedy generation: nanoemox_jax's jitted prefill + KV-cache loop vs HF `generate` (PyTorch).

    python -m benchmarks.lm_generate [--batch 8 --prompt 128 --new 64]

Same random weights (HF init, saved and converted by `converters.qwen2`), fp32 on both sides.
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

from benchmarks.common import best_time, memory_bandwidth, report
from converters.qwen2 import convert_qwen2
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.infer.generate import bucket, generate

BENCH_CONFIG = dict(vocab_size=151936, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                    num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=True,
                    max_position_embeddings=4096, rope_theta=1e6)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=128)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**BENCH_CONFIG)).eval()
  with tempfile.TemporaryDirectory() as tmp:
    hf.save_pretrained(Path(tmp) / "hf")
    convert_qwen2(Path(tmp) / "hf", Path(tmp) / "jax")
    model = load_part("llm", Path(tmp) / "jax")
  ids = np.random.RandomState(0).randint(0, BENCH_CONFIG["vocab_size"], (args.batch, args.prompt))
  mask = np.ones_like(ids)

  def ours(n, rows=args.batch):
    return lambda: np.asarray(generate(model, ids[:rows], mask[:rows], n))

  def theirs():
    with torch.no_grad():
      return hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=args.new,
                         min_new_tokens=args.new, do_sample=False, pad_token_id=0)

  def decode_step(rows: int) -> float:  # same prefill and cache bucket: the difference is new - 1 decode steps
    ours(args.new, rows)(), ours(1, rows)()  # compile
    return (best_time(ours(args.new, rows), args.repeats) - best_time(ours(1, rows), args.repeats)) / (args.new - 1)

  ours(args.new)(), theirs()  # compile / warm up
  t_ours, t_hf = best_time(ours(args.new), args.repeats), best_time(theirs, args.repeats)
  same = bool((ours(args.new)() == theirs()[:, args.prompt:].numpy()).all())
  tokens = args.batch * args.new
  cfg = model.config
  weight_bytes = 4 * sum(p.numel() for p in hf.parameters())
  cache_len = bucket(bucket(args.prompt) + args.new)
  bandwidth = memory_bandwidth()

  def bound(rows: int) -> float:
    cache_bytes = 2 * 4 * cfg.num_hidden_layers * rows * cache_len * cfg.num_key_value_heads * cfg.head_dim
    return (weight_bytes + cache_bytes) / bandwidth

  steps = {rows: (decode_step(rows), bound(rows)) for rows in sorted({1, args.batch})}
  rows = [
      ("HF generate (PyTorch %s)" % torch.__version__, f"{tokens / t_hf:,.1f} tok/s", f"{t_hf:.3f} s"),
      ("nanoemox_jax generate", f"{tokens / t_ours:,.1f} tok/s", f"{t_ours:.3f} s"),
      ("speed-up", f"{t_hf / t_ours:.2f}x", "target >= 1.5x"),
      ("identical tokens", str(same), ""),
      ("memory bandwidth", f"{bandwidth / 1e9:.1f} GB/s", "2 GiB copy"),
  ]
  for n, (step, limit) in steps.items():
    rows.append((f"decode step, {n} row(s)", f"{step * 1e3:.2f} ms",
                 f"bound {limit * 1e3:.2f} ms ({limit * bandwidth / 1e6:,.0f} MB weights + KV cache): "
                 f"{step / limit:.2f}x (target <= 1.5x)"))
  report("lm_generate", rows, dict(batch=args.batch, prompt=args.prompt, new=args.new, hf_tok_s=tokens / t_hf,
                                   ours_tok_s=tokens / t_ours, speedup=t_hf / t_ours, identical=same,
                                   bandwidth_gbs=bandwidth / 1e9,
                                   decode={str(n): dict(step_ms=s * 1e3, bound_ms=b * 1e3)
                                           for n, (s, b) in steps.items()}))

if __name__ == "__main__":
  main()
