"""Annotation files -> manifest JSONL plus a summary.

  python -m nanoemox_jax.data.prepare --dataset meld --src MELD/ --split test --out meld_test.jsonl
  python -m nanoemox_jax.data.prepare --source mer2023=mer2023-dataset-process/ --source meld=meld-process/ \
      --source ovmerd=mer2025-dataset/ --source emer=EMER/ --split test --out benchmarks_test.jsonl

`--source NAME=SRC` (repeatable) writes several datasets into one manifest: every record keeps its dataset and
its original id, and records are named by the pair (dataset, id), which is unique in the file (SIMS and SIMSv2
share ids), as `infer` and `evaluate` key them. A MER-UniBench dataset's MERBench label file (`label.npz`, ...)
gives the item names AffectGPT's published outputs use (`data/sources/merbench.py`).

Writes the manifest and `<out>.summary.json` (records per task, label counts, every missing media path, every
row left out) and prints the summary with the first missing paths. Missing media are not an error; a row whose
label is not one of the dataset's candidates is left out, counted and listed (stderr warning and the summary's
`skipped`); other bad input (a missing file, not UTF-8, not JSON/CSV, a missing column or field, a field of the
wrong type, an empty id or label, a non-finite number, an id twice) exits with code 2 and one line naming the
file, line or item, and field.
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


def summarize(dataset: str, split: str, records: Sequence[Record], missing: Sequence[str],
              skipped: Sequence[str]) -> dict[str, Any]:
  labels = Counter(label for r in records for label in r.labels)
  return {"dataset": dataset, "split": split, "records": len(records),
          "tasks": dict(Counter(r.task for r in records)), "labels": dict(labels.most_common()),
          "missing_media": len(missing), "missing": list(missing), "skipped_rows": len(skipped),
          "skipped": list(skipped)}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.data.prepare", description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", choices=sorted(SOURCES))
  parser.add_argument("--src", type=Path, help="annotation file or the dataset's folder")
  parser.add_argument("--source", action="append", default=[], metavar="NAME=SRC",
                      help="a dataset and its file or folder, repeatable (instead of --dataset/--src)")
  parser.add_argument("--split", choices=SPLITS, help="default: train for training sets, test for benchmarks")
  parser.add_argument("--media-root", type=Path, help="folder the media paths are resolved against")
  parser.add_argument("--out", required=True, type=Path, help="manifest .jsonl to write")
  args = parser.parse_args(argv)
  try:
    sources = _sources(args)
    records, missing, skipped, summaries = [], [], [], []
    for dataset, src in sources:
      part_skipped: list[str] = []
      part, part_missing = read_source(dataset, src, args.split, args.media_root, part_skipped)
      if not part:
        raise SourceError(f"{src}: no {dataset} records for split {args.split or 'default'}"
                          + (f" ({len(part_skipped)} rows left out, first: {part_skipped[0]})" if part_skipped else ""))
      records += part
      missing += part_missing
      skipped += part_skipped
      summaries.append(summarize(dataset, part[0].split, part, part_missing, part_skipped))
    _check_unique(records, sources)
  except SourceError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  summary = summaries[0] if len(summaries) == 1 else {
      **summarize(",".join(d for d, _ in sources), ",".join(sorted({r.split for r in records})), records, missing,
                  skipped),
      "datasets": {s["dataset"]: {k: v for k, v in s.items() if k not in ("missing", "skipped")} for s in summaries}}
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
  for s in summary.get("datasets", {}).values():
    print(f"  {s['dataset']} ({s['split']}): {s['records']} records, {s['missing_media']} missing media")
  print(f"labels: {labels if len(labels) <= 40 else f'{len(labels)} distinct'}")
  print(f"missing media: {len(missing)}" + (f" (all listed in {summary_path})" if missing else ""))
  for path in missing[:SHOW_MISSING]:
    print(f"  {path}")
  if skipped:
    print(f"warning: left out {len(skipped)} rows whose label is not one of the dataset's (all listed in "
          f"{summary_path})", file=sys.stderr)
    for line in skipped[:SHOW_MISSING]:
      print(f"  {line}", file=sys.stderr)
  return 0


def _sources(args: argparse.Namespace) -> list[tuple[str, Path]]:
  """[(dataset, src)] from --dataset/--src or the --source pairs (one way only, each dataset once)."""
  if args.source and (args.dataset or args.src):
    raise SourceError("pass either --dataset with --src, or --source NAME=SRC pairs, not both")
  if not args.source:
    if not (args.dataset and args.src):
      raise SourceError("pass --dataset and --src, or one or more --source NAME=SRC")
    return [(args.dataset, args.src)]
  pairs: list[tuple[str, Path]] = []
  for item in args.source:
    name, sep, src = item.partition("=")
    if not sep or not src:
      raise SourceError(f"--source {item!r}: expected NAME=SRC")
    if name not in SOURCES:
      raise SourceError(f"--source {item!r}: unknown dataset {name!r}; known: {sorted(SOURCES)}")
    if any(name == d for d, _ in pairs):
      raise SourceError(f"--source {item!r}: dataset {name!r} given twice")
    pairs.append((name, Path(src)))
  return pairs


def _check_unique(records: Sequence[Record], sources: Sequence[tuple[str, Path]]) -> None:
  """(dataset, id) names one record in the manifest."""
  seen: set[tuple[str, str]] = set()
  for r in records:
    if (r.dataset, r.id) in seen:
      src = dict(sources).get(r.dataset, "?")
      raise SourceError(f"{src}: {r.dataset} id {r.id!r} appears twice")
    seen.add((r.dataset, r.id))


if __name__ == "__main__":
  sys.exit(main())
