"""The typed training config: frozen dataclasses whose fields are the ConfigDict's, field for field.

  Run            one `python -m nanoemox_jax.train` run: paths, model, precision, mesh, the phases and their order
  Phase          one P2E phase: what it trains, where it starts from, its data, optimizer and schedule
  paper(...)     the paper's values (DESIGN.md §2; schedule values from the authors' `configs/phase*.yaml`)
  from_config_dict(c) / to_config_dict(run)   the command line's ConfigDict <-> Run

`configs/*.py` are `to_config_dict(paper(...))`; the CLI turns the ConfigDict (after `--config.x=y`
overrides) back into a `Run` once, and nothing below it sees a ConfigDict. Paths are relative to the
current directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections

from nanoemox_jax.data.pipeline import PHASE3_TASK_WEIGHTS as PHASE3_MIXTURE
from nanoemox_jax.data.tokenizer import BUNDLED
from nanoemox_jax.model import fields, presets
from nanoemox_jax.model.nanoemox import NanoEmoXConfig
from nanoemox_jax.model.mesh import MeshConfig
from nanoemox_jax.train.step import OptimConfig

# Curriculum strategy -> phase order (keys of `Run.phases`); "listed": the phases as given (a phase file).
STRATEGIES = {"p2e": ("phase1a", "phase1b", "phase2", "phase3"), "joint": ("joint",),
              "reverse": ("phase3", "phase2", "phase1b", "phase1a")}
TASK_ORDER = tuple(PHASE3_MIXTURE)  # the order of `Data.task_weights`: mer, ovmer, mir, eri, erg
PHASE3_TASK_WEIGHTS = tuple(float(PHASE3_MIXTURE[t]) for t in TASK_ORDER)  # the paper's phase-3 mixture


@dataclasses.dataclass(frozen=True)
class Paths:
  """Given once per run, used by every phase."""

  parts: str = "checkpoints/nanoemox"  # a model folder of converted parts (`checkpoints.parts`)
  data: str = "data/manifests"  # manifests `<name>_<split>.jsonl` (`python -m nanoemox_jax.data.prepare`)
  tokenizer: str = ""  # "": `<parts>/tokenizer` if present, else the Qwen2 tokenizer shipped with the package
  # The frozen-tower feature store (`data.features`; `python -m nanoemox_jax.data.features build` fills one ahead),
  # shared by phases, resumes and runs that name it; "": `<workdir>/features`.
  features: str = ""

  def features_folder(self, workdir: str | Path) -> Path:
    return Path(self.features) if self.features else Path(workdir) / "features"

  def tokenizer_folder(self) -> Path:
    if self.tokenizer:
      return Path(self.tokenizer)
    return Path(self.parts) / "tokenizer" if (Path(self.parts) / "tokenizer").exists() else BUNDLED


@dataclasses.dataclass(frozen=True)
class Precision:
  tower_dtype: str = "bfloat16"  # frozen towers and LM base; trainable parameters stay fp32
  compute_dtype: str = "bfloat16"  # matmuls; norms, softmax and the loss stay fp32 (fp32: 33.8 GB, over 24 GB)
  remat: bool = False  # rematerialise the LM layers in the backward pass

  def __post_init__(self):
    for name in ("tower_dtype", "compute_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16"):
        raise ValueError(f"precision.{name}={getattr(self, name)!r}: expected 'float32' or 'bfloat16'")


@dataclasses.dataclass(frozen=True)
class Distributed:
  coordinator: str = ""  # host:port of process 0 for multi-host runs ("" = one process)
  num_processes: int = 1
  process_id: int = 0


@dataclasses.dataclass(frozen=True)
class Data:
  train: tuple[str, ...] = ()  # dataset names: `<paths.data>/<name>_train.jsonl`
  eval: tuple[str, ...] = ()  # held-out sets scored at the end: `<paths.data>/<name>_<eval_split>.jsonl`
  eval_split: str = "test"
  task_weights: tuple[float, ...] = ()  # MER, OV-MER, MIR, ERI, ERG shares (TASK_ORDER); (): as the data come
  batch_size: int = 3  # per micro-batch, global
  accumulation: int = 4  # micro-batches per optimizer update
  # Padded lengths: the real annotation files' full-preset rows are 205-316 tokens, so steps of 32 there pad
  # 8.5-9.8% of a micro-batch against 51-60% for (512, 768, 1024) (`benchmarks.padding`); one program each.
  buckets: tuple[int, ...] = (224, 256, 288, 320, 384, 512, 768, 1024)
  workers: int = 2
  media_failure: str = "mask"  # "mask" the modality of an unreadable file, or "skip" the sample
  # Train on the frozen towers' outputs from the feature store (`paths.features`), computing the missing entries
  # once before the phase: 135 KB of disk per distinct media item with the full towers in bf16; with several
  # processes, media are decoded and the towers run in the step (logged).
  cache_features: bool = True

  def __post_init__(self):
    if self.task_weights and len(self.task_weights) != len(TASK_ORDER):
      raise ValueError(f"data.task_weights={self.task_weights} needs one weight per task {TASK_ORDER}")


@dataclasses.dataclass(frozen=True)
class Phase:
  trainable: str  # the `train.phases.trainable` filter: "1a", "1b", "2" or "3"
  init_from: tuple[str, ...] = ()  # earlier phases (folders under --workdir) this one starts from
  seed: int = 42  # the authors' run.seed
  data: Data = Data()
  optim: OptimConfig = OptimConfig(learning_rate=1e-4, steps=1)
  log_every: int = 50
  checkpoint_every: int = 1_000
  keep_checkpoints: int = 3
  # Every `export_every` updates, a model folder `<phase>/exports/step_<N>` that infer loads (the best-of-range
  # protocol of `nanoemox_jax.evaluate --select best`); 0: only the final `<phase>/model`.
  export_every: int = 0
  evaluate: bool = True  # score the held-out sets (data.eval) at the end of the phase
  eval_batch_size: int = 8
  eval_max_new_tokens: int = 32


@dataclasses.dataclass(frozen=True)
class Run:
  phases: dict[str, Phase]
  strategy: str = "listed"  # a key of STRATEGIES, or "listed": every phase of `phases` in order
  baseline: bool = False  # score the starting model on every phase's held-out sets first
  paths: Paths = Paths()
  model: NanoEmoXConfig = NanoEmoXConfig()
  precision: Precision = Precision()
  mesh: MeshConfig = MeshConfig()
  distributed: Distributed = Distributed()

  def __post_init__(self):
    if self.strategy != "listed" and self.strategy not in STRATEGIES:
      raise ValueError(f"strategy={self.strategy!r} is not 'listed' or one of {sorted(STRATEGIES)}")
    missing = [name for name in self.order if name not in self.phases]
    if missing:
      raise ValueError(f"strategy={self.strategy!r} runs {missing}, which config.phases lacks")

  @property
  def order(self) -> tuple[str, ...]:
    """The phases to run, in order."""
    return tuple(self.phases) if self.strategy == "listed" else STRATEGIES[self.strategy]


# name -> (trainable filter, training sets, held-out sets, micro-batch iterations, lr, min lr, warmup lr, phases it
# starts from). The iterations are the authors' (`max_epoch x iters_per_epoch` of their configs/phase*.yaml, each a
# micro-batch of 3, also the paper's "steps"); `paper_phase` turns them into updates of `accumulation` micro-batches.
PAPER = {
    "1a": ("1a", ("cremad", "m3ed"), ("cremad",), 15_000, 3e-4, 1e-4, 1e-6, ()),
    "1b": ("1b", ("ferv39k", "caer"), ("caer",), 25_000, 3e-4, 1e-4, 1e-6, ()),
    "2": ("2", ("mintrec", "mintrec2"), ("mintrec",), 5_000, 1e-5, 1e-5, 5e-7, ("1a", "1b")),
    "3": ("3", ("mercaptionplus", "merr_fine", "mintrec", "mintrec2", "avamerg"), ("mercaptionplus", "mintrec"),
          300_000, 8e-6, 8e-6, 5e-7, ("2",)),
    # Jo-T: every task at once from the initial adapters, LoRA included.
    "joint": ("3", ("cremad", "m3ed", "ferv39k", "caer", "mintrec", "mintrec2", "mercaptionplus", "merr_fine",
                    "avamerg"), ("mercaptionplus", "mintrec"), 345_000, 8e-6, 8e-6, 5e-7, ()),
}

WARMUP_ITERATIONS = 5_000  # the authors' warmup_steps, counted in micro-batch iterations like max_epoch x iters


def phase_key(name: str) -> str:
  """"1a" -> "phase1a" (the key in Run.phases and the folder under --workdir); "joint" stays."""
  return name if name == "joint" else f"phase{name}"


def paper_phase(name: str) -> Phase:
  """The paper's configuration of P2E phase `name` ("1a", "1b", "2", "3" or "joint")."""
  if name not in PAPER:
    raise ValueError(f"unknown phase {name!r}; choose one of {sorted(PAPER)}")
  trainable, train, held_out, iterations, lr, min_lr, warmup_lr, init_from = PAPER[name]
  data = Data(train=train, eval=held_out, task_weights=PHASE3_TASK_WEIGHTS if trainable == "3" else ())
  # The authors' sample budget (iterations x batch 3) in updates of the paper's 4 micro-batches; warmup likewise.
  return Phase(trainable=trainable, init_from=tuple(phase_key(p) for p in init_from), data=data,
               optim=OptimConfig(learning_rate=lr, steps=iterations // data.accumulation,
                                 warmup_steps=WARMUP_ITERATIONS // data.accumulation, warmup_lr=warmup_lr,
                                 min_lr=min_lr))


def paper(names: tuple[str, ...], preset: str = "full", strategy: str = "listed") -> Run:
  """A run of the paper's phases `names` on model preset `preset` (`model.presets`)."""
  return Run(phases={phase_key(n): paper_phase(n) for n in names}, strategy=strategy,
             baseline=strategy != "listed", model=presets.get(preset))


def to_config_dict(run: Run) -> ml_collections.ConfigDict:
  """The ConfigDict that `--config.x=y` overrides act on: the same nested fields as `run`."""
  return ml_collections.ConfigDict(fields.to_dict(run))


def from_config_dict(c: ml_collections.ConfigDict | dict[str, Any]) -> Run:
  """The typed run of a (possibly overridden) ConfigDict. Unknown fields are refused naming the nearest."""
  return fields.from_dict(Run, c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c, where="config")
