"""The demo over seeds: `python -m nanoemox_jax.demo --seed S` for each seed, one after another, then the
held-out table as mean ± sd over the seeds.

    python -m benchmarks.demo_seeds [--seeds 0 1 2] [--root demo_seeds] [--no-run] [-- DEMO FLAGS ...]

Each seed has its own workdir `ROOT/seed<S>` (its own corpus, stand-in parts and phases: `--seed` draws them all
anew, so the spread covers the data as well as the training); a seed whose workdir already holds the test
scores is read, not rerun, and an interrupted one resumes. Per held-out set and task: the test split's accuracy
mean ± sd (sample sd, n-1) over the seeds, its chance rate (most frequent label's share), mean / chance, each
seed's value, and the same for the validation (dev) split that each phase scored at its end. The table goes to
stdout and to benchmarks/results/demo_seeds.json with the date, machine, load and command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, machine
from nanoemox_jax.demo import config
from nanoemox_jax.train.telemetry import format_table

ROOT = Path(__file__).resolve().parents[1]


def run_seed(workdir: Path, seed: int, demo_flags: Sequence[str]) -> float:
  """Runs (or resumes) the demo for `seed` in `workdir`, its output in `workdir.log`; seconds taken."""
  workdir.parent.mkdir(parents=True, exist_ok=True)
  command = [sys.executable, "-m", "nanoemox_jax.demo", "--workdir", str(workdir), "--seed", str(seed), *demo_flags]
  began = time.perf_counter()
  with open(workdir.with_suffix(".log"), "a") as log:
    code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
  if code:
    raise SystemExit(f"error: seed {seed}: the demo exited {code}; see {workdir.with_suffix('.log')}")
  return time.perf_counter() - began


def seed_scores(workdir: Path) -> dict[tuple[str, str, str], dict[str, float]]:
  """(phase, dataset, task) -> {"test": accuracy, "dev": accuracy, "test_chance", "dev_chance", "n"} of one run."""
  out: dict[tuple[str, str, str], dict[str, float]] = {}
  splits = {config.TEST_SPLIT: json.loads((workdir / config.TEST_SCORES).read_text())}
  splits[config.EVAL_SPLIT] = {p: json.loads((workdir / p / "results.json").read_text())["held_out"]
                               for p in splits[config.TEST_SPLIT]}
  for split, phases in splits.items():
    for phase, sets in phases.items():
      for name, s in sets.items():
        dataset = name.split(":")[0].removesuffix(f"_{split}")
        row = out.setdefault((phase, dataset, s["task"]), {})
        row[split], row[f"{split}_chance"], row[f"{split}_n"] = s["accuracy"], s["chance"], s["n"]
  return out


def table(per_seed: dict[int, dict[tuple[str, str, str], dict[str, float]]]) -> list[dict[str, Any]]:
  """One row per (phase, dataset, task) that every seed scored: mean, sd, chance and mean/chance per split."""
  keys = [k for k in per_seed[min(per_seed)] if all(k in s for s in per_seed.values())]
  rows = []
  for phase, dataset, task in keys:
    row: dict[str, Any] = {"phase": phase, "dataset": dataset, "task": task}
    for split in (config.TEST_SPLIT, config.EVAL_SPLIT):
      values = np.array([s[phase, dataset, task][split] for s in per_seed.values()])
      chance = float(np.mean([s[phase, dataset, task][f"{split}_chance"] for s in per_seed.values()]))
      sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
      row[split] = {"n": per_seed[min(per_seed)][phase, dataset, task][f"{split}_n"], "mean": float(values.mean()),
                    "sd": sd, "chance": chance, "x_chance": float(values.mean()) / chance,
                    "per_seed": {str(k): s[phase, dataset, task][split] for k, s in per_seed.items()}}
    rows.append(row)
  return rows


def render(rows: Sequence[dict[str, Any]], seeds: Sequence[int]) -> str:
  header = ("model after", "held-out set", "task", "n", "test mean ± sd", "chance", "x chance", "per seed",
            "dev mean ± sd")
  cells = [(r["phase"], r["dataset"], r["task"], r["test"]["n"], f"{r['test']['mean']:.3f} ± {r['test']['sd']:.3f}",
            r["test"]["chance"], r["test"]["x_chance"], " / ".join(f"{v:.3f}" for v in r["test"]["per_seed"].values()),
            f"{r['dev']['mean']:.3f} ± {r['dev']['sd']:.3f}") for r in rows]
  return f"seeds {', '.join(map(str, seeds))}\n" + format_table(header, cells)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_seeds", description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--root", type=Path, default=Path("demo_seeds"), help="folder of the per-seed workdirs")
  parser.add_argument("--no-run", action="store_true", help="only read the workdirs that --root holds")
  parser.add_argument("--out", type=Path, default=RESULTS / "demo_seeds.json")
  parser.add_argument("demo_flags", nargs="*", help="after --: flags passed to every python -m nanoemox_jax.demo")
  args = parser.parse_args(argv)
  load, seconds = [os.getloadavg()[0]], {}
  for seed in args.seeds:
    workdir = args.root.absolute() / f"seed{seed}"
    if not args.no_run and not (workdir / config.TEST_SCORES).exists():
      seconds[str(seed)] = run_seed(workdir, seed, args.demo_flags)
      load.append(os.getloadavg()[0])
      print(f"seed {seed}: {seconds[str(seed)]:.0f} s", flush=True)
  missing = [s for s in args.seeds if not (args.root / f"seed{s}" / config.TEST_SCORES).exists()]
  if missing:
    print(f"error: {args.root}: no finished run for seeds {missing}", file=sys.stderr)
    return 2
  rows = table({s: seed_scores(args.root / f"seed{s}") for s in args.seeds})
  print(render(rows, args.seeds))
  result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"), "machine": machine(),
            "load_1min": [round(x, 2) for x in load], "seconds": seconds, "seeds": args.seeds,
            "command": " ".join(["python -m benchmarks.demo_seeds", *(argv if argv is not None else sys.argv[1:])]),
            "rows": rows}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
