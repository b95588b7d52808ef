"""Broken checkpoint files through every converter CLI (`converters.qwen2 / clip / hubert / facexformer /
nanoemox_official / assemble`): each case ends with exit 2 and one `error:` line naming the file and the field,
never a traceback. The corpus is made here, at test time, from tiny random parts (`tests.test_assemble`).

Cases per CLI: qwen2 23 (one through the real `python -m`), clip 20, hubert 12, facexformer 7, nanoemox_official 7,
assemble 4 (73 in all).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from converters import assemble, clip, common, facexformer, hubert, nanoemox_official, qwen2
from nanoemox_jax.data.tokenizer import BUNDLED
from tests.test_assemble import tiny_clip, tiny_facexformer, tiny_hubert, tiny_llm


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
  """Valid sources: HF folders of the LM (model.safetensors), CLIP (model.safetensors) and HuBERT
  (pytorch_model.bin), FaceXFormer's model.pt, and an authors'-layout `.pth` ({"model": state dict})."""
  root = tmp_path_factory.mktemp("good")
  tiny_llm(root / "llm", BUNDLED)
  tiny_clip(root / "clip")
  tiny_hubert(root / "hubert")
  tiny_facexformer(root / "face" / "model.pt")
  torch.save({"model": {"video_proj.weight": torch.zeros(4, 4)}, "epoch": 3}, root / "official.pth")
  return {"llm": root / "llm", "clip": root / "clip", "hubert": root / "hubert", "face": root / "face" / "model.pt",
          "official": root / "official.pth"}


# ----------------------------------------------------------------------------- damage to one weight file

def _header(path: Path) -> tuple[int, dict]:
  raw = path.read_bytes()
  (n,) = struct.unpack("<Q", raw[:8])
  return n, json.loads(raw[8:8 + n])


def _rewrite_header(path: Path, edit: Callable[[dict], object]) -> None:
  """Replace the safetensors header by `edit(header)` (the data bytes kept)."""
  n, header = _header(path)
  data = path.read_bytes()[8 + n:]
  blob = json.dumps(edit(header)).encode()
  path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def _first_tensor(header: dict) -> str:
  return next(k for k in header if k != "__metadata__")


def _set(field: str, value: object) -> Callable[[dict], dict]:
  def edit(header: dict) -> dict:
    header[_first_tensor(header)][field] = value
    return header
  return edit


def _drop(field: str) -> Callable[[dict], dict]:
  def edit(header: dict) -> dict:
    del header[_first_tensor(header)][field]
    return header
  return edit


def _grow_last_offset(header: dict) -> dict:
  name = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
  header[name]["data_offsets"][1] += 4096
  return header


SAFETENSORS = {  # damage -> words of the error (after the file's path)
    "zero_bytes": (lambda p: p.write_bytes(b""), "header: 0 bytes"),
    "four_bytes": (lambda p: p.write_bytes(p.read_bytes()[:4]), "header: 4 bytes"),
    "header_length_huge": (lambda p: p.write_bytes(struct.pack("<Q", 1 << 40) + p.read_bytes()[8:]), "header: length"),
    "header_cut": (lambda p: p.write_bytes(p.read_bytes()[:20]), "header: length"),
    "header_not_json": (lambda p: p.write_bytes(struct.pack("<Q", 6) + b"{nope!" + p.read_bytes()[8:]),
                        "header: not JSON"),
    "header_a_list": (lambda p: _rewrite_header(p, lambda h: [1, 2]), "header: a JSON list"),
    "truncated_half": (lambda p: os.truncate(p, p.stat().st_size // 2), "data_offsets end"),
    "truncated_last_byte": (lambda p: os.truncate(p, p.stat().st_size - 1), "data_offsets end"),
    "unknown_dtype": (lambda p: _rewrite_header(p, _set("dtype", "F8_E4M3")), "unsupported dtype"),
    "shape_negative": (lambda p: _rewrite_header(p, _set("shape", [-1, 4])), "shape"),
    "offsets_span_wrong": (lambda p: _rewrite_header(p, _set("data_offsets", [0, 3])), "data_offsets span"),
    "offsets_reversed": (lambda p: _rewrite_header(p, _set("data_offsets", [8, 0])), "data_offsets"),
    "offsets_beyond_data": (lambda p: _rewrite_header(p, _grow_last_offset), "data_offsets"),
    "no_dtype_field": (lambda p: _rewrite_header(p, _drop("dtype")), "lacks dtype"),
}


class _RunsCode:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


TORCH = {  # damage to a torch.save file -> words of the error
    "zero_bytes": (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
    "truncated_half": (lambda p: os.truncate(p, p.stat().st_size // 2), "not a readable PyTorch checkpoint"),
    "random_bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable PyTorch"),
    "text_file": (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\n"), "not a readable PyTorch"),
    "a_list": (lambda p: torch.save([torch.zeros(2)], p), "expected a state dict, found list"),
    "code_in_pickle": (lambda p: p.write_bytes(pickle.dumps({"w": _RunsCode()})), "not a readable PyTorch"),
    "wrong_extension_safetensors_inside": (
        lambda p: p.write_bytes(struct.pack("<Q", 2) + b"{}"), "not a readable PyTorch checkpoint"),
}


# ----------------------------------------------------------------------------- damage to an HF folder

def _index(folder: Path, text: str) -> None:
  (folder / "model.safetensors.index.json").write_text(text)


FOLDER = {  # damage to an HF folder -> (what the error names, words)
    "config_not_json": (lambda f: (f / "config.json").write_text("{"), "config.json", "not JSON"),
    "config_a_list": (lambda f: (f / "config.json").write_text("[]"), "config.json", "a JSON list"),
    "config_missing": (lambda f: (f / "config.json").unlink(), "config.json", "not found"),
    "index_not_json": (lambda f: _index(f, "{"), "model.safetensors.index.json", "weight_map"),
    "index_no_weight_map": (lambda f: _index(f, "{}"), "model.safetensors.index.json", "weight_map"),
    "index_missing_shard": (lambda f: _index(f, '{"weight_map": {"a": "part-2.safetensors"}}'),
                            "model.safetensors.index.json", "shard part-2.safetensors is missing"),
}
EMPTY = {"empty_folder": "config.json not found", "no_such_folder": "no such file or folder"}

CONVERTERS = {"llm": (qwen2, qwen2.convert_qwen2, "model.safetensors"), "clip": (clip, clip.convert_clip,
              "model.safetensors"), "hubert": (hubert, hubert.convert_hubert, "pytorch_model.bin")}


def _run_cli(capsys, run: Callable[[], object]) -> list[str]:
  """Run a CLI in-process; its stderr lines. It must exit with status 2 and no traceback."""
  with pytest.raises(SystemExit) as stop:
    run()
  err = capsys.readouterr().err
  assert stop.value.code == 2 and "Traceback" not in err, err
  return [line for line in err.splitlines() if line.startswith("error:")]


def _hf_cli(part: str, src: Path, out: Path) -> Callable[[], object]:
  module, convert, _ = CONVERTERS[part]
  return lambda: common.cli(module.__doc__, convert, ["--src", str(src), "--out", str(out)])


def _copy(src: Path, dst: Path) -> Path:
  dst.parent.mkdir(parents=True, exist_ok=True)
  (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
  return dst


CASES = ([(part, f"safetensors_{name}") for part in ("llm", "clip") for name in SAFETENSORS]
         + [(part, f"folder_{name}") for part in ("llm", "clip", "hubert") for name in FOLDER if
            not (part == "hubert" and name.startswith("index"))]
         + [(part, name) for part in ("llm", "hubert") for name in EMPTY]
         + [("hubert", f"torch_{name}") for name in TORCH])


@pytest.mark.parametrize("part,case", CASES, ids=[f"{p}-{c}" for p, c in CASES])
def test_hf_converters_name_the_broken_file(good, tmp_path, capsys, part, case):
  src = _copy(good[part], tmp_path / "src")
  weights = src / CONVERTERS[part][2]
  if case.startswith("safetensors_"):
    damage, words = SAFETENSORS[case.removeprefix("safetensors_")]
    damage(weights)
    named = weights
  elif case.startswith("torch_"):
    damage, words = TORCH[case.removeprefix("torch_")]
    damage(weights)
    named = weights
  elif case.startswith("folder_"):
    damage, file, words = FOLDER[case.removeprefix("folder_")]
    damage(src)
    named = src / file
  else:
    words = EMPTY[case]
    shutil.rmtree(src)
    if case == "empty_folder":
      src.mkdir()
    named = src
  if case == "folder_config_missing":
    named = src
  lines = _run_cli(capsys, _hf_cli(part, src, tmp_path / "out"))
  assert len(lines) == 1 and str(named) in lines[0] and words in lines[0], lines
  assert not (tmp_path / "out" / "params").exists()


TORCH_FILES = [(part, name) for part in ("face", "official") for name in TORCH]


@pytest.mark.parametrize("part,case", TORCH_FILES, ids=[f"{p}-{c}" for p, c in TORCH_FILES])
def test_torch_file_converters_name_the_broken_file(good, tmp_path, capsys, part, case):
  src = _copy(good[part], tmp_path / good[part].name)
  damage, words = TORCH[case]
  damage(src)
  argv = ["--src", str(src), "--out", str(tmp_path / "out")]
  run = ((lambda: common.cli(facexformer.__doc__, facexformer.convert_facexformer, argv)) if part == "face" else
         (lambda: nanoemox_official.main(argv)))
  lines = _run_cli(capsys, run)
  assert len(lines) == 1 and str(src) in lines[0] and words in lines[0], lines
  assert not (tmp_path / "out" / "params").exists()


ASSEMBLED = {"llm": "safetensors_truncated_half", "clip": "safetensors_header_not_json",
             "hubert": "torch_truncated_half", "face": "torch_code_in_pickle"}


@pytest.mark.parametrize("part", sorted(ASSEMBLED))
def test_assemble_names_the_broken_part(good, tmp_path, capsys, part):
  sources = {name: _copy(path, tmp_path / "src" / name / path.name if path.is_file() else tmp_path / "src" / name)
             for name, path in good.items() if name != "official"}
  kind, _, name = ASSEMBLED[part].partition("_")
  damage, words = (SAFETENSORS if kind == "safetensors" else TORCH)[name]
  broken = sources[part] if part == "face" else sources[part] / CONVERTERS[part][2]
  damage(broken)
  argv = ["--out", str(tmp_path / "parts"), "--preset", "tiny"] + [f"--{k}={v}" for k, v in sources.items()]
  lines = _run_cli(capsys, lambda: __import__("sys").exit(assemble.main(argv)))
  assert len(lines) == 1 and str(broken) in lines[0] and words in lines[0], lines
  assert not (tmp_path / "parts").exists()


def test_the_issue_case_truncated_safetensors_is_one_line_from_the_real_cli(good, tmp_path):
  """Issue 18's report: `python -m converters.qwen2` on a truncated model.safetensors ended in `ValueError: cannot
  reshape array ...`."""
  import subprocess
  import sys

  src = _copy(good["llm"], tmp_path / "src")
  os.truncate(src / "model.safetensors", (src / "model.safetensors").stat().st_size // 2)
  run = subprocess.run([sys.executable, "-m", "converters.qwen2", "--src", str(src), "--out", str(tmp_path / "out")],
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
  assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
  assert f"{src / 'model.safetensors'}: tensor " in run.stderr and "beyond the file's" in run.stderr


def test_nested_state_dicts_and_bf16_become_numpy(tmp_path):
  """The authors' `{"model": state_dict}` nesting: every tensor becomes numpy, bf16 as ml_dtypes.bfloat16
  (torch's own bf16 -> float values compared exactly)."""
  values = torch.tensor([[1.5, -2.25], [3.0, 0.0078125]], dtype=torch.bfloat16)
  torch.save({"model": {"a": values, "inner": {"b": torch.arange(3)}}, "epoch": 7}, tmp_path / "c.pth")
  got = common.read_torch_bin(tmp_path / "c.pth")
  assert got["epoch"] == 7 and got["model"]["a"].dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(got["model"]["a"].astype(np.float32), values.float().numpy())
  np.testing.assert_array_equal(got["model"]["inner"]["b"], [0, 1, 2])
