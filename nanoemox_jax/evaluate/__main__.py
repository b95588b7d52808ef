"""python -m nanoemox_jax.evaluate --benchmark NAME --predictions F [F ...] --labels F [--judge none|CONFIG] [--out DIR]

Scores predictions (JSONL from `python -m nanoemox_jax.infer`; several files or a glob give a checkpoint
range) against a manifest (the `--labels` JSONL of `nanoemox_jax.data.manifest` records), prints the table in
the paper's layout and writes report.md, scores.json and PNG plots to --out. `--select fixed` scores one
checkpoint (`--checkpoint NAME`, default the last), `--select best` the best of the range per dataset.
`--judge none` reads label lists from the answers; `--judge FILE` (JSON settings) or `--judge env` uses the
LLM judge (see `evaluate/judge.py`).
"""

from __future__ import annotations

import argparse
import sys

from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.data.predictions import read_checkpoints
from nanoemox_jax.evaluate import emer, report, suite, wheel
from nanoemox_jax.evaluate.judge import Judge, JudgeConfig


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.evaluate", description=__doc__.splitlines()[2])
  parser.add_argument("--benchmark", required=True,
                      help=f"one of {sorted(suite.FAMILIES)} or a single dataset ({', '.join(sorted(suite.TASK))})")
  parser.add_argument("--predictions", required=True, nargs="+", help="predictions JSONL file(s) or glob(s)")
  parser.add_argument("--labels", required=True, help="manifest JSONL with the ground truth")
  parser.add_argument("--judge", default="none", help="'none', 'env' (NANOEMOX_JUDGE_* variables) or a JSON file")
  parser.add_argument("--select", choices=suite.PROTOCOLS, default="fixed", help="checkpoint selection protocol")
  parser.add_argument("--checkpoint", help="with --select fixed: the checkpoint to score (default: the last)")
  parser.add_argument("--out", default="eval_report", help="folder for report.md, scores.json and the plots")
  args = parser.parse_args(argv)

  judge = None
  if args.judge != "none":
    judge = Judge(JudgeConfig.load(None if args.judge == "env" else args.judge))
  by_checkpoint = read_checkpoints(args.predictions)
  if not by_checkpoint:
    parser.error(f"no prediction in {args.predictions}")
  per_checkpoint = suite.score_all(read_jsonl(args.labels), by_checkpoint, args.benchmark, judge, wheel.load())
  selected = suite.select(per_checkpoint, args.select, args.checkpoint)
  average = suite.average(selected, args.benchmark)
  table = report.tables(selected, average, args.select)
  print(table)
  record = {"benchmark": args.benchmark, "protocol": args.select, "predictions": args.predictions,
            "labels": args.labels, "judge": judge.config.describe() if judge else None,
            "average": average, "selected": selected,
            "checkpoints": {c: {d: {k: r[k] for k in ("main", "scores", "n", "missing")} for d, r in results.items()}
                            for c, results in per_checkpoint.items()}}
  if judge and "emer" in selected:
    record["judge"]["emer_sampling"] = emer.SAMPLING
  if judge:
    record["judge_requests"] = {"sent": judge.requests_sent, "cached": judge.cache_hits}
  gates = suite.gate_means([p for d, r in selected.items() for p in by_checkpoint[r["checkpoint"]] if p.dataset == d])
  for path in report.write(args.out, record, table, gates):
    print(f"wrote {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
