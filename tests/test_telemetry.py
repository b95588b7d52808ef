"""Telemetry: JSONL round trip and resume, TensorBoard event file read back by TensorBoard, loss PNG, tables."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nanoemox_jax.train.telemetry import Telemetry, _crc32c, format_table, read_metrics


def _scalars(directory: Path, tag: str) -> list[tuple[int, float]]:
  accumulator = EventAccumulator(str(directory))
  accumulator.Reload()
  return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _png_size(path: Path) -> tuple[int, int]:
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])


def test_crc32c_known_vector():
  assert _crc32c(b"123456789") == 0xE3069283
  assert _crc32c(b"") == 0


def test_log_writes_jsonl_tensorboard_and_png(tmp_path):
  telemetry = Telemetry(tmp_path, "2", total_steps=3, samples_per_step=4)
  losses, lrs = [2.5, 2.0, 1.75], [1e-3, 5e-4, np.float32(2.5e-4)]
  for step, (loss, lr) in enumerate(zip(losses, lrs), start=1):
    telemetry.log(step, {"loss": loss, "lr": lr})
  png = telemetry.close()

  records = read_metrics(tmp_path / "2" / "metrics.jsonl")
  assert [r["step"] for r in records] == [1, 2, 3]
  assert [r["loss"] for r in records] == losses
  assert [r["lr"] for r in records] == [float(lr) for lr in lrs]
  assert all(set(r) == {"step", "time", "loss", "lr"} for r in records)
  assert records[0]["time"] <= records[-1]["time"]

  (event_file,) = (tmp_path / "2" / "tensorboard").iterdir()
  assert event_file.name.startswith("events.out.tfevents.")
  assert _scalars(event_file.parent, "loss") == [(1, 2.5), (2, 2.0), (3, 1.75)]
  assert _scalars(event_file.parent, "lr") == [(s, float(np.float32(lr))) for s, lr in enumerate(lrs, start=1)]

  assert png == tmp_path / "2" / "loss.png"
  assert _png_size(png) == (600, 400)
  assert 5_000 < png.stat().st_size < 500_000


def test_resume_drops_later_steps_everywhere(tmp_path):
  first = Telemetry(tmp_path, "1a", total_steps=5)
  for step in range(1, 6):
    first.log(step, {"loss": 10.0 + step})
  first.close()
  metrics = tmp_path / "1a" / "metrics.jsonl"
  with metrics.open("a") as f:  # the kill hit mid-line
    f.write('{"step": 6, "lo')

  resumed = Telemetry(tmp_path, "1a", total_steps=5, start_step=3)
  assert [r["step"] for r in read_metrics(metrics)] == [1, 2, 3]
  for step in (4, 5):
    resumed.log(step, {"loss": float(step)})
  assert resumed.close().exists()

  assert [(r["step"], r["loss"]) for r in read_metrics(metrics)] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 4.0), (5, 5.0)]
  assert _scalars(tmp_path / "1a" / "tensorboard", "loss") == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 4.0), (5, 5.0)]


def test_disabled_writes_nothing(tmp_path):
  telemetry = Telemetry(tmp_path, "3", total_steps=2, enabled=False)
  telemetry.log(1, {"loss": 1.0})
  assert telemetry.close() is None
  assert list(tmp_path.iterdir()) == []


def test_format_table():
  table = format_table(["task", "acc", "n", "ok"],
                       [["mer", 0.123456, 10, True], ["ovmer-long", 12.5, 3, False], ["eri", 1234567.0, 250, True]])
  assert table == ("task              acc    n  ok\n"
                   "----------  ---------  ---  -----\n"
                   "mer            0.1235   10  True\n"
                   "ovmer-long       12.5    3  False\n"
                   "eri         1.235e+06  250  True")
