"""Frozen encoders: nanoemox_jax's jitted CLIP / HuBERT / FaceXFormer towers vs their PyTorch references.

    python -m benchmarks.encoders [--frames 8] [--clips 8] [--repeats 3] [--size full|small]

Each tower is built with random weights on the PyTorch side (HF `CLIPVisionModel`, HF `HubertModel`,
torchvision `swin_b` + FaceXFormer's fusion written here), saved in its published format, converted by
our converter, loaded, timed on the same batch (fp32 on both sides), checked for agreement, then freed
before the next tower is built. Like for like: both sides return every hidden state (CLIP, HuBERT) or
every Swin stage plus the pooled face vector (FaceXFormer). Our compile time is reported apart.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision
import transformers
from flax import nnx
from torchvision.models.swin_transformer import SwinTransformer

from benchmarks.common import best_time, report
from converters.clip import convert_clip
from converters.facexformer import convert_facexformer
from converters.hubert import convert_hubert
from nanoemox_jax.checkpoints.parts import load_part
from nanoemox_jax.model import hubert
from tests.official_refs import TorchFaceXFormer

CLIP = {"full": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     image_size=224, patch_size=14, hidden_act="quick_gelu"),  # ViT-L/14 @224
        "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                      image_size=224, patch_size=14, hidden_act="quick_gelu")}
HUBERT = {"full": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),  # HuBERT-Large
          "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                        conv_dim=(128,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)}
SWIN = {"small": dict(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])}
FACE_HIDDEN = {"full": 256, "small": 64}


def compiled_forward(model: nnx.Module, call: Callable, *inputs: jax.Array) -> tuple[Callable[[], object], float]:
  """jax.jit over the split state; returns a blocking zero-argument runner and the trace+compile seconds."""
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda state, *xs: call(nnx.merge(graphdef, state), *xs))
  start = time.perf_counter()
  exe = fn.lower(state, *inputs).compile()
  compile_s = time.perf_counter() - start
  return lambda: jax.block_until_ready(exe(state, *inputs)), compile_s


def measure(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> dict:
  """Warm both sides (first call: allocations, oneDNN primitives), then `repeats` runs of each, interleaved
  (PyTorch, ours, PyTorch, ...) so that load from other processes on a shared machine hits both alike;
  the fastest run of each side counts."""
  torch_first, ours_first = best_time(theirs, 1), best_time(ours, 1)
  torch_runs, ours_runs = [], []
  for _ in range(repeats):
    torch_runs.append(best_time(theirs, 1))
    ours_runs.append(best_time(ours, 1))
  return dict(torch_first_s=torch_first, ours_first_s=ours_first, torch_s=min(torch_runs), ours_s=min(ours_runs),
              torch_runs_s=torch_runs, ours_runs_s=ours_runs)


def diff(a, b) -> tuple[float, float]:
  """max |a - b| and that divided by max |b|."""
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  d = float(np.abs(a - b).max())
  return d, d / float(np.abs(b).max())


def free() -> None:
  gc.collect()
  jax.clear_caches()


def bench_clip(size: str, frames: int, repeats: int, tmp: Path) -> dict:
  torch.manual_seed(0)
  hf = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**CLIP[size])).eval()
  hf.save_pretrained(tmp / "clip_hf")
  convert_clip(tmp / "clip_hf", tmp / "clip_jax")
  model = load_part("clip", tmp / "clip_jax")
  image = CLIP[size]["image_size"]
  px = np.random.RandomState(0).randn(frames, 3, image, image).astype(np.float32)
  px_t, px_j = torch.tensor(px), jnp.asarray(px)
  ours, compile_s = compiled_forward(model, lambda m, x: m(x), px_j)

  def theirs():
    with torch.no_grad():
      return hf(pixel_values=px_t, output_hidden_states=True)

  times = measure(ours, theirs, repeats)
  a, b = ours(), theirs()
  assert len(a) == len(b.hidden_states), (len(a), len(b.hidden_states))
  d, rel = diff(a[-1], b.last_hidden_state.numpy())
  out = dict(times, compile_s=compile_s, max_abs_diff=d, rel_diff=rel, items=frames,
             attn=hf.config._attn_implementation, params=sum(p.numel() for p in hf.parameters()))
  return out  # the models go with this frame; main() collects them before the next tower


def bench_hubert(size: str, clips: int, samples: int, repeats: int, tmp: Path) -> dict:
  torch.manual_seed(0)
  hf = transformers.HubertModel(transformers.HubertConfig(**HUBERT[size])).eval()
  hf.save_pretrained(tmp / "hubert_hf")
  convert_hubert(tmp / "hubert_hf", tmp / "hubert_jax")
  model = load_part("hubert", tmp / "hubert_jax")
  raw = (0.1 * np.random.RandomState(1).randn(clips, samples)).astype(np.float32)
  wav = np.asarray(hubert.normalize_waveform(raw))  # what the feature extractor gives both sides, outside timing
  wav_t, wav_j = torch.tensor(wav), jnp.asarray(wav)
  ours, compile_s = compiled_forward(model, lambda m, x: m(x), wav_j)

  def theirs():
    with torch.no_grad():
      return hf(wav_t, output_hidden_states=True)

  times = measure(ours, theirs, repeats)
  a, b = ours(), theirs()
  assert len(a.hidden_states) == len(b.hidden_states), (len(a.hidden_states), len(b.hidden_states))
  d, rel = diff(a.last_hidden_state, b.last_hidden_state.numpy())
  out = dict(times, compile_s=compile_s, max_abs_diff=d, rel_diff=rel, items=clips, frames=int(a.frame_mask.shape[1]),
             attn=hf.config._attn_implementation, params=sum(p.numel() for p in hf.parameters()))
  return out  # the models go with this frame; main() collects them before the next tower


def bench_face(size: str, frames: int, repeats: int, tmp: Path) -> dict:
  torch.manual_seed(0)
  if size == "full":  # torchvision's swin_b builder, random weights
    tv = torchvision.models.swin_b(weights=None)
  else:
    tv = SwinTransformer(patch_size=[4, 4], window_size=[7, 7], stochastic_depth_prob=0.5, **SWIN[size])
  ref = TorchFaceXFormer(tv, FACE_HIDDEN[size]).eval()
  del tv
  torch.save({"state_dict_backbone": ref.state_dict()}, tmp / "model.pt")
  convert_facexformer(tmp / "model.pt", tmp / "face_jax")
  model = load_part("face", tmp / "face_jax")
  px = np.random.RandomState(2).randn(frames, 3, 224, 224).astype(np.float32)
  px_t, px_j = torch.tensor(px), jnp.asarray(px)
  ours, compile_s = compiled_forward(model, lambda m, x: m(x), px_j)

  def theirs():
    with torch.no_grad():
      return ref(px_t)

  times = measure(ours, theirs, repeats)
  a, (stages, pooled) = ours(), theirs()
  d, rel = diff(a.pooled, pooled.numpy())
  d4, _ = diff(a.stages[-1], stages[-1].numpy())
  out = dict(times, compile_s=compile_s, max_abs_diff=d, rel_diff=rel, stage4_max_abs_diff=d4, items=frames,
             params=sum(p.numel() for p in ref.parameters()))
  return out  # the models go with this frame; main() collects them before the next tower


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=8, help="frames per batch (CLIP and face)")
  parser.add_argument("--clips", type=int, default=8, help="audio clips per batch (HuBERT)")
  parser.add_argument("--samples", type=int, default=32000, help="samples per clip (16 kHz)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--size", choices=["full", "small"], default="full")
  args = parser.parse_args(argv)
  torch.set_num_threads(os.cpu_count())
  load_before = os.getloadavg()
  results = {}
  with tempfile.TemporaryDirectory() as tmp:  # one tower at a time: built, converted, timed, freed
    for name, run in [("clip", lambda d: bench_clip(args.size, args.frames, args.repeats, d)),
                      ("hubert", lambda d: bench_hubert(args.size, args.clips, args.samples, args.repeats, d)),
                      ("face", lambda d: bench_face(args.size, args.frames, args.repeats, d))]:
      folder = Path(tmp) / name
      folder.mkdir()
      results[name] = run(folder)
      r = results[name]
      torch_runs, ours_runs = (" ".join(f"{t:.2f}" for t in r[f"{side}_runs_s"]) for side in ("torch", "ours"))
      print(f"{name}: torch runs [{torch_runs}] s, ours runs [{ours_runs}] s, compile {r['compile_s']:.1f} s, "
            f"max |diff| {r['max_abs_diff']:.2e} (rel {r['rel_diff']:.1e}), load {os.getloadavg()[0]:.2f}",
            flush=True)
      shutil.rmtree(folder)  # the saved and converted copies: disk back before the next tower
      free()
  load_after = os.getloadavg()

  full = args.size == "full"
  labels = {"clip": ("CLIP ViT-L/14 @224" if full else "CLIP (small config)", "frames/s", "last hidden"),
            "hubert": ("HuBERT-Large" if full else "HuBERT (small config)", "clips/s", "last hidden"),
            "face": ("FaceXFormer Swin-B" if full else "FaceXFormer (small Swin)", "frames/s", "pooled")}
  rows = []
  for name, r in results.items():
    title, unit, what = labels[name]
    n = r["items"]
    rows += [
        (f"{title}: PyTorch {torch.__version__}", f"{n / r['torch_s']:,.2f} {unit}",
         f"{r['torch_s']:.3f} s / batch of {n}" + (f", attn={r['attn']}" if "attn" in r else "")),
        (f"{title}: nanoemox_jax", f"{n / r['ours_s']:,.2f} {unit}",
         f"{r['ours_s']:.3f} s / batch of {n}, compile {r['compile_s']:.1f} s"),
        (f"{title}: ours / PyTorch", f"{r['torch_s'] / r['ours_s']:.2f}x",
         f"max |diff| {what} {r['max_abs_diff']:.2e} (rel {r['rel_diff']:.1e})"),
    ]
  rows.append(("load average (1 min)", f"{load_before[0]:.2f} -> {load_after[0]:.2f}", "before -> after the run"))
  report("encoders", rows, dict(size=args.size, frames=args.frames, clips=args.clips, samples=args.samples,
                                repeats=args.repeats, torch=torch.__version__, threads=torch.get_num_threads(),
                                load_before=load_before, load_after=load_after,
                                **{f"{name}_{k}": v for name, r in results.items() for k, v in r.items()}))


if __name__ == "__main__":
  main()
