"""Shared fixtures: tiny random HF models saved offline and converted by the real converters."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax

jax.config.update("jax_default_matmul_precision", "highest")
