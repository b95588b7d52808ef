"""`python -m benchmarks.rehearsal` (`make rehearsal`): the whole user path through the real command lines on random
weights in the real repositories' layouts and the real annotation files and media of ../shared/data/real: sources,
prepare, assemble, summary, one update of each P2E phase, export, infer on the RAVDESS video, infer over a prepared
MIntRec dev manifest and its evaluation, and the dry run of the same training command.

Both tests are slow. The tiny preset (9 minutes alone on 2 cores, most of it XLA compiling each phase's update,
twice per phase in the dry run) runs first as a guard that the script works; the full preset (the paper's sizes:
CLIP-L, HuBERT-L, Swin-B, Qwen2.5-1.5B; 60 minutes, 17.4 GB of RAM and ~15 GB of disk at its peak) is the
rehearsal itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.rehearsal import PHASE_DATA, REAL, SCORED_RECORDS, summary_counts

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["sources", "prepare", "assemble", "summary", "train", "export", "infer", "infer_manifest", "evaluate",
          "dry_run"]
RAM_GB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real annotation files and media not found at {REAL} "
                                "(../shared is for development only)")


def rehearse(out: Path, preset: str, timeout: float) -> dict:
  """Runs the rehearsal (its progress on the terminal with `-s`) and returns its rehearsal.json."""
  proc = subprocess.run([sys.executable, "-m", "benchmarks.rehearsal", "--out", str(out), "--preset", preset],
                        cwd=ROOT, timeout=timeout)
  record = json.loads((out / "rehearsal.json").read_text())
  assert proc.returncode == 0, record.get("failed")
  return record


def check(record: dict, preset: str) -> None:
  stages = {s["name"]: s for s in record["stages"]}
  assert list(stages) == STAGES
  assert all(s["returncode"] == 0 and s["seconds"] > 0 and s["peak_rss_gb"] > 0 for s in stages.values())
  # infer printed its JSON answer line; its fusion gates mean both the video and its audio track reached the model.
  # The text itself may be empty: a random LM's greedy tokens are often whitespace, which the answer strips.
  answer = record["infer_answer"]
  assert isinstance(answer["text"], str) and answer["answer"] == answer["text"]
  assert answer["gates"] and abs(sum(answer["gates"].values()) - 1) < 1e-3
  summary = subprocess.run([sys.executable, "-m", "nanoemox_jax.train.summary", "--preset", preset], cwd=ROOT,
                           capture_output=True, text=True, check=True, timeout=600).stdout
  expected = summary_counts(summary)
  assert list(expected) == list(PHASE_DATA) == list(record["phases"])
  assert {p: v["trainable_params"] for p, v in record["phases"].items()} == expected
  assert {p: v["trainable_params"] for p, v in record["dry_run"].items()} == expected
  assert all(v["loss"] is not None and v["loss"] == v["loss"] for v in record["phases"].values())  # finite
  assert all(v["update_seconds"] is not None for v in record["dry_run"].values())
  (scored,) = record["evaluate"]["selected"].values()
  assert (scored["n"], scored["missing"], record["evaluate"]["predictions"]) == (SCORED_RECORDS, 0, SCORED_RECORDS)


@pytest.mark.slow
@needs_real
def test_rehearsal_tiny(tmp_path):
  check(rehearse(tmp_path / "rehearsal", "tiny", timeout=3600), "tiny")


@pytest.mark.slow
@needs_real
@pytest.mark.skipif(RAM_GB < 22, reason=f"the full-size rehearsal needs ~20 GB of RAM; this machine has {RAM_GB:.0f}")
def test_rehearsal_full(tmp_path):
  record = rehearse(tmp_path / "rehearsal", "full", timeout=3 * 3600)
  check(record, "full")
  assert record["source_parameters"]["llm"] == 1_543_714_304  # Qwen2.5-1.5B-Instruct (tied embeddings)
