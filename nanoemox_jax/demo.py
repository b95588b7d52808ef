"""The README's demo: `python -m nanoemox_jax.demo --workdir DIR`.

Foundation stage (until the P2E demo lands): writes a small random Qwen2 checkpoint in the HF
layout (config.json + model.safetensors, the real 151,936-token vocabulary), converts it with
`converters.qwen2`, loads it and runs jitted batched generation on prompts encoded with the real
Qwen2 tokenizer from `../shared/data/qwen2_tokenizer`. The weights are random, so the text is too;
the point is the whole path: files -> converter -> model -> KV-cache decoding -> detokenised text.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from converters.common import flatten_paths
from converters.qwen2 import convert_qwen2
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.infer.generate import generate
from nanoemox_jax.model import qwen2

DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "data" / "qwen2_tokenizer"
DEMO_CONFIG = qwen2.Qwen2Config(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
                                num_key_value_heads=2, head_dim=64, max_position_embeddings=2048)
PROMPTS = ("###Human: How does the speaker feel in this clip? ###Assistant: ",
           "###Human: Describe the emotion of the person. ###Assistant: ",
           "Hi")


def write_random_hf_checkpoint(cfg: qwen2.Qwen2Config, folder: Path, seed: int = 0) -> None:
  """HF-layout folder with random weights (names and [out, in] layouts as `save_pretrained` writes)."""
  rng = np.random.default_rng(seed)
  abstract = flatten_paths(nnx.to_pure_dict(nnx.state(qwen2.abstract_model(cfg), nnx.Param)))
  tensors = {}
  for path, spec in abstract.items():
    name = path.replace("embed_tokens.embedding", "embed_tokens.weight").replace(".kernel", ".weight")
    shape = spec.shape[::-1] if path.endswith(".kernel") else spec.shape
    fill = np.ones(shape) if name.endswith("norm.weight") else 0.02 * rng.standard_normal(shape)
    tensors[name] = fill.astype(np.float32)
  folder.mkdir(parents=True, exist_ok=True)
  save_file(tensors, folder / "model.safetensors")
  (folder / "config.json").write_text(json.dumps(cfg.to_hf(), indent=2))


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="demo_out")
  parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="HF tokenizer folder (vocab.json, merges.txt)")
  parser.add_argument("--max-new-tokens", type=int, default=24)
  args = parser.parse_args(argv)
  work = Path(args.workdir)
  tok = Tokenizer(args.tokenizer)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; tokenizer {args.tokenizer} ({len(tok)} tokens)")

  write_random_hf_checkpoint(DEMO_CONFIG, work / "hf_random_qwen2")
  convert_qwen2(work / "hf_random_qwen2", work / "converted")
  model = qwen2.load(work / "converted")
  print(f"converted {work / 'hf_random_qwen2'} -> {work / 'converted'}")

  ids, mask = tok.encode_batch(PROMPTS)
  stops = tok.stop_sequences("###")
  for label in ("compile + run", "cached run"):
    start = time.perf_counter()
    new = np.asarray(generate(model, ids, mask, args.max_new_tokens, eos_ids=[tok.eos_id], stop_sequences=stops))
    seconds = time.perf_counter() - start
    print(f"{label}: {new.shape[0]} x {new.shape[1]} tokens in {seconds:.2f} s")
  for prompt, row in zip(PROMPTS, new):
    text = tok.decode(row, skip_special_tokens=True).split("###")[0]
    print(f"\nprompt: {prompt!r}\nrandom-weight continuation: {text!r}")


if __name__ == "__main__":
  main()
