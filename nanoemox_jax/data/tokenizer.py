"""The Qwen2 byte-level BPE tokenizer built offline from an HF folder (vocab.json + merges.txt, or tokenizer.json).

Corresponds to HF `Qwen2TokenizerFast`: NFC normalisation, Qwen's pre-tokenizer regex, byte-level
BPE, added tokens from `tokenizer_config.json` (or tokenizer.json's `added_tokens`), plus Nano-EmoX's five
modality placeholders right after them: ids 151646-151650 with Qwen2's 3 added tokens, 151665-151669 with
Qwen2.5's 22. The model's placeholder ids must be this tokenizer's (`Tokenizer.check_model`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

if TYPE_CHECKING:
  from nanoemox_jax.model.nanoemox import NanoEmoXConfig

PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                     r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PLACEHOLDERS = ("<ImageHere>", "<AudioHere>", "<FrameHere>", "<FaceHere>", "<MultiHere>")
# Placeholder -> the `NanoEmoXConfig` field holding its id (<ImageHere> has no branch).
MODEL_FIELDS = {"<AudioHere>": "audio_token_id", "<FrameHere>": "frame_token_id", "<FaceHere>": "face_token_id",
                "<MultiHere>": "multi_token_id"}
QWEN2_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
BUNDLED = Path(__file__).resolve().parent / "qwen2_tokenizer"  # the Qwen2 files shipped with the package


class Tokenizer:
  """encode/decode plus the ids the model needs (BOS `<|im_start|>`, EOS, pad = EOS, placeholders)."""

  def __init__(self, folder: str | Path):
    folder = Path(folder)
    config = {}
    if (folder / "tokenizer_config.json").exists():
      config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab, merges, added, table = _read_bpe(folder, config)
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for content, want in sorted(added.items(), key=lambda kv: kv[1]):
      tok.add_special_tokens([tokenizers.AddedToken(content, special=True, normalized=False)])
      if tok.token_to_id(content) != want:
        raise ValueError(f"{table}: added token {content!r} expects id {want}, "
                         f"got {tok.token_to_id(content)} (ids must follow the vocabulary contiguously)")
    tok.add_special_tokens([tokenizers.AddedToken(p, special=True, normalized=False) for p in PLACEHOLDERS])
    self.folder, self.backend = folder, tok
    self.eos_token = _token_str(config.get("eos_token")) or "<|im_end|>"
    self.eos_id = self.token_id(self.eos_token)
    self.pad_id = self.eos_id  # the authors set pad = eos
    self.bos_id = self.token_id("<|im_start|>")
    self.placeholder_ids = {p: self.token_id(p) for p in PLACEHOLDERS}

  @property
  def model_token_ids(self) -> dict[str, int]:
    """The `NanoEmoXConfig` token-id fields this tokenizer gives: {"audio_token_id": 151647, ...}."""
    return {field: self.placeholder_ids[p] for p, field in MODEL_FIELDS.items()}

  def check_model(self, cfg: NanoEmoXConfig) -> None:
    """Raise ValueError naming each placeholder whose id in `cfg` is not this tokenizer's."""
    wrong = [f"{p} is {self.placeholder_ids[p]} here, {getattr(cfg, field)} in the model ({field})"
             for p, field in MODEL_FIELDS.items() if getattr(cfg, field) != self.placeholder_ids[p]]
    if wrong:
      raise ValueError(f"tokenizer {self.folder}: placeholder ids differ from the model's: " + "; ".join(wrong)
                       + " (a model folder records its tokenizer's ids in nanoemox.json: use the tokenizer it was "
                       "assembled with, or assemble it with this one: python -m converters.assemble)")

  def token_id(self, token: str) -> int:
    i = self.backend.token_to_id(token)
    if i is None:
      raise KeyError(f"{self.folder}: token {token!r} is not in the vocabulary")
    return i

  def __len__(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    """Token ids (no BOS/EOS added); special and placeholder tokens are matched before BPE."""
    return self.backend.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def encode_batch(self, texts: Sequence[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ids and mask, int32 [B, T] (T = longest, or `length`, which must fit all)."""
    encoded = [self.encode(t) for t in texts]
    t = max(map(len, encoded)) if length is None else length
    if any(len(e) > t for e in encoded):
      raise ValueError(f"encode_batch: a text has {max(map(len, encoded))} tokens > length={t}")
    ids, mask = np.full((len(texts), t), self.pad_id, np.int32), np.zeros((len(texts), t), np.int32)
    for row, e in enumerate(encoded):
      if e:
        ids[row, t - len(e):], mask[row, t - len(e):] = e, 1
    return ids, mask

  @cached_property
  def _token_texts(self) -> list[str]:
    return [self.backend.decode([i], skip_special_tokens=False) for i in range(len(self))]

  def stop_sequences(self, stop: str) -> list[tuple[int, ...]]:
    """Token sequences that end generation at `stop`: its own encoding plus every single token
    whose text contains it (e.g. '###' inside '###\\n'). Decoded text is still cut at `stop`."""
    seqs = {tuple(self.encode(stop))}
    seqs |= {(i,) for i, s in enumerate(self._token_texts) if stop in s}
    return sorted(seqs, key=lambda s: (len(s), s))


def _read_bpe(folder: Path, config: dict) -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int], Path]:
  """(vocab, merges, added token -> id, the file listing the added tokens) from vocab.json + merges.txt and
  tokenizer_config.json's `added_tokens_decoder` (Qwen2's 3 when it lists none), else from tokenizer.json."""
  if not (folder / "vocab.json").exists() and (folder / "tokenizer.json").exists():
    fast = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = fast.get("model") or {}
    if model.get("type") != "BPE":
      raise ValueError(f"{folder / 'tokenizer.json'}: model.type {model.get('type')!r} is not 'BPE' (Qwen2's)")
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    added = {t["content"]: t["id"] for t in fast.get("added_tokens", [])} or QWEN2_SPECIAL
    return model["vocab"], merges, added, folder / "tokenizer.json"
  for name in ("vocab.json", "merges.txt"):
    if not (folder / name).exists():
      raise FileNotFoundError(f"{folder}: tokenizer file {name} not found (nor a tokenizer.json)")
  vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
  merges = []
  for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines():  # the files ship CRLF
    line = line.rstrip("\r")
    if line and not line.startswith("#version"):
      left, _, right = line.partition(" ")
      merges.append((left, right))
  added = {v["content"]: int(k) for k, v in config.get("added_tokens_decoder", {}).items()} or QWEN2_SPECIAL
  return vocab, merges, added, folder / "tokenizer_config.json"


def _token_str(token: str | dict | None) -> str | None:
  return token.get("content") if isinstance(token, dict) else token
