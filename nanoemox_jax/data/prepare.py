"""Annotation files -> manifest JSONL plus a summary.

  python -m nanoemox_jax.data.prepare --dataset meld --src MELD/ --split test --out meld_test.jsonl

Writes the manifest and `<out>.summary.json` (records per task, label counts, every missing media
path) and prints the summary with the first missing paths. Missing media are not an error; bad input
(missing file, wrong format, missing column or field) exits with code 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nanoemox_jax.data.manifest import SPLITS, Record, write_jsonl
from nanoemox_jax.data.sources import SOURCES, read_source
from nanoemox_jax.data.sources.common import SourceError

SHOW_MISSING = 10


def summarize(dataset: str, split: str, records: Sequence[Record], missing: Sequence[str]) -> dict[str, Any]:
  labels = Counter(label for r in records for label in r.labels)
  return {"dataset": dataset, "split": split, "records": len(records),
          "tasks": dict(Counter(r.task for r in records)), "labels": dict(labels.most_common()),
          "missing_media": len(missing), "missing": list(missing)}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.data.prepare", description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", required=True, choices=sorted(SOURCES))
  parser.add_argument("--src", required=True, type=Path, help="annotation file or the dataset's folder")
  parser.add_argument("--split", choices=SPLITS, help="default: train for training sets, test for benchmarks")
  parser.add_argument("--media-root", type=Path, help="folder the media paths are resolved against")
  parser.add_argument("--out", required=True, type=Path, help="manifest .jsonl to write")
  args = parser.parse_args(argv)
  try:
    records, missing = read_source(args.dataset, args.src, args.split, args.media_root)
  except SourceError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if not records:
    print(f"error: {args.src}: no {args.dataset} records for split {args.split or 'default'}", file=sys.stderr)
    return 2
  summary = summarize(args.dataset, records[0].split, records, missing)
  summary_path = args.out.with_suffix(".summary.json")
  try:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(records, args.out)
    summary_path.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
  except OSError as e:
    print(f"error: cannot write the manifest: {e}", file=sys.stderr)
    return 2
  labels = summary["labels"]
  print(f"{args.out}: {summary['records']} records {summary['tasks']}")
  print(f"labels: {labels if len(labels) <= 40 else f'{len(labels)} distinct'}")
  print(f"missing media: {len(missing)}" + (f" (all listed in {summary_path})" if missing else ""))
  for path in missing[:SHOW_MISSING]:
    print(f"  {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
