"""Training checkpoints: a restored run continues bit-identically (parameters, optimizer, RNG, data state)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.model.nanoemox import NanoEmoX
from nanoemox_jax.train import phases
from nanoemox_jax.train.checkpoint import Checkpointer
from nanoemox_jax.train.step import OptimConfig, make_optimizer, make_train_step
from tests.test_nanoemox import CFG, make_batch
from tests.test_train_step import stack


def new_run(seed: int):
  model = NanoEmoX(CFG, rngs=nnx.Rngs(seed))  # train mode: dropout draws from the RNG streams
  optimizer = nnx.Optimizer(model, make_optimizer(OptimConfig(1e-3, steps=10, warmup_steps=1)),
                            wrt=phases.trainable("2"))
  return model, optimizer


def trainable(model) -> dict[str, np.ndarray]:
  return {".".join(map(str, p)): np.array(v) for p, v in nnx.to_flat_state(
      nnx.state(model, nnx.All(nnx.Param, nnx.Not(FrozenParam))))}


# slow (61 s on 2 cores): test_train_loop.test_killed_run_resumes_exactly checks the same through the CLI
@pytest.mark.slow
def test_restored_run_continues_identically(tmp_path):
  batches = [stack(make_batch(20 + i, b=4), 2) for i in range(2)]
  step = make_train_step("2")
  model, optimizer = new_run(seed=0)
  step(model, optimizer, batches[0])
  ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
  ckpt.save(1, model, optimizer, data_state={"position": 4}, meta={"phase": "2"})
  ckpt.wait()
  loss = float(step(model, optimizer, batches[1])["loss"])
  expected = trainable(model)

  other, other_opt = new_run(seed=5)  # different initialisation and RNG streams
  other.clip, other.hubert, other.face, other.llm = model.clip, model.hubert, model.face, model.llm  # same towers
  restored = Checkpointer(tmp_path / "ckpt").restore(other, other_opt)
  assert restored == (1, {"position": 4}, {"phase": "2"})
  assert int(other_opt.step[...]) == 1
  again = float(step(other, other_opt, batches[1])["loss"])
  assert again == loss
  got = trainable(other)
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
  assert Checkpointer(tmp_path / "empty").restore(other, other_opt) is None
  assert jax.tree.leaves(nnx.state(other, nnx.RngKey))
