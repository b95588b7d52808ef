"""Shared settings and the training tests' small demo corpus with tiny-preset parts."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One persistent XLA compilation cache per test session (removed at exit), which the tests' subprocesses inherit:
# tests that build the same tiny-preset programs load them instead of compiling them again (tests/test_train_loop.py
# 339 -> 229 s on 2 cores). A JAX_COMPILATION_CACHE_DIR set by the caller is used instead. A program loaded from
# the cache still records a backend compilation event, so compilation counts are unchanged
# (`benchmarks.phase_step.count_compilations`); tests/test_reproducible.py runs its processes without the cache.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _xla_cache = tempfile.mkdtemp(prefix="nanoemox-tests-xla-")
  atexit.register(shutil.rmtree, _xla_cache, True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_xla_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                    JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30))  # a size limit turns on jax's file lock

import jax

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory) -> dict[str, Path]:
  """A small demo corpus (2 items per class) and tiny-preset parts with a 2-step stand-in LM, made once per
  session for the training tests (tests/test_train_loop.py, test_reproducible.py, test_kill_resume.py)."""
  from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
  from nanoemox_jax.demo import parts as demo

  root = tmp_path_factory.mktemp("assets")
  manifests = demo.ensure_corpus(root / "corpus", seed=0, per_class=2)
  model = demo.ensure_model(root / "model", "tiny", Tokenizer(BUNDLED), root / "corpus", lm_steps=2)
  return {"corpus": root / "corpus", "manifests": manifests, "model": model}
