"""Shared settings and the training tests' small demo corpus with tiny-preset parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
