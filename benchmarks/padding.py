"""Padding of the training buckets on the real annotation files: the fraction of each padded micro-batch that is
padding, per P2E phase, for the paper configs' buckets and for finer ones.

    python -m benchmarks.padding [--batch 3 --draws 20000]

Sequence lengths are those the pipeline trains on: `templates.build_example` (the full preset's placeholder
counts: 32 frame + 32 audio + 4 face + 1 multi tokens) tokenised with the bundled Qwen2 tokenizer, plus BOS and
EOS, for every record the real readers make of the files in ../shared/data/real (development only; datasets the
folder lacks are listed as missing). A micro-batch draws `--batch` records uniformly from the phase's pooled
records and pads to the smallest bucket >= its longest row (rows over the largest bucket are cut to it, as the
pipeline truncates). Padding fraction = 1 - real tokens / padded tokens over `--draws` micro-batches.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from benchmarks.common import machine, report
from nanoemox_jax.data import pipeline, templates
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.model import presets
from nanoemox_jax.train.config import Data, paper_phase

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
# (dataset, file under REAL) of every training annotation file the folder holds
FILES = {"cremad": "nanoemox_official/crema_d_annotations.json", "mintrec": "nanoemox_official/train_MIntRec_ann.json",
         "mintrec2": "nanoemox_official/train_MIntRec2_ann.json",
         "merr_fine": "nanoemox_official/MERR_fine_grained.first150.json"}
CANDIDATES = {"configured (train.config.Data.buckets)": Data.buckets,
              "paper configs before: (512, 768, 1024)": (512, 768, 1024),
              "(256, 512, 768, 1024)": (256, 512, 768, 1024), "every 64 up to 1024": tuple(range(64, 1025, 64)),
              "every 32 from 192 to 384, 512, 768, 1024": (*range(192, 385, 32), 512, 768, 1024)}


def lengths(dataset: str, tokenizer: Tokenizer, counts: dict[str, int]) -> np.ndarray:
  """Token count (BOS + prompt + target + EOS) of every record the reader makes of the dataset's file."""
  records, _ = read_source(dataset, REAL / FILES[dataset], "train")
  rng = random.Random(0)
  out = []
  for r in records:
    prompt, target = templates.build_example(r, rng=rng, **counts)
    out.append(2 + len(tokenizer.encode(prompt)) + len(tokenizer.encode(target)))
  return np.array(out)


def padding_fraction(lens: np.ndarray, buckets: tuple[int, ...], batch: int, draws: int, seed: int = 0) -> float:
  """1 - real / padded tokens over `draws` uniform micro-batches of `batch` rows."""
  rows = np.random.default_rng(seed).choice(lens, (draws, batch))
  rows = np.minimum(rows, buckets[-1])
  padded = np.asarray(buckets)[np.searchsorted(buckets, rows.max(-1))]
  return float(1 - rows.sum() / (padded.sum() * batch))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=3)
  parser.add_argument("--draws", type=int, default=20_000)
  args = parser.parse_args(argv)
  tokenizer = Tokenizer(BUNDLED)
  counts = pipeline.template_counts(tokenizer, presets.full())
  per_dataset = {d: lengths(d, tokenizer, counts) for d in FILES if (REAL / FILES[d]).exists()}
  result = dict(machine=machine(), batch=args.batch, draws=args.draws, missing=sorted(set(FILES) - set(per_dataset)),
                datasets={d: dict(n=len(v), **{f"p{q}": float(np.percentile(v, q)) for q in (5, 50, 95, 100)})
                          for d, v in per_dataset.items()}, phases={})
  rows = [(d, f"n={s['n']}", f"tokens p5 {s['p5']:.0f}, median {s['p50']:.0f}, p95 {s['p95']:.0f}, max {s['p100']:.0f}")
          for d, s in result["datasets"].items()]
  for name in ("1a", "1b", "2", "3"):
    phase = paper_phase(name)
    present = [d for d in phase.data.train if d in per_dataset]
    if not present:
      continue
    lens = np.concatenate([per_dataset[d] for d in present])
    fractions = {c: padding_fraction(lens, b, args.batch, args.draws) for c, b in CANDIDATES.items()}
    result["phases"][name] = dict(datasets=present, absent=[d for d in phase.data.train if d not in per_dataset],
                                  padding=fractions)
    rows += [(f"phase {name} ({'+'.join(present)})", c, f"padding {100 * f:.1f}%") for c, f in fractions.items()]
  report("padding", rows, result)


if __name__ == "__main__":
  main()
