"""The training config shared by every P2E phase (`configs/phase*.py`, `configs/p2e.py`).

`phase(name)` gives the paper's values for one phase (DESIGN.md §2; schedule values from the authors'
`configs/phase*.yaml`); `demo(config)` switches a phase to the `demo` model preset and the synthetic
corpus, sized to run all four phases on a 2-core CPU in minutes. Paths are config values, relative to
the working directory (data.root, model.checkpoint, tokenizer) or to `--workdir` (demo folders).
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# name -> (trainable filter, training manifests, steps, lr, min lr, warmup lr, phases it starts from)
PAPER = {
    "1a": ("1a", ("cremad", "m3ed"), 15_000, 3e-4, 1e-4, 1e-6, ()),
    "1b": ("1b", ("ferv39k", "caer"), 25_000, 3e-4, 1e-4, 1e-6, ()),
    "2": ("2", ("mintrec", "mintrec2"), 5_000, 1e-5, 1e-5, 5e-7, ("1a", "1b")),
    "3": ("3", ("mercaptionplus", "merr_fine", "mintrec", "mintrec2", "avamerg"), 300_000, 8e-6, 8e-6, 5e-7, ("2",)),
    # Jo-T: every task at once from the initial adapters, LoRA included.
    "joint": ("3", ("cremad", "m3ed", "ferv39k", "caer", "mintrec", "mintrec2", "mercaptionplus", "merr_fine",
                    "avamerg"), 345_000, 8e-6, 8e-6, 5e-7, ()),
}
# Held-out sets scored at the end of a phase (manifest names).
EVAL = {"1a": ("cremad_test",), "1b": ("caer_test",), "2": ("mintrec_test",), "3": ("mercaptionplus_test", "mintrec_test"),
        "joint": ("mercaptionplus_test", "mintrec_test")}
DEMO_DATASETS = {"1a": ("cremad",), "1b": ("caer",), "2": ("mintrec",),
                 "3": ("mercaptionplus", "mintrec", "avamerg"),
                 "joint": ("cremad", "caer", "mintrec", "mercaptionplus", "avamerg")}


def phase(name: str) -> ml_collections.ConfigDict:
  """The paper's configuration of P2E phase `name` ("1a", "1b", "2", "3" or "joint")."""
  if name not in PAPER:
    raise ValueError(f"unknown phase {name!r}; choose one of {sorted(PAPER)}")
  trainable, datasets, steps, lr, min_lr, warmup_lr, init_from = PAPER[name]
  c = ml_collections.ConfigDict()
  c.name = "joint" if name == "joint" else f"phase{name}"  # the phase's folder under --workdir
  c.trainable = trainable  # train.phases.trainable filter
  c.init_from = [f"phase{p}" for p in init_from]  # folders (under --workdir) of the phases this one starts from
  c.seed = 42  # the authors' run.seed

  c.model = ml_collections.ConfigDict()
  c.model.preset = "full"  # configs/model.py
  c.model.checkpoint = "checkpoints/nanoemox"  # converted parts: nanoemox.json + clip/ hubert/ face/ llm/
  c.model.tower_dtype = "bfloat16"  # frozen towers and LM base; trainable parameters stay fp32
  c.model.compute_dtype = "bfloat16"  # matmuls; norms, softmax and the loss stay fp32 (fp32: 33.8 GB, over 24 GB)
  c.model.remat = False
  c.model.demo_lm_steps = 0  # >0 (demo only): pretrain the stand-in LM on the corpus text this many steps

  c.data = ml_collections.ConfigDict()
  c.data.root = "data/manifests"  # manifests from `python -m nanoemox_jax.data.prepare`
  c.data.manifests = {d: f"{d}_train.jsonl" for d in datasets}
  c.data.eval = {m: f"{m}.jsonl" for m in EVAL[name]}
  c.data.task_weights = name in ("3", "joint")  # phase 3: MER:OV-MER:MIR:ERI:ERG = 18:28:5:31:18
  c.data.demo_corpus = ""  # demo only: folder (under --workdir) of the synthetic corpus, written if missing
  c.data.demo_per_class = 12  # demo only: training items per label
  c.data.tokenizer = str(SHARED / "qwen2_tokenizer")
  c.data.batch_size = 3  # per micro-batch, global
  c.data.accumulation = 4  # micro-batches per optimizer update
  c.data.buckets = (512, 768, 1024)
  c.data.workers = 2
  c.data.media_failure = "mask"
  # Run the frozen towers once per distinct media item before the phase and train on their cached outputs
  # (`data.features`): host memory 135 KB per item with the full towers in bf16; ignored (logged) with
  # several processes.
  c.data.cache_features = False

  c.optim = ml_collections.ConfigDict()
  c.optim.steps = steps  # optimizer updates
  c.optim.learning_rate = lr
  c.optim.min_lr = min_lr
  c.optim.warmup_lr = warmup_lr
  c.optim.warmup_steps = 5_000
  c.optim.weight_decay = 0.05
  c.optim.clip_norm = 1.0
  c.optim.max_nonfinite = 10  # consecutive skipped (non-finite) updates that stop the run

  c.mesh = ml_collections.ConfigDict()
  c.mesh.fsdp = 1  # devices along the FSDP axis; the rest is data parallel
  c.mesh.fsdp_min_size = 2**18
  c.mesh.shard_frozen = True
  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator = ""  # host:port of process 0 for multi-host runs ("" = one process)
  c.distributed.num_processes = 1
  c.distributed.process_id = 0

  c.log_every = 50
  c.checkpoint_every = 1_000
  c.keep_checkpoints = 3
  c.evaluate = True  # score the held-out sets (data.eval) at the end of the phase
  c.eval_batch_size = 8
  c.eval_max_new_tokens = 32
  return c


def demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`c` on the synthetic corpus with the `demo` preset: random towers, a stand-in LM pretrained on the
  corpus text, and a schedule that learns in tens of updates (the paper's rates are for pretrained towers
  and Qwen2.5 over thousands)."""
  name = c.name.removeprefix("phase")  # "1a", ..., "joint"
  c.model.preset = "demo"
  c.model.checkpoint = "demo_model"  # under --workdir; written (random towers + stand-in LM) if missing
  c.model.tower_dtype = "float32"
  c.model.compute_dtype = "float32"  # the demo figures in README / BUILD_NOTES were measured in fp32
  c.model.demo_lm_steps = 200
  c.data.demo_corpus = "demo_corpus"
  c.data.root = "demo_corpus/manifests"
  c.data.manifests = {d: f"{d}_train.jsonl" for d in DEMO_DATASETS[name]}
  c.data.buckets = (256, 384)
  c.data.workers = 1
  c.data.cache_features = True  # 72-312 distinct clips per phase, each drawn 4-13 times
  c.optim.steps = {"1a": 80, "1b": 80, "2": 50, "3": 150, "joint": 200}[name]
  # Phase 3 at 1e-3: at 3e-3 its LoRA updates undo the earlier phases (held-out MIR 0.21 at 3e-3, 0.46 at 1e-3,
  # 0.38 at 5e-4 from the same phase-2 model, 2026-11-26; MER scores of that day counted ERI records too).
  c.optim.learning_rate = 1e-3 if name == "3" else 3e-3
  c.optim.min_lr = c.optim.learning_rate / 10
  c.optim.warmup_lr = 0.0
  c.optim.warmup_steps = 5
  c.seed = 0
  c.log_every = 5
  c.checkpoint_every = 20
  c.eval_batch_size = 12
  c.eval_max_new_tokens = 16
  return c


def get_phase(name: str, arg: str | None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a phase file: arg None or "" -> the paper's config; "demo" -> `demo(...)`."""
  if arg not in (None, "", "demo"):
    raise ValueError(f"unknown config argument {arg!r} for phase {name}; use none or 'demo'")
  c = phase(name)
  return demo(c) if arg == "demo" else c
