"""A checkpoint saved by the authors' Nano-EmoX training code -> our trainable parameters (Orbax).

    python -m converters.nanoemox_official --src checkpoint_XXXX.pth --out DIR [--preset official_code] [--partial]

Their `_save_checkpoint` keeps every parameter with `requires_grad` plus every buffer of the whole
model, under `{"model": state_dict}`. Key table (theirs -> ours):

  video_frame_position_embedding.weight            -> frame_position_embedding
  video_query_tokens / audio_query_tokens          -> video_qformer.query_tokens / audio_qformer.query_tokens
  {video,audio}_Qformer.bert.embeddings.LayerNorm  -> {video,audio}_qformer.layernorm
  {..}_Qformer.bert.encoder.layer.N.{attention,crossattention}.self.X
                                                   -> {..}_qformer.encoder.layer.N.{..}.attention.X (HF Blip2 names)
  {..}_Qformer.bert.encoder.layer.N.{..}.output.*, intermediate_query.*, output_query.*  -> same names
  video_proj / audio_llama_proj                    -> video_proj / audio_proj
  audio_position_embedding.weight                  -> audio_position_embedding
  facial_encoder.query                             -> face_temporal.query
  facial_encoder.attn.in_proj_{weight,bias}        -> face_temporal.attn.{q,k,v}_proj (split in three)
  facial_encoder.attn.out_proj                     -> face_temporal.attn.out_proj
  facial_encoder.face_proj.{0,3}                   -> face_temporal.fc{1,2}
  multi_multiscale_fusion.{audio,visual}_proj      -> fusion.{audio,visual}_proj
  multi_multiscale_fusion.cross_attns.I.in_proj_*  -> fusion.cross_attns.I.{q,k,v}_proj (split in three)
  multi_multiscale_fusion.ffns.I.{0,1,4}           -> fusion.ffns.I.{norm,fc1,fc2}
  multi_multiscale_fusion.gate_mlp.{0,3}           -> fusion.gate_mlp.fc{1,2}
  multi_llama_proj                                 -> fusion.llm_proj
  (fusion_type="attention": multi_{video,audio}_embs, attention_mlp, fc_att -> fusion.* same names)
  llama_model.base_model.model.model.layers.N.M.lora_{A,B}.default.weight -> llm.model.layers.N.M.lora_{a,b}
Skipped and counted: buffers (`position_ids`, `relative_position_index`, `inv_freq`), parameters
nothing uses (`image_llama_proj`, `multi_{audio,video}_embs` with expert fusion, `facial_encoder.lynorm`)
and any frozen tower or LM weight (those come from their own converters).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from converters.common import ConversionError, Rule, convert, expected_params, read_torch_bin, transpose, write

_Q = r"(video|audio)_Qformer\.bert\."
_LORA = r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.\w+_proj)\.lora_"


def linear(source: str, target: str) -> tuple[Rule, Rule]:
  """torch `nn.Linear` at `source` (regex, without `.weight`) -> our `Linear` at `target` (a re.sub template)."""
  return Rule(source + r"\.weight", target + ".kernel", transpose), Rule(source + r"\.bias", target + ".bias")


RULES = (
    Rule(r"video_frame_position_embedding\.weight", "frame_position_embedding"),
    Rule(r"audio_position_embedding\.weight", "audio_position_embedding"),
    Rule(r"(video|audio)_query_tokens", r"\1_qformer.query_tokens"),
    Rule(_Q + r"embeddings\.LayerNorm\.(weight|bias)", r"\1_qformer.layernorm.\2"),
    *linear(_Q + r"encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)",
            r"\1_qformer.encoder.layer.\2.\3.attention.\4"),
    Rule(_Q + r"encoder\.layer\.(\d+)\.([\w.]+)\.LayerNorm\.(weight|bias)", r"\1_qformer.encoder.layer.\2.\3.LayerNorm.\4"),
    *linear(_Q + r"encoder\.layer\.(\d+)\.([\w.]+)\.dense", r"\1_qformer.encoder.layer.\2.\3.dense"),
    *linear(r"video_proj", "video_proj"),
    *linear(r"audio_llama_proj", "audio_proj"),
    Rule(r"facial_encoder\.query", "face_temporal.query"),
    *linear(r"facial_encoder\.attn\.([qkv]_proj|out_proj)", r"face_temporal.attn.\1"),
    *linear(r"facial_encoder\.face_proj\.0", "face_temporal.fc1"),
    *linear(r"facial_encoder\.face_proj\.3", "face_temporal.fc2"),
    *linear(r"multi_multiscale_fusion\.(audio_proj|visual_proj|cross_attns\.\d+\.(?:[qkv]_proj|out_proj))",
            r"fusion.\1"),
    Rule(r"multi_multiscale_fusion\.ffns\.(\d+)\.0\.(weight|bias)", r"fusion.ffns.\1.norm.\2"),
    *linear(r"multi_multiscale_fusion\.ffns\.(\d+)\.1", r"fusion.ffns.\1.fc1"),
    *linear(r"multi_multiscale_fusion\.ffns\.(\d+)\.4", r"fusion.ffns.\1.fc2"),
    *linear(r"multi_multiscale_fusion\.gate_mlp\.0", "fusion.gate_mlp.fc1"),
    *linear(r"multi_multiscale_fusion\.gate_mlp\.3", "fusion.gate_mlp.fc2"),
    *linear(r"(multi_video_embs|multi_audio_embs|attention_mlp|fc_att)", r"fusion.\1"),
    *linear(r"multi_llama_proj", "fusion.llm_proj"),
    Rule(_LORA + r"A\.default\.weight", r"llm.model.layers.\1.\2.lora_a", transpose),
    Rule(_LORA + r"B\.default\.weight", r"llm.model.layers.\1.\2.lora_b", transpose),
)
BUFFERS = (r".*\.position_ids", r".*\.relative_position_index", r".*\.inv_freq")
UNUSED = (r"image_llama_proj\..*", r"facial_encoder\.lynorm\..*")
UNUSED_WITH_EXPERTS = (r"multi_(audio|video)_embs\..*",)
TOWERS = (r"visual_encoder\..*", r"acoustic_encoder\..*", r"facial_encoder\.facexformer\..*",
          r"llama_model\.(?!.*lora_[AB]).*")


def split_packed_attention(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torch `nn.MultiheadAttention` packs q, k, v as `in_proj_{weight,bias}` [3D, ...]: split into q/k/v_proj."""
  out = {}
  for key, value in tensors.items():
    match = re.fullmatch(r"(.*)\.in_proj_(weight|bias)", key)
    if match is None:
      out[key] = value
      continue
    if value.shape[0] % 3:
      raise ConversionError(f"{key}: packed in_proj of shape {tuple(value.shape)} is not divisible in three")
    for name, part in zip(("q_proj", "k_proj", "v_proj"), np.split(np.asarray(value), 3)):
      out[f"{match[1]}.{name}.{match[2]}"] = part
  return out


def convert_official(src: str | Path, out: str | Path, dtype: Any = np.float32, preset: str = "official_code",
                     partial: bool = False) -> Path:
  from nanoemox_jax.model.presets import get
  from nanoemox_jax.model.nanoemox import abstract_model

  src, cfg = Path(src), get(preset)
  obj = read_torch_bin(src)
  state = obj.get("model", obj) if isinstance(obj, dict) else obj
  if not isinstance(state, dict) or not state:
    raise ConversionError(f"{src}: expected a state dict under 'model'")
  ignore = BUFFERS + UNUSED + TOWERS + (UNUSED_WITH_EXPERTS if cfg.fusion_type == "experts" else ())
  params, report = convert(split_packed_attention(state), RULES, expected_params(abstract_model(cfg)),
                           source=str(src), ignore=ignore, dtype=dtype, allow_missing=partial)
  return write(out, params, {"preset": preset}, report, str(src))


def main(argv: list[str] | None = None) -> None:
  from nanoemox_jax.model.presets import PRESETS

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--src", required=True, help="the authors' checkpoint_*.pth")
  parser.add_argument("--out", required=True, help="output folder (Orbax trainable parameters + config.json)")
  parser.add_argument("--preset", default="official_code", choices=sorted(PRESETS))
  parser.add_argument("--partial", action="store_true", help="accept a phase-1/2 checkpoint; absent groups listed")
  args = parser.parse_args(argv)
  try:
    out = convert_official(args.src, args.out, preset=args.preset, partial=args.partial)
  except ConversionError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {out}; skipped and counted: {len(json.loads((out / 'conversion.json').read_text())['ignored'])}")


if __name__ == "__main__":
  main()
