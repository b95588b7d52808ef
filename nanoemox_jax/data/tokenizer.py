"""The Qwen2 byte-level BPE tokenizer built offline from an HF folder (vocab.json + merges.txt).

Corresponds to HF `Qwen2TokenizerFast`: NFC normalisation, Qwen's pre-tokenizer regex, byte-level
BPE, added tokens from `tokenizer_config.json`, plus Nano-EmoX's five modality placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

PRETOKENIZE_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                     r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PLACEHOLDERS = ("<ImageHere>", "<AudioHere>", "<FrameHere>", "<FaceHere>", "<MultiHere>")
QWEN2_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
BUNDLED = Path(__file__).resolve().parent / "qwen2_tokenizer"  # the Qwen2 files shipped with the package


class Tokenizer:
  """encode/decode plus the ids the model needs (BOS `<|im_start|>`, EOS, pad = EOS, placeholders)."""

  def __init__(self, folder: str | Path):
    folder = Path(folder)
    for name in ("vocab.json", "merges.txt"):
      if not (folder / name).exists():
        raise FileNotFoundError(f"{folder}: tokenizer file {name} not found")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = []
    for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines():  # the files ship CRLF
      line = line.rstrip("\r")
      if line and not line.startswith("#version"):
        left, _, right = line.partition(" ")
        merges.append((left, right))
    tok = tokenizers.Tokenizer(models.BPE(vocab, merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    config = {}
    if (folder / "tokenizer_config.json").exists():
      config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    added = {v["content"]: int(k) for k, v in config.get("added_tokens_decoder", {}).items()} or QWEN2_SPECIAL
    for content, want in sorted(added.items(), key=lambda kv: kv[1]):
      tok.add_special_tokens([tokenizers.AddedToken(content, special=True, normalized=False)])
      if tok.token_to_id(content) != want:
        raise ValueError(f"{folder / 'tokenizer_config.json'}: added token {content!r} expects id {want}, "
                         f"got {tok.token_to_id(content)} (ids must follow the vocabulary contiguously)")
    tok.add_special_tokens([tokenizers.AddedToken(p, special=True, normalized=False) for p in PLACEHOLDERS])
    self.folder, self.backend = folder, tok
    self.eos_token = _token_str(config.get("eos_token")) or "<|im_end|>"
    self.eos_id = self.token_id(self.eos_token)
    self.pad_id = self.eos_id  # the authors set pad = eos
    self.bos_id = self.token_id("<|im_start|>")
    self.placeholder_ids = {p: self.token_id(p) for p in PLACEHOLDERS}

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


def _token_str(token: str | dict | None) -> str | None:
  return token.get("content") if isinstance(token, dict) else token
