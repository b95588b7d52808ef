"""Bad command lines for `python -m nanoemox_jax.train`: each ends with exit 2 and one `error:` line naming the flag,
field or file, never a traceback, before any model is built (a missing parts folder: when the model is built). The runs start together (each is a fresh process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASE = "configs/phase1a.py:tiny"
P = "--config.phases.phase1a."

CASES = {  # name -> (arguments after `-m nanoemox_jax.train`, words the error line holds)
    "misspelled_leaf": ([f"{P}optim.stepz=3"], "optim has no field 'stepz'; did you mean 'steps'?"),
    "misspelled_group": ([f"{P}optimm.steps=3"], "has no field 'optimm'; did you mean 'optim'?"),
    "unknown_phase": (["--config.phases.phase9.seed=1"], "config.phases has no field 'phase9'"),
    "misspelled_top_level": (["--config.pathz.parts=x"], "config has no field 'pathz'; did you mean 'paths'?"),
    "field_below_a_leaf": ([f"{P}seed.value=1"], "(not a group)"),
    "int_not_a_number": ([f"{P}optim.steps=abc"], "optim.steps=abc"),
    "float_not_a_number": ([f"{P}optim.learning_rate=fast"], "learning_rate=fast"),
    "choice_not_allowed": (["--config.model.fusion.weighting=bogus"], "weighting='bogus', expected 'gate' or"),
    "dtype_not_allowed": (["--config.precision.compute_dtype=float16"], "compute_dtype"),
    "tuple_unclosed": ([f"{P}data.buckets=(256,"], "data.buckets"),
    "config_file_missing": (["--config=configs/phase7.py"], "configs/phase7.py is not a file"),
    "config_preset_unknown": (["--config=configs/phase1a.py:huge"], "huge"),
    "workdir_missing": (None, "--workdir is required"),
    "unknown_flag": (["--resum"], "resum"),
    "parts_folder_missing": (["--config.paths.parts={tmp}/checkpoints/nanoemox"],
                             "checkpoints/nanoemox does not exist: make it with `python -m converters.assemble --out"),
}
STARTS = {"parts_folder_missing"}  # gets as far as writing WORKDIR/config.json


def test_bad_command_lines_are_one_line_and_exit_2(tmp_path):
  procs = {}
  for name, (extra, _) in CASES.items():
    args = ["--config", PHASE] if extra is None or not any(a.startswith("--config=") for a in extra) else []
    args += [] if extra is None else ["--workdir", str(tmp_path / name), *(a.format(tmp=tmp_path) for a in extra)]
    procs[name] = subprocess.Popen([sys.executable, "-m", "nanoemox_jax.train", *args], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  failures = []
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.strip()]
    words = CASES[name][1]
    if not (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]
            and "Traceback" not in err and (name in STARTS or not (tmp_path / name).exists())):
      failures.append(f"{name}: exit {proc.returncode}, stderr {err[-600:]!r}")
  assert not failures, "\n".join(failures)
