"""Every ablation of the paper from the command line alone (the README's table): each row's flags parse on
`configs/p2e.py` through the real `--config.` override parser, give the change the paper describes at the full
size (`nnx.eval_shape`), and the same switch takes one training step of the tiny preset on a batch from the
real pipeline (demo corpus, real readers), whose prompts follow the ablated config."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from nanoemox_jax.checkpoints.params_io import param_count
from nanoemox_jax.data import pipeline
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.demo import parts as demo
from nanoemox_jax.model.nanoemox import (
  AUDIO_ADAPTER,
  FACE_ADAPTER,
  FUSION,
  VIDEO_ADAPTER,
  NanoEmoX,
  abstract_model,
)
from nanoemox_jax.train import phases
from nanoemox_jax.train.config import Run, from_config_dict
from nanoemox_jax.train.loop import stack
from nanoemox_jax.train.step import make_optimizer, make_train_step

ROOT = Path(__file__).resolve().parents[1]
M = "--config.model."
# (paper, variant, flags, flags on the tiny preset where its 4-layer towers need other layer indices,
#  what the typed config must show)
ABLATIONS = [
    ("Tab. 6", "Jo-T (joint training)", ["--config.strategy=joint"], None,
     lambda r: r.order == ("joint",)),
    ("Tab. 7", "reverse P2E", ["--config.strategy=reverse"], None,
     lambda r: r.order == ("phase3", "phase2", "phase1b", "phase1a")),
    ("Tab. 8", "audio perception (AT)", [f"{M}modalities=AT"], None, lambda r: r.model.modalities == "AT"),
    ("Tab. 8", "visual perception (VT)", [f"{M}modalities=VT"], None, lambda r: r.model.modalities == "VT"),
    ("Tab. 8", "face perception (FT)", [f"{M}modalities=FT"], None, lambda r: r.model.modalities == "FT"),
    ("Tab. 8", "visual + face (VFT)", [f"{M}modalities=VFT"], None, lambda r: r.model.modalities == "VFT"),
    ("Tab. 8", "w/o fusion (AVFT)", [f"{M}modalities=AVFT"], None, lambda r: r.model.modalities == "AVFT"),
    ("Tab. 8", "attention fusion", [f"{M}fusion_type=attention"], None,
     lambda r: r.model.fusion_type == "attention"),
    ("Fig. 6b", "cross-layer fusion", [f"{M}pairing=cross_layer", f"{M}fusion.num_experts=9"], None,
     lambda r: len(r.model.expert_pairs) == 9),
    ("Fig. 6c", "average weighting", [f"{M}fusion.weighting=average"], None,
     lambda r: r.model.fusion.weighting == "average"),
    ("App. Tab. 3", "experts 8/18 x 8/16",
     [f"{M}audio_layers=(8, 18)", f"{M}visual_layers=(8, 16)", f"{M}fusion.num_experts=2"],
     [f"{M}audio_layers=(1, 3)", f"{M}visual_layers=(1, 2)", f"{M}fusion.num_experts=2"],
     lambda r: r.model.expert_pairs == ((8, 8), (18, 16))),
    ("App. Tab. 3", "experts 16/18 x 12/16",
     [f"{M}audio_layers=(16, 18)", f"{M}visual_layers=(12, 16)", f"{M}fusion.num_experts=2"],
     [f"{M}audio_layers=(2, 3)", f"{M}visual_layers=(2, 3)", f"{M}fusion.num_experts=2"],
     lambda r: r.model.expert_pairs == ((16, 12), (18, 16))),
    ("App. Tab. 3", "experts 8/18/22 x 8/16/22", [f"{M}audio_layers=(8, 18, 22)", f"{M}visual_layers=(8, 16, 22)"],
     [f"{M}audio_layers=(1, 3, 4)", f"{M}visual_layers=(1, 2, 4)"],
     lambda r: r.model.expert_pairs == ((8, 8), (18, 16), (22, 22))),
    ("App. Tab. 3", "experts 8/16/18/22 x 8/12/16/22",
     [f"{M}audio_layers=(8, 16, 18, 22)", f"{M}visual_layers=(8, 12, 16, 22)", f"{M}fusion.num_experts=4"],
     [f"{M}audio_layers=(1, 2, 3, 4)", f"{M}visual_layers=(1, 2, 3, 4)", f"{M}fusion.num_experts=4"],
     lambda r: len(r.model.expert_pairs) == 4),
    ("App. Tab. 4", "64 visual tokens", [f"{M}video_qformer.num_query_tokens=64"], None,
     lambda r: r.model.placeholder_counts[r.model.frame_token_id] == 64),
    ("App. Tab. 4", "128 visual tokens", [f"{M}video_qformer.num_query_tokens=128"], None,
     lambda r: r.model.placeholder_counts[r.model.frame_token_id] == 128),
    ("App. Tab. 5", "phase-3 task ratio 0:20:20:25:35", ["--config.phases.phase3.data.task_weights=(0, 20, 20, 25, 35)"],
     None, lambda r: r.phases["phase3"].data.task_weights == (0, 20, 20, 25, 35)),
]
IDS = [f"{paper} {variant}" for paper, variant, *_ in ABLATIONS]
MODEL_ROWS = [row for row in ABLATIONS if any(f.startswith(M) for f in row[2])]


def parse(config: str, overrides: list[str]) -> Run:
  """`overrides` applied to config file `config` by the same absl / ml_collections parser as the CLI."""
  argv = ["train", f"--config={ROOT / config}", *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  return from_config_dict(values.config)


@functools.cache
def full_count(overrides: tuple[str, ...] = ()) -> int:
  return param_count(nnx.state(abstract_model(parse("configs/p2e.py", list(overrides)).model)))


def test_the_readme_table_lists_every_ablation_with_its_flags():
  readme = (ROOT / "README.md").read_text()
  for paper, variant, overrides, *_ in ABLATIONS:
    assert f"| {paper} | {variant} | `{' '.join(overrides)}` |" in readme, (paper, variant)


@pytest.mark.parametrize("row", ABLATIONS, ids=IDS)
def test_the_flags_give_the_ablation_at_full_size(row):
  _, _, overrides, _, expect = row
  run = parse("configs/p2e.py", overrides)
  assert expect(run)
  if row in MODEL_ROWS:  # built abstractly at the full size; only a change of taps keeps the parameter count
    same_size = all(f.split("=")[0] in (f"{M}audio_layers", f"{M}visual_layers") for f in overrides)
    assert (full_count(tuple(overrides)) == full_count()) == same_size


@pytest.fixture(scope="module")
def mer_manifest(tmp_path_factory) -> Path:
  return demo.ensure_corpus(tmp_path_factory.mktemp("corpus"), seed=0, per_class=1) / "mercaptionplus_train.jsonl"


@pytest.mark.slow
@pytest.mark.parametrize("row", MODEL_ROWS, ids=[IDS[ABLATIONS.index(r)] for r in MODEL_ROWS])
def test_the_ablation_takes_a_training_step_on_the_tiny_preset(row, mer_manifest):
  _, _, overrides, tiny_overrides, expect = row
  run = parse("configs/p2e.py:tiny", tiny_overrides or overrides)
  if tiny_overrides is None:
    assert expect(run)
  batches = pipeline.build({"mer": mer_manifest}, Tokenizer(BUNDLED), run.model, pipeline.PipelineConfig(
      batch_size=2, buckets=(512,), seed=0, workers=0))
  batch = next(iter(batches))
  model = NanoEmoX(run.model, rngs=nnx.Rngs(0))
  trainable = phases.trainable("3")
  before = {p: np.array(v) for p, v in nnx.to_flat_state(nnx.state(model, trainable))}
  optimizer = nnx.Optimizer(model, make_optimizer(run.phases["phase3"].optim), wrt=trainable)
  metrics = make_train_step("3")(model, optimizer, stack(batch, 1))
  assert np.isfinite(float(metrics["loss"]))
  after = dict(nnx.to_flat_state(nnx.state(model, trainable)))
  changed = {p[0] for p, v in before.items() if not np.array_equal(np.asarray(after[p]), v)}
  branches = {"A": AUDIO_ADAPTER, "V": VIDEO_ADAPTER, "F": FACE_ADAPTER, "M": FUSION}
  assert changed == {"llm", *(a for m, attrs in branches.items() if m in run.model.modalities for a in attrs)}
  jax.clear_caches()
