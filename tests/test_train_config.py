"""The paper's phase configs against the authors' runner: sample budget, warmup and clipping."""

from __future__ import annotations

import pytest

from nanoemox_jax.train.config import paper

# The authors' configs/phase*.yaml: max_epoch x iters_per_epoch micro-batch iterations of batch 3, warmup_steps
# 5,000 iterations, no gradient clipping (phase 3: 60 x 5,000 = 300k iterations = 900k samples).
AUTHORS_SAMPLES = {"phase1a": 15_000 * 3, "phase1b": 25_000 * 3, "phase2": 5_000 * 3, "phase3": 300_000 * 3}


@pytest.mark.parametrize("name", sorted(AUTHORS_SAMPLES))
def test_paper_phases_train_the_authors_samples_in_updates_of_twelve(name):
  phase = paper(("1a", "1b", "2", "3")).phases[name]
  per_update = phase.data.batch_size * phase.data.accumulation
  assert per_update == 12  # the paper's batch 3 x accumulation 4
  assert phase.optim.steps * per_update == AUTHORS_SAMPLES[name]
  assert phase.optim.warmup_steps * per_update == 5_000 * 3
  assert phase.optim.clip_norm == 0
