"""Decoded samples/s of the Grain pipeline (8 CLIP frames + 8 face crops + 8 audio clips per sample).

    python -m benchmarks.data_pipeline [--workers 0 1 2] [--batches 6] [--face-input crop]

Media: the synthetic demo corpus (`nanoemox_jax.demo.corpus`, MER-Caption+-like set: 112x112 mpeg4
at 8 fps, 2-2.5 s, separate 16 kHz wav) written to a temp folder; the tiny model preset's layout.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from benchmarks.common import report
from nanoemox_jax.model.presets import tiny
from nanoemox_jax.data import pipeline
from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer

TOKENIZER = BUNDLED  # the Qwen2 tokenizer files shipped with the package


def samples_per_second(records, tok: Tokenizer, face_input: str, workers: int, batches: int,
                       batch_size: int) -> tuple[float, dict]:
  model = dataclasses.replace(tiny(), face_input=face_input)
  config = pipeline.PipelineConfig(batch_size=batch_size, workers=workers, seed=0)
  it = iter(pipeline.build({"mercaptionplus": records}, tok, model, config))
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
  report("data_pipeline", rows, dict(batches=args.batches, batch_size=args.batch_size, samples_per_s=extra,
                                     media="demo corpus 112x112 mpeg4 8 fps 2-2.5 s + 16 kHz wav"))


if __name__ == "__main__":
  main()
