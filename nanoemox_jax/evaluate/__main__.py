"""python -m nanoemox_jax.evaluate --benchmark NAME --predictions F [F ...] --labels F [--judge none|env|CONFIG]
    [--select fixed|best] [--checkpoint NAME] [--model-name NAME] [--out DIR]

Scores predictions (JSONL from `python -m nanoemox_jax.infer`; several files or a glob give a checkpoint
range) against a manifest (the `--labels` JSONL of `nanoemox_jax.data.manifest` records, read by
`evaluate.labels`), prints the table in the paper's layout and writes report.md, scores.json and PNG plots to
--out. Records and predictions are matched by (dataset, id). `--select fixed` scores one checkpoint
(`--checkpoint NAME`, default the last), `--select best` the best of the range per dataset. `--judge none` reads
label lists from the answers; `--judge FILE` (JSON settings) or `--judge env` uses the LLM judge (see
`evaluate/judge.py`); judge replies the predictions carry (JSONL "openset" / "sentiment", or the published
`-openset.npz` / `-openset-sentiment.npz` files) are used as they are, with no query. A dataset of the labels
without any prediction is shown as "–" and listed in report.md.

Exit codes: 0 scored; 2 bad input (a missing or unreadable file, a line that is not UTF-8 or not a JSON object of
the formats below, a missing, unknown or mistyped field, a duplicate (dataset, id), an unknown benchmark,
dataset or checkpoint, labels none of whose records has a prediction), reported as one line on stderr naming
the file, line and field.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nanoemox_jax.data import published
from nanoemox_jax.data.predictions import InputError, Prediction, read_checkpoints
from nanoemox_jax.evaluate import emer, report, suite, wheel
from nanoemox_jax.evaluate.judge import Judge, JudgeConfig
from nanoemox_jax.evaluate.labels import read as read_labels

# One line of each file format read, for --help (tests/test_eval_cli.py reads them back).
PREDICTION_EXAMPLE = Prediction.from_text(
    "sample_00000007", "ovmer", "ovmerd", "The character's emotional state is worried, tense.",
    {"speech16_vision12": 0.31, "speech20_vision16": 0.69}, "runs/sft/model").to_json()
LABEL_EXAMPLES = (
    {"id": "sample_00001234", "task": "mer", "dataset": "mer2023", "split": "test", "target": "",
     "labels": ["happy"], "candidates": ["neutral", "angry", "happy", "sad", "worried", "surprise"]},
    {"id": "video_0001_3", "task": "msa", "dataset": "sims", "split": "test", "target": "", "labels": ["negative"],
     "meta": {"valence": -0.8}},
    {"id": "sample_00000007", "task": "ovmer", "dataset": "ovmerd", "split": "test", "target": "",
     "labels": ["worried", "nervous"]},
    {"id": "dia12_utt3", "task": "mir", "dataset": "mintrec", "split": "test", "target": "Complain",
     "labels": ["Complain"]},
    {"id": "conv_0042", "task": "erg", "dataset": "avamerg", "split": "test", "target": "", "labels": ["anxious"]},
    {"id": "sample_00000007", "task": "eri", "dataset": "emer", "split": "test",
     "target": "She frowns and her voice shakes, so she is worried."},
)
JUDGE_EXAMPLE = {"base_url": "http://localhost:8000/v1", "model": "Qwen2.5-7B-Instruct", "seed": 0}


def formats() -> str:
  """The --help epilog: one example line per file format."""
  lines = ["file formats (one JSON object per line):",
           "  --predictions, as `python -m nanoemox_jax.infer` writes them (answer, think, gates, checkpoint "
           "optional):",
           "    " + json.dumps(PREDICTION_EXAMPLE, ensure_ascii=False),
           "    (optional \"openset\" / \"sentiment\": a judge's replies already at hand, used instead of asking one)",
           "  --predictions may also name AffectGPT / Nano-EmoX outputs (data/published.py), e.g.",
           "    output/results-cmumosi/<run>/checkpoint_000030_loss_0.602.npz  name2reason: {name: answer}",
           "    ...-openset.npz, ...-openset-sentiment.npz beside it  filenames, fileitems: judge replies, reused",
           "  --labels, manifest records (id, task, dataset, split, target required), one example per task scored:"]
  lines += ["    " + json.dumps(example, ensure_ascii=False) for example in LABEL_EXAMPLES]
  lines += ["  --judge FILE, one JSON object (see evaluate/judge.py JudgeConfig):", "    " + json.dumps(JUDGE_EXAMPLE)]
  return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.evaluate", epilog=formats(),
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--benchmark", required=True,
                      help=f"one of {sorted(suite.FAMILIES)} or a single dataset ({', '.join(sorted(suite.TASK))})")
  parser.add_argument("--predictions", required=True, nargs="+", help="predictions JSONL file(s) or glob(s)")
  parser.add_argument("--labels", required=True, help="manifest JSONL with the ground truth")
  parser.add_argument("--judge", default="none", help="'none', 'env' (NANOEMOX_JUDGE_* variables) or a JSON file")
  parser.add_argument("--select", choices=suite.PROTOCOLS, default="fixed", help="checkpoint selection protocol")
  parser.add_argument("--checkpoint", help="with --select fixed: the checkpoint to score (default: the last)")
  parser.add_argument("--model-name", default=report.MODEL_NAME, help="the table's model row (default: %(default)s)")
  parser.add_argument("--out", default="eval_report", help="folder for report.md, scores.json and the plots")
  return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
  """Reads, scores, prints and writes; every user error is an InputError."""
  suite.datasets_for(args.benchmark)  # an unknown benchmark fails before any file is read
  judge = None if args.judge == "none" else Judge(JudgeConfig.load(None if args.judge == "env" else args.judge))
  records = read_labels(args.labels)
  groups = suite.benchmark_records(records, args.benchmark)
  if not groups:
    raise InputError(f"{args.labels}: no {args.benchmark} record (datasets "
                     f"{', '.join(suite.datasets_for(args.benchmark))} with their benchmark task)")
  if "emer" in groups and judge is None:
    raise InputError(f"{args.labels}: EMER records are scored by an LLM judge only; pass --judge FILE or env")
  by_checkpoint = read_checkpoints(args.predictions, set(suite.TASK) | {r.dataset for r in records}, published.read)
  names = list(by_checkpoint)
  if args.select == "fixed":
    if args.checkpoint is not None and args.checkpoint not in by_checkpoint:
      raise InputError(f"--checkpoint {args.checkpoint!r}: not among the predictions' checkpoints {names}")
    names = [args.checkpoint or names[-1]]
  predicted = {(p.dataset, p.id) for name in names for p in by_checkpoint[name]}
  if not any((r.dataset, r.id) in predicted for rs in groups.values() for r in rs):
    raise InputError(f"{args.labels}: none of its {sum(map(len, groups.values()))} {args.benchmark} records has a "
                     f"prediction (by dataset and id) in checkpoint(s) {names} of {' '.join(args.predictions)}")
  per_checkpoint = suite.score_all(groups, by_checkpoint, judge, wheel.load())
  selected = suite.select(per_checkpoint, args.select, args.checkpoint)
  for d in report.unscored(selected):
    print(f"warning: {d}: none of its {selected[d]['missing']} records has a prediction; not scored",
          file=sys.stderr)
  average = suite.average(selected, args.benchmark)
  table = report.tables(selected, average, args.select, args.model_name)
  print(table)
  record = {"model": args.model_name, "benchmark": args.benchmark, "protocol": args.select,
            "predictions": args.predictions, "labels": args.labels,
            "judge": judge.config.describe() if judge else None, "average": average, "selected": selected,
            "checkpoints": {c: {d: {k: r[k] for k in ("main", "scores", "n", "missing")} for d, r in results.items()}
                            for c, results in per_checkpoint.items()}}
  on_disk = sum(p.openset is not None or p.sentiment is not None for ps in by_checkpoint.values() for p in ps)
  if on_disk:
    record["judge_replies_on_disk"] = on_disk
  if judge and "emer" in selected:
    record["judge"]["emer_sampling"] = emer.SAMPLING
  if judge:
    record["judge_requests"] = {"sent": judge.requests_sent, "cached": judge.cache_hits}
  gates = suite.gate_means([p for d, r in selected.items() for p in by_checkpoint[r["checkpoint"]] if p.dataset == d])
  try:
    written = report.write(args.out, record, table, gates)
  except OSError as e:
    raise InputError(f"{e.filename or args.out}: --out: cannot write: {e.strerror or e}") from None
  for path in written:
    print(f"wrote {path}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    run(args)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
