"""Multimodal inference: batched `predict` (fixed-shape batches, jitted prefill + KV-cache decode) vs one record
at a time, on the same records with the same max_new_tokens.

    python -m benchmarks.infer [--preset demo --records 16 --batch 8 --new 32] [--checkpoint DIR]

Records: held-out items of the synthetic demo corpus (CREMA-D audio, CAER video, MIntRec video with its audio
track, MER-Caption+ video + wav), written to a tmp folder. Model: the preset with random weights, or a
`checkpoints.load` folder. Both sides decode the media in the main process (timed alone on its own row) and run
greedy to max_new_tokens unless every row of a batch stops. Compilation is excluded (a warm-up pass first).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from flax import nnx

from benchmarks.common import best_time, report
from nanoemox_jax.checkpoints import parts
from nanoemox_jax.model.presets import get
from nanoemox_jax.data import media
from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.infer.predict import generate_tokens
from nanoemox_jax.model import nanoemox

DATASETS = ("cremad", "caer", "mintrec", "mercaptionplus")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="demo", help="model preset (nanoemox_jax/model/presets.py) for random weights")
  parser.add_argument("--checkpoint", help="a checkpoints.load folder instead of the random preset")
  parser.add_argument("--tokenizer", default=str(BUNDLED))
  parser.add_argument("--records", type=int, default=16)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--new", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args(argv)
  tokenizer = Tokenizer(args.tokenizer)
  with tempfile.TemporaryDirectory() as tmp:
    corpus = demo.write_corpus(Path(tmp), seed=0, per_class=2)
    pools = [read_source(d, corpus[d]["test"][0], "test", corpus[d]["test"][1])[0] for d in DATASETS]
    records = [pool[i] for i in range(args.records) for pool in pools if i < len(pool)][:args.records]
    if args.checkpoint:
      model, label = parts.load(args.checkpoint), args.checkpoint
    else:
      model, label = nanoemox.NanoEmoX(get(args.preset), rngs=nnx.Rngs(0)), f"{args.preset} preset, random weights"
    model.eval()

    def run(batch_size: int):
      return lambda: generate_tokens(model, tokenizer, records, batch_size=batch_size, max_new_tokens=args.new)

    batched, single = run(args.batch)(), run(1)()  # compile every bucket / batch shape
    t_batched, t_single = best_time(run(args.batch), args.repeats), best_time(run(1), args.repeats)
    start = time.perf_counter()
    for r in records:
      media.decode_sample(r.video, r.audio, model.config.face_input)
    t_decode = time.perf_counter() - start
  n = len(records)
  same = bool(np.array_equal(batched, single))
  rows = [
      ("one at a time (batch 1)", f"{n / t_single:,.2f} samples/s", f"{t_single:.2f} s for {n}"),
      (f"batched (batch {args.batch})", f"{n / t_batched:,.2f} samples/s", f"{t_batched:.2f} s for {n}"),
      ("speed-up", f"{t_single / t_batched:.2f}x", "batched / one at a time"),
      ("identical tokens", str(same), "greedy, every record"),
      ("media decoding alone", f"{n / t_decode:,.2f} samples/s", f"{t_decode:.2f} s (in both runs)"),
      ("model", label, f"{n} records, {args.new} new tokens"),
  ]
  report("infer", rows, dict(model=label, records=n, batch=args.batch, new=args.new,
                             single_samples_s=n / t_single, batched_samples_s=n / t_batched,
                             speedup=t_single / t_batched, identical=same, decode_samples_s=n / t_decode))


if __name__ == "__main__":
  main()
