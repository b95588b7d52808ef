"""LoRA fine-tuning step of the language model: nanoemox_jax (jitted, donated) vs transformers + PEFT (PyTorch).

    python -m benchmarks.lm_train_step [--batch 4 --seq 256 --answer 64 --rank 16 --steps 3 --size --dtype]

Same random Qwen2 weights (HF init, saved and converted by `converters.qwen2`), the base weights in `--dtype`
on both sides (`--size full`: Qwen2.5-1.5B; PyTorch on CUDA when a GPU is visible; with bf16, PEFT keeps the
adapters in bf16 and ours in fp32, so the warm-up losses agree to bf16 rounding only),
LoRA r / alpha on q, k, v, o, gate, up, down (PEFT `LoraConfig`, B = 0 at init on both sides), AdamW
(lr 1e-4, weight decay 0.05) on the adapters only, the same batch: an SFT batch whose loss covers the last
`--answer` tokens of each row (prompt labels -100). The first step's losses must agree. A second pair of
rows runs the loss on every token (`--answer` = seq), where neither side can skip vocabulary logits.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import peft
import torch
import transformers
from flax import nnx

from benchmarks.common import best_time, report
from benchmarks.lm_generate import SIZES, add_size_args, hf_and_ours
from nanoemox_jax.model import qwen2
from nanoemox_jax.model.lora import LoRAConfig, apply_lora
from nanoemox_jax.model.nanoemox import IGNORE, labelled_positions, token_nll

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR, WEIGHT_DECAY = 1e-4, 0.05


def make_step(num_targets: int):
  """(model, optimizer, ids, mask, labels) -> loss: one AdamW update of the LoRA parameters, state donated.

  Logits only at the (at most `num_targets`) labelled positions of each row, like `NanoEmoX.target_nll`.
  """

  @nnx.jit(donate_argnums=(0, 1))
  def step(model: qwen2.Qwen2ForCausalLM, optimizer: nnx.Optimizer, ids, mask, labels):
    graphdef, lora, rest = nnx.split(model, nnx.LoRAParam, ...)

    def loss_fn(lora):
      m = nnx.merge(graphdef, lora, rest)
      hidden, _ = m.hidden_states(ids, mask)
      pos, targets = labelled_positions(labels, num_targets)  # [B, K]
      total, count = token_nll(m.logits(jnp.take_along_axis(hidden, pos[..., None], axis=1)), targets)
      return total / jnp.maximum(count, 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(lora)
    optimizer.update(model, grads)
    return loss

  return step


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--answer", type=int, default=64)
  parser.add_argument("--rank", type=int, default=16)
  parser.add_argument("--alpha", type=float, default=32.0)
  parser.add_argument("--steps", type=int, default=3)
  add_size_args(parser)
  args = parser.parse_args(argv)
  hf, model, device = hf_and_ours(args)
  apply_lora(model, LoRAConfig(rank=args.rank, alpha=args.alpha), rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adamw(LR, weight_decay=WEIGHT_DECAY), wrt=nnx.LoRAParam)
  hf = peft.get_peft_model(hf, peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS,
                                                lora_dropout=0.0))
  hf.train()
  torch_opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=LR, weight_decay=WEIGHT_DECAY)
  ids = np.random.RandomState(0).randint(0, SIZES[args.size]["vocab_size"], (args.batch, args.seq))
  mask = np.ones_like(ids)
  rows, extra = [], dict(batch=args.batch, seq=args.seq, rank=args.rank, size=args.size, dtype=args.dtype,
                         torch_device=device, load=os.getloadavg()[0])
  for answer in (args.answer, args.seq):
    labels = np.where(np.arange(args.seq) >= args.seq - answer, ids, IGNORE)
    step = make_step(min(answer, args.seq - 1))
    j_ids, j_mask, j_labels = map(jnp.asarray, (ids, mask, labels))
    t_ids, t_mask, t_labels = (torch.tensor(x, device=device) for x in (ids, mask, labels))

    def ours():
      return float(step(model, optimizer, j_ids, j_mask, j_labels))

    def theirs():
      loss = hf(input_ids=t_ids, attention_mask=t_mask, labels=t_labels).loss
      loss.backward()
      torch_opt.step()
      torch_opt.zero_grad(set_to_none=True)
      return loss.item()  # .item() waits for the GPU

    loss_ours, loss_theirs = ours(), theirs()  # compile / warm up; equal weights, same updates: equal losses
    t_ours, t_hf = best_time(ours, args.steps), best_time(theirs, args.steps)
    what = f"loss on {answer} of {args.seq} tokens"
    rows += [(f"transformers {transformers.__version__} + PEFT {peft.__version__}, {device} {args.dtype} ({what})",
              f"{args.batch / t_hf:.2f} samples/s", f"{t_hf:.3f} s/step"),
             (f"nanoemox_jax ({what})", f"{args.batch / t_ours:.2f} samples/s", f"{t_ours:.3f} s/step"),
             ("speed-up", f"{t_hf / t_ours:.2f}x", f"losses at warm-up {loss_ours:.5f} / {loss_theirs:.5f}")]
    key = "sft" if answer < args.seq else "all_tokens"
    extra[key] = dict(answer=answer, hf_s=t_hf, ours_s=t_ours, speedup=t_hf / t_ours, loss_ours=loss_ours,
                      loss_hf=loss_theirs)
  rows.append(("load average (1 min) at start", f"{extra['load']:.2f}", "2 cores shared"))
  report("lm_train_step", rows, extra)


if __name__ == "__main__":
  main()
