"""Crash safety of the files written while answering and judging: the predictions JSONL of
`python -m nanoemox_jax.infer` (appended and fsynced per batch; on resume a torn last line is dropped with a warning
naming file and line, a bad line elsewhere is an error naming file, line and field) and the judge's reply cache
(entries written atomically, a damaged one named and asked again). The SIGKILL run is slow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nanoemox_jax.data.manifest import Record, write_jsonl
from nanoemox_jax.data.predictions import InputError, Prediction, append_jsonl
from nanoemox_jax.infer.__main__ import finished
from nanoemox_jax.infer.__main__ import main as infer
from tests.test_infer_cli import REPO, _answers, setup  # noqa: F401 (the fixture)
from tests.test_judge import _judge, server  # noqa: F401 (the fixture)

CKPT = "/runs/model"


def _lines(n: int) -> bytes:
  preds = [Prediction.from_text(f"r{i}", "mer", "mer2023", f"answer {i}", checkpoint=CKPT) for i in range(n)]
  return b"".join(json.dumps(p.to_json()).encode() + b"\n" for p in preds)


def test_torn_last_line_is_dropped_with_a_warning(tmp_path, capsys):
  out = tmp_path / "preds.jsonl"
  whole = _lines(3)
  for cut in (len(whole) - 1, len(whole) - 40, len(_lines(2)) + 1):  # inside line 3: its newline, its middle, its {
    out.write_bytes(whole[:cut])
    assert finished(out, CKPT) == {("mer2023", "r0"), ("mer2023", "r1")}
    assert out.read_bytes() == _lines(2)  # cut back to the last whole line
    assert capsys.readouterr().err == f"warning: {out}:3: dropped an incomplete last line (a killed write); its " \
                                      "record is redone\n"
  out.write_bytes(whole[:10])  # the only line torn: nothing done yet
  assert finished(out, CKPT) == set() and out.read_bytes() == b""


@pytest.mark.parametrize("name, content, message", [
    ("torn line in the middle", _lines(1) + _lines(2)[len(_lines(1)):][:25] + b"\n" + _lines(1), ":2: not JSON"),
    ("a line of another checkpoint", _lines(1).replace(CKPT.encode(), b"/runs/other"),
     ":1: field 'checkpoint': predictions of '/runs/other', not '/runs/model'"),
    ("a line without text", _lines(1).replace(b'"text": "answer 0", ', b""), ":1: field 'text': missing"),
    ("not UTF-8", _lines(1).replace(b"answer 0", b"answer \xff"), ":1: not UTF-8 text"),
    ("a JSON list", b"[1, 2]\n", ":1: expected a JSON object, got array"),
])
def test_bad_line_elsewhere_is_an_error(name, content, message, tmp_path):
  out = tmp_path / "preds.jsonl"
  out.write_bytes(content)
  with pytest.raises(InputError) as e:
    finished(out, CKPT)
  assert str(e.value).startswith(f"{out}{message}"), str(e.value)
  assert out.read_bytes() == content  # left as it was


def test_append_keeps_earlier_lines_and_ends_each_with_a_newline(tmp_path):
  out = tmp_path / "preds.jsonl"
  for i in range(3):
    append_jsonl([Prediction.from_text(f"r{i}", "mer", "mer2023", f"answer {i}", checkpoint=CKPT)], out)
  assert out.read_bytes() == _lines(3)


def test_damaged_judge_cache_entries_are_named_and_asked_again(server, tmp_path, capsys):  # noqa: F811
  prompts = [f"p{i}" for i in range(5)]
  first = _judge(server, tmp_path).complete(prompts)
  entries = sorted((tmp_path / "cache").rglob("*.json"))
  assert server.requests == 5 and len(entries) == 5
  assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".json"]  # no temp files
  by_prompt = {json.loads(p.read_text())["prompt"]: p for p in entries}
  by_prompt["p0"].write_bytes(by_prompt["p0"].read_bytes()[:20])  # torn
  by_prompt["p1"].write_bytes(b"\xff\xfe")  # not UTF-8
  by_prompt["p2"].write_text(by_prompt["p3"].read_text())  # another prompt's entry
  by_prompt["p4"].write_text(json.dumps({**json.loads(by_prompt["p4"].read_text()), "reply": None}))
  capsys.readouterr()
  again = _judge(server, tmp_path)
  assert again.complete(prompts) == first
  assert server.requests == 9 and again.cache_hits == 1 and again.requests_sent == 4
  warnings = sorted(capsys.readouterr().err.splitlines())
  assert warnings == sorted(f"warning: {by_prompt[p]}: a damaged judge cache entry; asking again"
                            for p in ("p0", "p1", "p2", "p4"))
  third = _judge(server, tmp_path)  # rewritten: all from disk now
  assert third.complete(prompts) == first and server.requests == 9 and third.cache_hits == 5


@pytest.mark.slow  # 282 s on 2 busy cores (228 s + 54 s corpus/model setup): an in-process run and a killed one
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(setup, tmp_path, capsys):  # noqa: F811
  model, records = setup
  records = records + [Record.from_json(r.to_json() | {"id": r.id + "_b"}) for r in records]
  write_jsonl(records, tmp_path / "test.jsonl")
  args = ["--checkpoint", str(model), "--manifest", str(tmp_path / "test.jsonl"), "--batch-size", "1",
          "--max-new-tokens", "6"]
  assert infer([*args, "--out", str(tmp_path / "whole.jsonl")]) == 0
  whole = _answers(tmp_path / "whole.jsonl")
  out = tmp_path / "killed.jsonl"
  proc = subprocess.Popen([sys.executable, "-m", "nanoemox_jax.infer", *args, "--out", str(out)], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=os.environ | {"JAX_PLATFORMS": "cpu"})
  deadline = time.monotonic() + 500
  while proc.poll() is None and time.monotonic() < deadline:
    if out.exists() and out.read_bytes().count(b"\n") >= 3:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before the kill"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  kept = out.read_bytes().count(b"\n")
  assert 3 <= kept < len(records)
  capsys.readouterr()
  assert infer([*args, "--out", str(out)]) == 0
  assert f"{len(records) - kept} new predictions, {len(records)} in all" in capsys.readouterr().out
  assert _answers(out) == whole and len(out.read_text().splitlines()) == len(records)
