"""Pretrained parts -> one model folder (`checkpoints.load`, `python -m nanoemox_jax.infer`, training's `paths.parts`).

    python -m converters.assemble --out parts [--preset full|official_code|tiny|demo]
        [--llm Qwen/Qwen2.5-1.5B-Instruct] [--clip openai/clip-vit-large-patch14]
        [--hubert TencentGameMate/chinese-hubert-large] [--face kartiknarayan/facexformer/ckpts/model.pt]
        [--adapters AUTHORS.pth [--partial]] [--dtype float32|bfloat16]

A source is a local folder or file, or a hub model `ORG/NAME[/FILE][@REVISION]` fetched by `huggingface_hub`
into its standard cache (resumable, with progress bars; HF_HOME / HF_HUB_CACHE move the cache, HF_HUB_OFFLINE=1
reads only the cache). From a hub model only what the converters read is fetched: the json/txt files and the
*.safetensors weights, else pytorch_model*.bin. The defaults above are the towers and LM the paper uses.

Writes OUT/ (through OUT.partial/, renamed when everything succeeded; OUT must be new or an empty folder):
  llm/ clip/ hubert/ face/  the per-part converters' folders (`converters.qwen2`, `clip`, `hubert`, `facexformer`)
  tokenizer/                the LM checkpoint's tokenizer files (vocab.json + merges.txt and/or tokenizer.json, ...)
  adapters/                 only with --adapters: `converters.nanoemox_official` (--partial: a phase-1/2 checkpoint)
  nanoemox.json             the preset, the placeholder ids of the LM's tokenizer (`token_ids`), and per source its
                            id, hub revision (null for a local one) and the sha256 of its weight files (`sources`)

Every tower the preset's modalities use must be there (every preset uses all four); without --adapters the Q-Formers,
projections, fusion and LoRA are initialised from the load's seed, which is what P2E phase 1 starts from. A part whose
architecture is not the preset's is refused before any weights are fetched or converted (the face's sizes are read
from its tensors, so it is checked right after its conversion, before the others'), naming the part, the fields and
the file.
Errors exit with code 2 and one `error:` line (a checkpoint that does not fit lists its tensors, one per line).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import huggingface_hub
import ml_dtypes
import numpy as np
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError

from converters.clip import convert_clip
from converters.common import ConversionError, checkpoint_files, read_hf_config
from converters.facexformer import convert_facexformer
from converters.hubert import convert_hubert
from converters.nanoemox_official import convert_official
from converters.qwen2 import convert_qwen2
from nanoemox_jax.checkpoints.parts import PARTS, config_differences, read_part_config
from nanoemox_jax.data.tokenizer import Tokenizer
from nanoemox_jax.model import presets
from nanoemox_jax.model.nanoemox import NanoEmoXConfig, abstract_model

DEFAULTS = {"llm": "Qwen/Qwen2.5-1.5B-Instruct", "clip": "openai/clip-vit-large-patch14",
            "hubert": "TencentGameMate/chinese-hubert-large", "face": "kartiknarayan/facexformer/ckpts/model.pt"}
CONVERTERS: dict[str, Callable[..., Path]] = {"face": convert_facexformer, "clip": convert_clip,
                                              "hubert": convert_hubert, "llm": convert_qwen2}  # face first: see above
HF_PARTS = ("llm", "clip", "hubert")  # an HF folder whose config.json can be checked before converting
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")
HUB_ID = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<file>[^@]+))?(?:@(?P<revision>[\w./-]+))?")
METADATA = ["*.json", "*.txt"]
WEIGHTS = ("*.safetensors", "pytorch_model*.bin")  # the second only where the first finds nothing


class AssembleError(Exception):
  """Bad input: one line naming the part, the field and the file."""


def resolve(part: str, source: str, weights: bool = True) -> tuple[Path, str | None]:
  """(local path, hub commit or None) of source `source` of `part`. A hub model is fetched into the cache: its
  FILE, or its json/txt files and (with `weights`) its *.safetensors, else its pytorch_model*.bin."""
  local = Path(source).expanduser()
  if local.exists():
    return local.absolute(), None
  match = HUB_ID.fullmatch(source)
  if match is None:
    raise AssembleError(f"--{part} {source}: no such file or folder, and not a hub id ORG/NAME[/FILE][@REVISION]")
  repo, file, revision = match["repo"], match["file"], match["revision"]
  try:
    if file:
      path = Path(huggingface_hub.hf_hub_download(repo, file, revision=revision))
    else:
      path = Path(huggingface_hub.snapshot_download(repo, revision=revision, allow_patterns=METADATA))
      for pattern in WEIGHTS if weights else ():
        path = Path(huggingface_hub.snapshot_download(repo, revision=commit(path), allow_patterns=METADATA + [pattern]))
        if any(path.glob(pattern)):
          break
  except (EntryNotFoundError, HfHubHTTPError, HFValidationError, OSError) as e:
    reason = "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    raise AssembleError(f"--{part} {source}: not a local file or folder, and the hub gives no such model: "
                        f"{reason}") from None
  return path, commit(path)


def commit(path: Path) -> str:
  """The commit of a file or folder in the hub cache: .../snapshots/COMMIT/[FILE]."""
  return path.parts[len(path.parts) - path.parts[::-1].index("snapshots")]


def sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 24):
      digest.update(chunk)
  return digest.hexdigest()


def record(source: str, path: Path, revision: str | None, files: Sequence[Path]) -> dict[str, Any]:
  """What nanoemox.json keeps of one source: its id, hub revision and the sha256 of `files` (names relative to it)."""
  return {"source": source, "revision": revision,
          "sha256": {str(f.relative_to(folder(path))): sha256(f) for f in files}}


def refuse_mismatch(part: str, found: Any, preset: str, cfg: NanoEmoXConfig, where: Path) -> None:
  """AssembleError naming each field where part config `found` differs from preset `preset`'s."""
  differences = config_differences(found, getattr(cfg, part))
  if differences:
    raise AssembleError(f"{part}: " + ", ".join(f"{field} {a!r} != preset {preset}'s {b!r}"
                                                for field, a, b in differences) + f" ({where})")


def assemble(out: str | Path, preset: str = "full", sources: dict[str, str] | None = None,
             adapters: str | None = None, partial: bool = False, dtype: Any = np.float32) -> Path:
  """Write model folder `out` (see the module docstring); `sources` overrides DEFAULTS per part."""
  out, sources = Path(out).absolute(), DEFAULTS | (sources or {})
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise AssembleError(f"--out {out}: already exists and is not an empty folder; choose a new one")
  cfg = presets.get(preset)
  model = abstract_model(cfg)
  needed = [name for name in PARTS if getattr(model, name) is not None]  # the towers the modalities use
  configs = {name: folder(resolve(name, sources[name], weights=False)[0]) for name in HF_PARTS if name in needed}
  for name, path in configs.items():  # a wrong part is refused before any weights are fetched
    refuse_mismatch(name, read_hf_config(path, PARTS[name].read_config), preset, cfg, path / "config.json")
  llm = configs["llm"]
  try:
    token_ids = Tokenizer(llm).model_token_ids
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise AssembleError(f"llm tokenizer: {e}") from None
  if max(token_ids.values()) >= cfg.llm.vocab_size:
    raise AssembleError(f"llm: the tokenizer's placeholder ids {token_ids} do not fit vocab_size "
                        f"{cfg.llm.vocab_size} ({llm / 'config.json'})")
  resolved = {name: resolve(name, sources[name]) for name in needed}
  adapter_source = resolve("adapters", adapters) if adapters is not None else None

  staging = out.with_name(out.name + ".partial")
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  try:
    spec: dict[str, Any] = {"preset": preset, "token_ids": token_ids, "sources": {}}
    for name, convert in CONVERTERS.items():
      if name in resolved:
        path, revision = resolved[name]
        convert(path, staging / name, dtype)
        if name not in HF_PARTS:
          refuse_mismatch(name, read_part_config(name, staging / name), preset, cfg, path)
        spec["sources"][name] = record(sources[name], path, revision, checkpoint_files(path))
    (staging / "tokenizer").mkdir()
    copied = [llm / f for f in TOKENIZER_FILES if (llm / f).exists()]
    for f in copied:
      shutil.copyfile(f, staging / "tokenizer" / f.name)
    spec["sources"]["tokenizer"] = record(sources["llm"], llm, resolved["llm"][1], copied)
    if adapter_source is not None:
      path, revision = adapter_source
      convert_official(path, staging / "adapters", dtype, preset=preset, partial=partial)
      spec["sources"]["adapters"] = record(adapters, path, revision, [path])
    (staging / "nanoemox.json").write_text(json.dumps(spec, indent=2))
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if out.exists():
    out.rmdir()  # empty: checked above
  staging.rename(out)
  return out


def folder(path: Path) -> Path:
  """An HF checkpoint's folder: `path` itself, or the folder of a weight file."""
  return path if path.is_dir() else path.parent


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m converters.assemble", description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the model folder to write (must not exist yet)")
  parser.add_argument("--preset", default="full", choices=sorted(presets.PRESETS), help="model.presets name")
  for name, default in DEFAULTS.items():
    parser.add_argument(f"--{name}", default=default, help=f"local folder/file or hub id (default: {default})")
  parser.add_argument("--adapters", help="the authors' checkpoint_*.pth (default: adapters start at random)")
  parser.add_argument("--partial", action="store_true", help="--adapters is a phase-1/2 checkpoint")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="stored parameter dtype")
  args = parser.parse_args(argv)
  try:
    out = assemble(args.out, args.preset, {name: getattr(args, name) for name in DEFAULTS}, args.adapters,
                   args.partial, np.dtype(np.float32) if args.dtype == "float32" else ml_dtypes.bfloat16)
  except (AssembleError, ConversionError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
