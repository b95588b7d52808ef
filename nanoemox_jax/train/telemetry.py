"""Training telemetry of one phase: a tqdm bar, `metrics.jsonl`, a TensorBoard event file and `loss.png`.

Everything lives in `workdir/<phase>/`. Steps count completed optimizer steps, so a run resumed from the
checkpoint of step k logs k+1 onwards; the JSONL is cut back to step <= k first and then appended to.
The event file is written here (TFRecord framing of hand-encoded `Event` protos), so TensorBoard is only
needed to view it, and tensorflow never.
"""

from __future__ import annotations

import json
import numbers
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from tqdm import tqdm


def _crc32c_table() -> list[int]:
  table = []
  for n in range(256):
    for _ in range(8):
      n = (n >> 1) ^ (0x82F63B78 if n & 1 else 0)
    table.append(n)
  return table


_CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli), as TFRecord frames use it."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
  crc = _crc32c(data)
  return struct.pack("<I", ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1
  out = bytearray()
  while n > 0x7F:
    out.append(n & 0x7F | 0x80)
    n >>= 7
  out.append(n)
  return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
  """One protobuf field; `payload` is already encoded (wire type 2 gets its length prefix here)."""
  return _varint(number << 3 | wire_type) + (_varint(len(payload)) if wire_type == 2 else b"") + payload


def _event(wall_time: float, step: int, body: bytes) -> bytes:
  """`Event{wall_time=1, step=2}` + the encoded `file_version` (3), `summary` (5) or `session_log` (7)."""
  return _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step)) + body


class _EventFile:
  """TensorBoard event file of scalar summaries, flushed after every record.

  It opens with a `SessionLog.START` at `start_step + 1`, on which TensorBoard drops the events of later
  steps that an earlier (killed) run left in the directory.
  """

  def __init__(self, directory: Path, start_step: int):
    directory.mkdir(parents=True, exist_ok=True)
    self.path = directory / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    self._file = self.path.open("ab")
    self._write(_event(time.time(), 0, _field(3, 2, b"brain.Event:2")))
    self._write(_event(time.time(), start_step + 1, _field(7, 2, _field(1, 0, _varint(1)))))

  def _write(self, data: bytes) -> None:
    length = struct.pack("<Q", len(data))
    self._file.write(length + _masked_crc(length) + data + _masked_crc(data))
    self._file.flush()

  def scalars(self, step: int, wall_time: float, values: Mapping[str, float]) -> None:
    values_pb = b"".join(_field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
                         for tag, value in values.items())
    self._write(_event(wall_time, step, _field(5, 2, values_pb)))

  def close(self) -> None:
    self._file.close()


def read_metrics(path: str | Path) -> list[dict]:
  """The records of a `metrics.jsonl`; an unterminated last line (a run killed mid-write) is ignored."""
  return [json.loads(line) for line in Path(path).read_text().split("\n")[:-1] if line]


class Telemetry:
  """Progress bar, JSONL log, TensorBoard event file and the loss-curve PNG of one training phase.

  `enabled=False` (every JAX process but the first) makes every method a no-op.
  """

  def __init__(self, workdir: str | Path, phase: str, total_steps: int, start_step: int = 0,
               samples_per_step: int = 1, enabled: bool = True):
    self.enabled = enabled
    self.phase = phase
    self.samples_per_step = samples_per_step
    self.directory = Path(workdir) / phase
    self.metrics_path = self.directory / "metrics.jsonl"
    self.loss_plot_path = self.directory / "loss.png"
    if not enabled:
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    if self.metrics_path.exists():
      kept = [r for r in read_metrics(self.metrics_path) if r["step"] <= start_step]
      tmp = self.metrics_path.with_suffix(".jsonl.tmp")
      tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
      tmp.replace(self.metrics_path)
    self._jsonl = self.metrics_path.open("a")
    self._events = _EventFile(self.directory / "tensorboard", start_step)
    self._bar = tqdm(total=total_steps, initial=start_step, desc=phase, dynamic_ncols=True)
    self._last: tuple[int, float] | None = None  # (step, monotonic time) of the previous `log`

  def log(self, step: int, metrics: Mapping[str, float]) -> None:
    """Records `metrics` after step `step` (JSONL line, TensorBoard scalars) and moves the bar there."""
    if not self.enabled:
      return
    step, wall_time, now = int(step), time.time(), time.monotonic()
    values = {name: float(value) for name, value in metrics.items()}
    self._jsonl.write(json.dumps({"step": step, "time": wall_time, **values}) + "\n")
    self._jsonl.flush()
    self._events.scalars(step, wall_time, values)
    postfix = [f"{name}={values[name]:.4g}" for name in ("loss", "lr") if name in values]
    if self._last is not None and now > self._last[1]:
      rate = self.samples_per_step * (step - self._last[0]) / (now - self._last[1])
      postfix.append(f"samples/s={rate:.1f}")
    self._last = (step, now)
    self._bar.set_postfix_str(", ".join(postfix), refresh=False)
    self._bar.update(step - self._bar.n)

  def close(self) -> Path | None:
    """Closes bar, JSONL and event file, and plots loss vs step of the whole JSONL; returns the PNG path."""
    if not self.enabled:
      return None
    self._bar.close()
    self._jsonl.close()
    self._events.close()
    points = [(r["step"], r["loss"]) for r in read_metrics(self.metrics_path) if "loss" in r]
    figure = Figure(figsize=(6, 4), dpi=100, layout="tight")
    axes = figure.subplots()
    axes.plot([step for step, _ in points], [loss for _, loss in points])
    axes.set(title=self.phase, xlabel="step", ylabel="loss")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    figure.savefig(self.loss_plot_path)  # PNG through matplotlib's Agg canvas; no pyplot, no global backend
    return self.loss_plot_path


def _cell(value: object) -> str:
  is_float = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
  return f"{value:.4g}" if is_float else str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """Fixed-width plain-text table: floats with 4 significant digits, numeric columns right-aligned."""
  cells = [[str(name) for name in header]] + [[_cell(value) for value in row] for row in rows]
  widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
  numeric = [bool(rows) and all(isinstance(row[i], numbers.Real) and not isinstance(row[i], bool) for row in rows)
             for i in range(len(header))]
  lines = [[c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric)] for line in cells]
  lines.insert(1, ["-" * w for w in widths])
  return "\n".join("  ".join(line).rstrip() for line in lines)
