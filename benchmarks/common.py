"""Shared benchmark plumbing: machine description, timing, memory bandwidth, tables, JSONL results."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
  cpu = platform.processor() or "cpu"
  try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  dev = jax.devices()[0]
  accel = "" if dev.platform == "cpu" else f", {dev.device_kind}"
  return f"{cpu}, {os.cpu_count()} cores{accel}"


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
  """Fastest of `repeats` wall-clock runs of `fn` (which must block until its result is ready)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def memory_bandwidth(gib: float = 2.0) -> float:
  """Bytes/s of a large array copy (read + write counted), far larger than any cache; best of numpy
  and a jitted XLA copy."""
  n = int(gib * 2**30) // 4
  src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
  numpy_bw = 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), 5)
  x = jax.device_put(src)
  copy = jax.jit(lambda a: a * 1.0001)
  copy(x).block_until_ready()
  xla_bw = 2 * src.nbytes / best_time(lambda: copy(x).block_until_ready(), 5)
  return max(numpy_bw, xla_bw)


def report(name: str, rows: list[tuple[str, str, str]], extra: dict) -> None:
  """Print a 3-column table and append one JSON line to benchmarks/results/NAME.jsonl."""
  width = max(len(r[0]) for r in rows)
  print(f"\n{name} on {machine()}  ({datetime.date.today()})")
  for a, b, c in rows:
    print(f"  {a:<{width}}  {b:>14}  {c}")
  RESULTS.mkdir(exist_ok=True)
  with open(RESULTS / f"{name}.jsonl", "a") as f:
    f.write(json.dumps({"benchmark": name, "machine": machine(), "date": str(datetime.date.today()),
                        "jax": jax.__version__, **extra}) + "\n")
