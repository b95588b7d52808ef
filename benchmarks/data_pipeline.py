"""Decoded samples/s of the Grain pipeline (8 CLIP frames + 8 face crops + 8 audio clips per sample).

    python -m benchmarks.data_pipeline [--workers 0 1 2] [--batches 6] [--face-input crop] [--stored]

Media: the synthetic demo corpus (`nanoemox_jax.demo.corpus`, MER-Caption+-like set: 112x112 mpeg4
at 8 fps, 2-2.5 s, separate 16 kHz wav) written to a temp folder; the tiny model preset's layout.
`--stored`: also batches from a feature store (`data.features`, filled first by the tiny preset's random towers):
no decoding, no face detection.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from flax import nnx

from benchmarks.common import report
from nanoemox_jax.model.presets import tiny
from nanoemox_jax.data import pipeline
from nanoemox_jax.data.features import FeatureCache, build_cache
from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.model.nanoemox import NanoEmoX

TOKENIZER = BUNDLED  # the Qwen2 tokenizer files shipped with the package


def samples_per_second(records, tok: Tokenizer, face_input: str, workers: int, batches: int,
                       batch_size: int, features: FeatureCache | None = None) -> tuple[float, dict]:
  model = dataclasses.replace(tiny(), face_input=face_input)
  config = pipeline.PipelineConfig(batch_size=batch_size, workers=workers, seed=0)
  it = iter(pipeline.build({"mercaptionplus": records}, tok, model, config, features=features))
  next(it)  # worker start-up and first decode are not counted
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  rate = batches * batch_size / (time.perf_counter() - start)
  stats = it.stats.flat()
  it.close()
  return rate, stats


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--batches", type=int, default=6)
  parser.add_argument("--batch-size", type=int, default=4)
  parser.add_argument("--face-input", nargs="+", default=["crop", "raw_frames"])
  parser.add_argument("--stored", action="store_true", help="also from a feature store")
  args = parser.parse_args(argv)
  tok = Tokenizer(TOKENIZER)
  with tempfile.TemporaryDirectory() as tmp:
    files = demo.write_corpus(tmp, seed=0, per_class=4)
    src, root = files["mercaptionplus"]["train"]
    records, missing = read_source("mercaptionplus", src, "train", root)
    if missing:
      raise SystemExit(f"demo corpus is missing media: {missing[:3]}")
    rows, extra = [], {}
    for face_input in args.face_input:
      for workers in args.workers:
        rate, stats = samples_per_second(records, tok, face_input, workers, args.batches, args.batch_size)
        rows.append((f"face_input={face_input}, {workers} worker(s)", f"{rate:.1f} samples/s",
                     f"masked video {stats.get('masked/video', 0)}, audio {stats.get('masked/audio', 0)}"))
        extra[f"{face_input}_{workers}"] = rate
    if args.stored:
      started = time.perf_counter()
      cache = build_cache(Path(tmp) / "store", NanoEmoX(tiny(), rngs=nnx.Rngs(0)), records)
      rows.append(("feature store: build", f"{cache.computed / (time.perf_counter() - started):.1f} items/s",
                   f"{cache.computed} items, decoding in the main process"))
      for workers in args.workers:
        rate, _ = samples_per_second(records, tok, "crop", workers, args.batches, args.batch_size, cache)
        rows.append((f"stored features, {workers} worker(s)", f"{rate:.1f} samples/s", "no decoding"))
        extra[f"stored_{workers}"] = rate
  report("data_pipeline", rows, dict(batches=args.batches, batch_size=args.batch_size, samples_per_s=extra,
                                     media="demo corpus 112x112 mpeg4 8 fps 2-2.5 s + 16 kHz wav"))


if __name__ == "__main__":
  main()
