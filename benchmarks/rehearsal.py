"""A full-size rehearsal of the whole user path, on random weights, through the real command lines.

    python -m benchmarks.rehearsal --out DIR [--preset full|tiny] [--stage-timeout S] [--keep]

Stages, each a subprocess of the real CLI (timed; peak RSS from `os.wait4`'s rusage of that process):

  sources     random pretrained models written in the exact layouts of the four hub repositories into a hub cache
              (`DIR/hub`, `models--ORG--NAME/snapshots/REV/`, as tests/test_assemble.py does at the tiny size):
              Qwen/Qwen2.5-1.5B-Instruct (config.json + generation_config.json verbatim, model.safetensors in
              bfloat16 as the repository ships it, tied embeddings so no lm_head; the Qwen2.5 tokenizer layout:
              the Qwen2 vocab.json/merges.txt + a tokenizer_config.json with its 22 added tokens),
              openai/clip-vit-large-patch14 (the whole CLIPModel, text tower included, fp32 model.safetensors),
              TencentGameMate/chinese-hubert-large (config.json + fp32 pytorch_model.bin with the positional conv's
              weight norm under the old `weight_g`/`weight_v` names, as that file has) and
              kartiknarayan/facexformer `ckpts/model.pt` (fp32 `state_dict_backbone`: torchvision Swin-B + fusion;
              the task decoder, which the converter skips, is left out). Weights: transformers' random init
              (`from_config`; torchvision's for the Swin). With `--preset full` the config.json files hold the real
              repositories' values (`SOURCES_FULL` below); `--preset tiny` writes the tiny preset's sizes.
  prepare     `python -m nanoemox_jax.data.prepare` on the real annotation files in ../shared/data/real (CREMA-D,
              MIntRec and MIntRec2.0 as the authors ship them, MERR-Fine's first 150 entries, MIntRec's official
              dev.tsv), then the media of every record are mapped to the real files (see `remap_media`).
  assemble    `python -m converters.assemble --out DIR/parts --preset P` with the default hub ids, offline
              (HF_HUB_OFFLINE=1, HF_HUB_CACHE=DIR/hub).
  summary     `python -m nanoemox_jax.train.summary --preset P`: the trainable count of each phase.
  train       `python -m nanoemox_jax.train --config configs/p2e.py:P --workdir DIR/run` + overrides: one update
              of each P2E phase (1a, 1b, 2 from 1a+1b, 3 from 2), batch 1, accumulation 1, one bucket per phase
              (the smallest multiple of 64 that holds the phase's longest `[BOS] prompt target [EOS]`), workers 0,
              no held-out scoring or baseline; bf16 towers and compute as the paper config, remat on. Per phase:
              wall time between phase ends (results.json written), peak sampled RSS in that window, results.json's
              `trainable_params` and fit seconds.
  export      `python -m nanoemox_jax.train.export --workdir DIR/run --phase phase3 --step 1 --out DIR/phase3_export`.
  infer       `python -m nanoemox_jax.infer --checkpoint DIR/phase3_export --task mer --video RAVDESS.mp4 --json`
              (16 new tokens at most).
  infer_manifest  the same CLI over the first `SCORED_RECORDS` records of the prepared MIntRec dev manifest
              (checkpoint DIR/run/phase3/model, the phase's own model folder).
  evaluate    `python -m nanoemox_jax.evaluate --benchmark mintrec` on those predictions.
  dry_run     `python -m nanoemox_jax.train --config configs/p2e.py:P --dry-run` with the same parts, data and
              overrides as `train` (last: it compiles each phase's update twice and runs it three times).

Data per phase (`PHASE_DATA`): the paper's sets that ../shared holds; phase 1b's FERV39k / CAER and phase 3's
MER-Caption+ / AvaMERG have no real annotation sample there, so 1b trains on CREMA-D (an audio-visual corpus of
acted emotions) and phase 3 on MERR-Fine + MIntRec + MIntRec2.0 with the paper's task weights (the absent tasks
are left out of the mixture).

Media: ../shared holds one real face video (RAVDESS actor 01, with its audio track) and five real audio clips
(four RAVDESS 48 kHz stereo, one EMO-DB 16 kHz mono). `remap_media` rewrites every prepared manifest in place:
each record's `video` becomes the RAVDESS video (the audio-only CREMA-D file's records too, so that every update
runs all three towers at full size), its `audio` the next real clip in turn where the reader gave an audio path
(CREMA-D), and stays null where it did not (MIntRec, MERR: the video's own track is decoded, as in real use).

Writes DIR/rehearsal.json (stages, per-phase numbers, the answer, the scores), appends it to
benchmarks/results/rehearsal.jsonl and prints a table. Any failed stage stops the rehearsal with its log's tail
and exit code 1. Needs the test extras (torch, torchvision, transformers). `--preset full` needs ~15 GB of disk
(sources 6.4 GB, parts 5.6 GB, checkpoints) and 17.4 GB of RAM at its peak (phase 3's update); run it alone. On this
2-core CPU (2026-12-05, nothing else running): full 59.5 min (train 24.4, dry run 21.1), tiny 9 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
VIDEO = REAL / "video" / "ravdess_01-01-01-01-01-01-01.mp4"
RESULTS = ROOT / "benchmarks" / "results"
GB = 1e9

# The four default sources of `converters.assemble` (DEFAULTS there), and their config.json as the hub has them.
REPOS = {"llm": "Qwen/Qwen2.5-1.5B-Instruct", "clip": "openai/clip-vit-large-patch14",
         "hubert": "TencentGameMate/chinese-hubert-large", "face": "kartiknarayan/facexformer"}
FACE_FILE = "ckpts/model.pt"

QWEN25_1_5B_INSTRUCT = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02, "intermediate_size": 8960,
    "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 12,
    "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
    "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}
QWEN25_GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                     "eos_token_id": [151645, 151643], "repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8,
                     "top_k": 20, "transformers_version": "4.37.0"}
CLIP_VIT_L14 = {
    "_name_or_path": "clip-vit-large-patch14/", "architectures": ["CLIPModel"], "initializer_factor": 1.0,
    "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": 768,
    "text_config": {"attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2,
                    "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
                    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
                    "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 12,
                    "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768, "vocab_size": 49408},
    "text_config_dict": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                         "num_hidden_layers": 12, "projection_dim": 768},
    "torch_dtype": "float32", "transformers_version": None,
    "vision_config": {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 1024,
                      "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02,
                      "intermediate_size": 4096, "layer_norm_eps": 1e-05, "model_type": "clip_vision_model",
                      "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24, "patch_size": 14,
                      "projection_dim": 768},
    "vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                           "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768}}
CHINESE_HUBERT_LARGE = {  # transformers 4.16.2's dump: no feat_proj_layer_norm field (HF's default, true, applies)
    "_name_or_path": "hubert-large", "activation_dropout": 0.0, "apply_spec_augment": True,
    "architectures": ["HubertModel"], "attention_dropout": 0.1, "bos_token_id": 1, "classifier_proj_size": 256,
    "conv_bias": True, "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum", "ctc_zero_infinity": False, "do_stable_layer_norm": True, "eos_token_id": 2,
    "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0, "feat_extract_norm": "layer",
    "feat_proj_dropout": 0.1, "final_dropout": 0.1, "gradient_checkpointing": False, "hidden_act": "gelu",
    "hidden_dropout": 0.1, "hidden_dropout_prob": 0.1, "hidden_size": 1024, "initializer_range": 0.02,
    "intermediate_size": 4096, "layer_norm_eps": 1e-05, "layerdrop": 0.1, "mask_feature_length": 10,
    "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_prob": 0.05, "model_type": "hubert",
    "num_attention_heads": 16, "num_conv_pos_embedding_groups": 16, "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7, "num_hidden_layers": 24, "pad_token_id": 0, "torch_dtype": "float32",
    "transformers_version": "4.16.2", "use_weighted_layer_sum": False, "vocab_size": 32}
FACEXFORMER_SWIN_B = {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), "window_size": 7,
                      "patch_size": 4, "decoder_hidden_size": 256}  # torchvision swin_b + FaceXFormer's 256 fusion
SOURCES_FULL = {"llm": QWEN25_1_5B_INSTRUCT, "clip": CLIP_VIT_L14, "hubert": CHINESE_HUBERT_LARGE,
                "face": FACEXFORMER_SWIN_B}

# (dataset, annotation file or folder under ../shared/data/real, split, manifest written under DIR/data)
PREPARE = (("cremad", "nanoemox_official/crema_d_annotations.json", "train", "cremad_train"),
           ("mintrec", "nanoemox_official/train_MIntRec_ann.json", "train", "mintrec_train"),
           ("mintrec2", "nanoemox_official/train_MIntRec2_ann.json", "train", "mintrec2_train"),
           ("merr_fine", "nanoemox_official/MERR_fine_grained.first150.json", "train", "merr_fine_train"),
           ("mintrec", "mintrec", "dev", "mintrec_dev"))
PHASE_DATA = {"phase1a": ("cremad",), "phase1b": ("cremad",), "phase2": ("mintrec", "mintrec2"),
              "phase3": ("merr_fine", "mintrec", "mintrec2")}
SCORED, SCORED_RECORDS, BENCHMARK = "mintrec_dev", 2, "mintrec"
MAX_NEW_TOKENS = 16


def source_configs(preset: str) -> dict[str, dict[str, Any]]:
  """Part -> the config its random source is written from: the real repositories' (full), or the tiny preset's
  sizes in the same layouts (a whole CLIPModel with a small text tower, as tests/test_assemble.py writes)."""
  if preset == "full":
    return SOURCES_FULL
  from nanoemox_jax.model import presets

  cfg = presets.get(preset)
  text = dict(vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
              bos_token_id=0, eos_token_id=1, pad_token_id=1, model_type="clip_text_model")
  vision = {k: v for k, v in cfg.clip.to_hf().items() if k != "architectures"}
  sw = cfg.face.swin
  return {"llm": cfg.llm.to_hf(),
          "clip": {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 16, "text_config": text,
                   "vision_config": vision},
          "hubert": cfg.hubert.to_hf(),
          "face": {"embed_dim": sw.embed_dim, "depths": sw.depths, "num_heads": sw.num_heads,
                   "window_size": sw.window_size, "patch_size": sw.patch_size,
                   "decoder_hidden_size": cfg.face.decoder_hidden_size}}


def write_sources(cache: Path, preset: str) -> dict[str, int]:
  """The four random sources in hub-cache layout under `cache` (the `sources` stage, run in its own process)."""
  import torch

  from tests.hf_models import (hub_snapshot, write_random_clip, write_random_facexformer, write_random_hubert,
                               write_random_qwen2)
  from tests.test_tokenizer import qwen25_tokenizer

  configs, counts = source_configs(preset), {}
  tokenizer = qwen25_tokenizer(cache.parent / "qwen25_tokenizer")
  began = time.perf_counter()
  counts["llm"] = write_random_qwen2(hub_snapshot(cache, REPOS["llm"]), configs["llm"], tokenizer,
                                     dtype=torch.bfloat16, generation_config=QWEN25_GENERATION)
  counts["clip"] = write_random_clip(hub_snapshot(cache, REPOS["clip"]), configs["clip"])
  counts["hubert"] = write_random_hubert(hub_snapshot(cache, REPOS["hubert"]), configs["hubert"])
  counts["face"] = write_random_facexformer(hub_snapshot(cache, REPOS["face"]) / FACE_FILE, **configs["face"])
  print(json.dumps({"parameters": counts, "seconds": time.perf_counter() - began}))
  return counts


def remap_media(manifest: Path, audio_clips: Sequence[Path], start: int = 0) -> int:
  """Rewrites `manifest` with every record's video = the RAVDESS video and its audio (where the reader gave one)
  = the next of `audio_clips` in turn, from `start`. Returns the next index into `audio_clips`."""
  from nanoemox_jax.data.manifest import read_jsonl, write_jsonl

  records, i = [], start
  for r in read_jsonl(manifest):
    audio = None
    if r.audio is not None:
      audio, i = str(audio_clips[i % len(audio_clips)]), i + 1
    records.append(dataclasses.replace(r, video=str(VIDEO), audio=audio))
  write_jsonl(records, manifest)
  return i


def phase_buckets(parts: Path, data: Path, multiple: int = 64) -> dict[str, int]:
  """Per phase, the smallest multiple of `multiple` that holds the longest `[BOS] prompt target [EOS]` of its
  training sets (any question paraphrase), so that no target is cut."""
  import random

  from nanoemox_jax.checkpoints.parts import model_config
  from nanoemox_jax.data import pipeline, templates
  from nanoemox_jax.data.manifest import read_jsonl
  from nanoemox_jax.data.tokenizer import Tokenizer

  tokenizer = Tokenizer(parts / "tokenizer")
  counts = pipeline.template_counts(tokenizer, model_config(parts))
  longest: dict[str, int] = {}
  for name in {n for sets in PHASE_DATA.values() for n in sets}:
    n = 0
    for r in read_jsonl(data / f"{name}_train.jsonl"):
      for seed in range(8):  # paraphrases are drawn per sample; 8 draws cover the pools' lengths in practice
        prompt, target = templates.build_example(r, rng=random.Random(seed), **counts)
        n = max(n, 2 + len(tokenizer.encode(prompt)) + len(tokenizer.encode(target)))
        if r.task not in ("eri", "ovmer", "msa") and not (r.task == "mer" and r.split != "train"):
          break  # a fixed question
    longest[name] = n
  return {p: -(-max(longest[n] for n in sets) // multiple) * multiple for p, sets in PHASE_DATA.items()}


def train_overrides(parts: Path, data: Path, buckets: dict[str, int]) -> list[str]:
  flags = [f"--config.paths.parts={parts}", f"--config.paths.data={data}", "--config.baseline=False",
           "--config.precision.tower_dtype=bfloat16", "--config.precision.compute_dtype=bfloat16",
           "--config.precision.remat=True"]
  for phase, sets in PHASE_DATA.items():
    p = f"--config.phases.{phase}"
    flags += [f"{p}.data.train={tuple(sets)!r}", f"{p}.data.eval=()", f"{p}.data.batch_size=1",
              f"{p}.data.accumulation=1", f"{p}.data.buckets=({buckets[phase]},)", f"{p}.data.workers=0",
              f"{p}.optim.steps=1", f"{p}.evaluate=False"]
  return flags


# ---------------------------------------------------------------------------------------------------------- stages


@dataclasses.dataclass
class Stage:
  name: str
  commands: list[list[str]]  # run one after the other (prepare: one per annotation file)
  returncode: int | None = None
  seconds: float = 0.0
  peak_rss_gb: float = 0.0  # of the stage's process (ru_maxrss from wait4); the largest of a stage's processes
  log: str = ""
  samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (time, RSS GB), every 0.5 s

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "commands": self.commands, "returncode": self.returncode,
            "seconds": round(self.seconds, 2), "peak_rss_gb": round(self.peak_rss_gb, 3), "log": self.log}


class StageFailed(Exception):
  pass


def _rss_gb(pid: int) -> float | None:
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024 / GB
  except OSError:
    return None
  return None


def run(stage: Stage, command: list[str], logs: Path, env: dict[str, str] | None, timeout: float) -> Stage:
  """Run `command` from the repository root, its output appended to `logs/<name>.log`; adds its time, peak RSS,
  RSS samples and exit code to `stage` (over several commands: times add up, peaks take the maximum)."""
  logs.mkdir(parents=True, exist_ok=True)
  log = logs / f"{stage.name}.log"
  stage.log = str(log)
  print(f"[{datetime.datetime.now():%H:%M:%S}] {stage.name}: {' '.join(command)}", flush=True)
  began = time.perf_counter()
  with open(log, "a") as out:
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    done = threading.Event()

    def sample() -> None:
      while not done.wait(0.5):
        rss = _rss_gb(proc.pid)
        if rss is not None:
          stage.samples.append((time.time(), rss))

    def kill() -> None:
      print(f"{stage.name}: over its {timeout:.0f} s limit; killing it", flush=True)
      os.killpg(proc.pid, signal.SIGKILL)

    sampler, timer = threading.Thread(target=sample, daemon=True), threading.Timer(timeout, kill)
    sampler.start()
    timer.start()
    try:
      _, status, usage = os.wait4(proc.pid, 0)
    finally:
      timer.cancel()
      done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
  stage.seconds += time.perf_counter() - began
  stage.peak_rss_gb = max(stage.peak_rss_gb, usage.ru_maxrss * 1024 / GB)
  stage.returncode = proc.returncode
  if proc.returncode != 0:
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise StageFailed(f"stage {stage.name} failed with exit code {proc.returncode} after "
                      f"{time.perf_counter() - began:.0f} s: {' '.join(command)}\n--- last lines of {log} ---\n"
                      f"{tail}")
  print(f"    {stage.name}: {stage.seconds:.1f} s, peak RSS {stage.peak_rss_gb:.2f} GB", flush=True)
  return stage


def output(stage: Stage) -> str:
  return Path(stage.log).read_text(errors="replace")


def summary_counts(text: str) -> dict[str, int]:
  """`phase 1a   12,345` lines of `nanoemox_jax.train.summary` -> {"phase1a": 12345, ...}."""
  return {f"phase{m[1]}": int(m[2].replace(",", "")) for m in re.finditer(r"^\s+phase (\S+)\s+([\d,]+)$", text, re.M)}


def dry_run_numbers(text: str) -> dict[str, dict[str, Any]]:
  """Per phase of the dry run's report: trainable parameters and the measured update's seconds."""
  out: dict[str, dict[str, Any]] = {}
  for block in re.split(r"^== ", text, flags=re.M)[1:]:
    name = block.split(":", 1)[0]
    params = re.search(r"trainable filter \S+, ([\d,]+) parameters", block)
    update = re.search(r"one update ([\d.]+) s", block)
    out[name] = {"trainable_params": int(params[1].replace(",", "")) if params else None,
                 "update_seconds": float(update[1]) if update else None}
  return out


def phase_table(run_dir: Path, train: Stage, began: float) -> dict[str, dict[str, Any]]:
  """Per trained phase: results.json's numbers, wall time since the previous phase ended, peak sampled RSS."""
  phases, previous = {}, began
  for name in PHASE_DATA:
    results = run_dir / name / "results.json"
    r = json.loads(results.read_text())
    ended = results.stat().st_mtime
    window = [rss for t, rss in train.samples if previous <= t <= ended]
    phases[name] = {"trainable_params": r["trainable_params"], "fit_seconds": round(r["seconds"], 2),
                    "wall_seconds": round(ended - previous, 1), "peak_rss_gb": round(max(window, default=0.0), 3),
                    "loss": r["final"].get("loss"), "bucket": None}
    previous = ended
  return phases


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
  cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
  return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def rehearse(out: Path, preset: str, timeout: float) -> dict[str, Any]:
  """Every stage (see the module docstring); the record written to out/rehearsal.json."""
  py = sys.executable
  out = out.absolute()
  cache, data, parts, run_dir, logs = out / "hub", out / "data", out / "parts", out / "run", out / "logs"
  audio_clips = sorted((REAL / "audio").glob("*.wav"))
  if not VIDEO.is_file() or not audio_clips:
    raise StageFailed(f"{REAL}: the real media (video/{VIDEO.name}, audio/*.wav) are not there")
  record: dict[str, Any] = {"benchmark": "rehearsal", "preset": preset, "out": str(out),
                            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            "machine": machine(), "stages": []}
  stages: list[Stage] = []
  began_all = time.perf_counter()
  offline = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(out / "hf_home"),
                          "PYTHONUNBUFFERED": "1"}

  def stage(name: str, *commands: list[str], env: dict[str, str] | None = None) -> Stage:
    s = Stage(name, list(commands))
    stages.append(s)
    try:
      for command in commands:
        run(s, command, logs, env or offline, timeout)
    finally:
      record["stages"] = [x.to_json() for x in stages]
      (out / "rehearsal.json").write_text(json.dumps(record, indent=1))
    return s

  try:
    s = stage("sources", [py, "-m", "benchmarks.rehearsal", "--out", str(out), "--preset", preset,
                          "--write-sources"])
    record["source_parameters"] = json.loads(output(s).strip().splitlines()[-1])["parameters"]

    prepare = [[py, "-m", "nanoemox_jax.data.prepare", "--dataset", d, "--src", str(REAL / src), "--split", split,
                "--out", str(data / f"{name}.jsonl")] for d, src, split, name in PREPARE]
    stage("prepare", *prepare)
    i = 0
    for *_, name in PREPARE:
      i = remap_media(data / f"{name}.jsonl", audio_clips, i)
    from nanoemox_jax.data.manifest import read_jsonl, write_jsonl
    scored = data / f"{SCORED}_first{SCORED_RECORDS}.jsonl"
    write_jsonl(read_jsonl(data / f"{SCORED}.jsonl")[:SCORED_RECORDS], scored)
    record["manifests"] = {name: len(read_jsonl(data / f"{name}.jsonl")) for *_, name in PREPARE}

    stage("assemble", [py, "-m", "converters.assemble", "--out", str(parts), "--preset", preset])
    record["parts_gb"] = round(sum(f.stat().st_size for f in parts.rglob("*") if f.is_file()) / GB, 3)

    s = stage("summary", [py, "-m", "nanoemox_jax.train.summary", "--preset", preset])
    record["summary_params"] = summary_counts(output(s))

    buckets = phase_buckets(parts, data)
    record["buckets"] = buckets
    config = ["--config", f"configs/p2e.py:{preset}"]
    overrides = train_overrides(parts, data, buckets)
    train_began = time.time()
    train = stage("train", [py, "-m", "nanoemox_jax.train", *config, "--workdir", str(run_dir), *overrides])
    record["phases"] = phase_table(run_dir, train, train_began)
    for name, b in buckets.items():
      record["phases"][name]["bucket"] = b

    export = out / "phase3_export"
    stage("export", [py, "-m", "nanoemox_jax.train.export", "--workdir", str(run_dir), "--phase", "phase3", "--step",
                     "1", "--out", str(export)])

    s = stage("infer", [py, "-m", "nanoemox_jax.infer", "--checkpoint", str(export), "--task", "mer", "--video",
                        str(VIDEO), "--max-new-tokens", str(MAX_NEW_TOKENS), "--json"])
    answer = next((json.loads(line) for line in reversed(output(s).splitlines()) if line.startswith("{")), None)
    if answer is None or answer.get("task") != "mer" or answer.get("text") is None:
      raise StageFailed(f"infer printed no answer line (see {s.log})")
    record["infer_answer"] = {k: answer.get(k) for k in ("text", "answer", "gates")}

    preds = out / "preds.jsonl"
    stage("infer_manifest", [py, "-m", "nanoemox_jax.infer", "--checkpoint", str(run_dir / "phase3" / "model"),
                             "--manifest", str(scored), "--out", str(preds), "--batch-size", str(SCORED_RECORDS),
                             "--max-new-tokens", str(MAX_NEW_TOKENS)])
    stage("evaluate", [py, "-m", "nanoemox_jax.evaluate", "--benchmark", BENCHMARK, "--predictions", str(preds),
                       "--labels", str(scored), "--out", str(out / "eval_report")])
    scores = json.loads((out / "eval_report" / "scores.json").read_text())
    record["evaluate"] = {"predictions": sum(1 for _ in open(preds)), "average": scores.get("average"),
                          "selected": {d: {k: r.get(k) for k in ("main", "scores", "n", "missing")}
                                       for d, r in scores.get("selected", {}).items()}}

    # Last: the costliest stage (per phase two compilations and three updates), so that a run cut short by time
    # has measured the user path first.
    s = stage("dry_run", [py, "-m", "nanoemox_jax.train", *config, "--dry-run", *overrides])
    record["dry_run"] = dry_run_numbers(output(s))
  except StageFailed as e:
    record["failed"] = str(e).splitlines()[0]
    raise
  finally:
    record["total_seconds"] = round(time.perf_counter() - began_all, 1)
    record["stages"] = [x.to_json() for x in stages]
    (out / "rehearsal.json").write_text(json.dumps(record, indent=1))
  mismatch = {p: (v["trainable_params"], record["summary_params"].get(p)) for p, v in record["phases"].items()
              if v["trainable_params"] != record["summary_params"].get(p)}
  record["params_match_summary"] = not mismatch
  (out / "rehearsal.json").write_text(json.dumps(record, indent=1))
  if mismatch:
    raise StageFailed(f"trainable parameters differ from nanoemox_jax.train.summary: {mismatch}")
  return record


def machine() -> str:
  try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
  except (OSError, StopIteration):
    cpu = "cpu"
  mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
  return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB"


def print_report(record: dict[str, Any]) -> None:
  print(f"\nrehearsal, preset {record['preset']}, {record['machine']} ({record['date']})")
  rows = [(s["name"], "ok" if s["returncode"] == 0 else f"exit {s['returncode']}", f"{s['seconds']:.1f}",
           f"{s['peak_rss_gb']:.2f}") for s in record["stages"]]
  print(table(rows, ("stage", "status", "seconds", "peak RSS GB")))
  if record.get("phases"):
    print()
    rows = [(p, f"{v['trainable_params']:,}", f"{record['summary_params'].get(p, 0):,}", v["bucket"],
             f"{v['wall_seconds']:.1f}", f"{v['fit_seconds']:.1f}",
             f"{(record.get('dry_run', {}).get(p) or {}).get('update_seconds') or float('nan'):.1f}",
             f"{v['peak_rss_gb']:.2f}", f"{v['loss']:.4g}" if v["loss"] is not None else "-")
            for p, v in record["phases"].items()]
    print(table(rows, ("phase", "trainable", "summary", "bucket", "wall s", "fit s", "dry-run update s",
                       "peak RSS GB (sampled)", "loss")))
  if "infer_answer" in record:
    print(f"\ninfer answer ({MAX_NEW_TOKENS} tokens at most): {record['infer_answer']['text']!r}")
  if "evaluate" in record:
    print(f"evaluate {BENCHMARK}: {json.dumps(record['evaluate']['selected'])}")
  print(f"total {record['total_seconds']:.0f} s; {record['out']}/rehearsal.json")


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, type=Path, help="working folder (must be new or empty)")
  parser.add_argument("--preset", default="full", choices=("full", "tiny"))
  parser.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds one stage may take")
  parser.add_argument("--keep", action="store_true", help="keep the sources, parts and run (default: deleted "
                      "after a successful rehearsal, leaving the logs, manifests and rehearsal.json)")
  parser.add_argument("--write-sources", action="store_true", help=argparse.SUPPRESS)  # the `sources` stage
  args = parser.parse_args(argv)
  if args.write_sources:
    write_sources(args.out.absolute() / "hub", args.preset)
    return 0
  if args.out.exists() and any(args.out.iterdir()):
    print(f"error: --out {args.out} is not empty", file=sys.stderr)
    return 2
  args.out.mkdir(parents=True, exist_ok=True)
  try:
    record = rehearse(args.out, args.preset, args.stage_timeout)
  except StageFailed as e:
    print(f"\nerror: {e}", file=sys.stderr)
    path = args.out / "rehearsal.json"
    if path.exists():
      print_report(json.loads(path.read_text()))
    return 1
  print_report(record)
  RESULTS.mkdir(exist_ok=True)
  with open(RESULTS / "rehearsal.jsonl", "a") as f:
    f.write(json.dumps(record) + "\n")
  if not args.keep:
    for name in ("hub", "parts", "run", "phase3_export", "hf_home"):
      shutil.rmtree(args.out / name, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
