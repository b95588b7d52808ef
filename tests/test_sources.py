"""Dataset readers and the prepare CLI, on the real annotation files in ../shared and on fixtures
written in each upstream format (the format's source is cited beside each fixture, or in
tests/fixtures/README.md for the files there)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record, Turn, read_jsonl, write_jsonl
from nanoemox_jax.data.sources import SOURCES, read_source
from nanoemox_jax.data.sources import mer_ov
from nanoemox_jax.data.sources.common import SourceError

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
OFFICIAL = REAL / "nanoemox_official"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real annotation samples not found at {REAL}")


def conversation_items(path: Path, key: str) -> list[tuple[str, str, str]]:
  """(media stem, user content, assistant content) straight from the authors' JSON."""
  items = json.loads(path.read_text(encoding="utf-8"))
  return [(PurePosixPath(x[key][0]).stem, x["messages"][0]["content"], x["messages"][1]["content"]) for x in items]


def csv_rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f, delimiter=delimiter))


# ----------------------------------------------------------------------------------------------- real files


@needs_real
@pytest.mark.parametrize("dataset, file, count, n_labels", [
    ("mintrec2", "train_MIntRec2_ann.json", 5644, 30),
    ("mintrec", "train_MIntRec_ann.json", 1779, 20),
])
def test_intent_authors_json(dataset, file, count, n_labels):
  expected = conversation_items(OFFICIAL / file, "videos")
  records, missing = read_source(dataset, OFFICIAL / file)
  assert len(records) == len(expected) == count
  assert [(r.id, r.subtitle, r.labels[0], r.target) for r in records] == [(n, s, lab, lab) for n, s, lab in expected]
  labels = {lab for _, _, lab in expected}
  assert len(labels) == n_labels == len(templates.CANDIDATES[dataset])
  assert {lab.lower() for lab in labels} == set(templates.CANDIDATES[dataset])  # candidate list = file's label set
  assert all(r.task == "mir" and r.split == "train" and r.candidates == templates.CANDIDATES[dataset] for r in records)
  assert len(missing) == count and all(r.video in missing and r.audio is None for r in records)


@needs_real
def test_mintrec_official_tsv_matches_the_authors_json():
  official = {}
  for split in ("train", "dev"):
    with open(REAL / "mintrec" / f"{split}.tsv", encoding="utf-8", newline="") as f:
      rows = list(csv.reader(f, delimiter="\t"))[1:]
    records, _ = read_source("mintrec", REAL / "mintrec", split)
    assert len(records) == len(rows) and all(r.split == split for r in records)
    assert [(r.id, r.subtitle, r.target) for r in records] == [(f"{s}_{e}_{c}", t, lab) for s, e, c, t, lab in rows]
    official.update({r.id: r.labels[0] for r in records})
  assert len(official) == 1334 + 445
  authors = {name: label for name, _, label in conversation_items(OFFICIAL / "train_MIntRec_ann.json", "videos")}
  assert official == authors  # the authors' training JSON is the official train + dev


@needs_real
def test_meld_dev_csv():
  rows = csv_rows(REAL / "meld" / "dev_sent_emo.csv")
  records, missing = read_source("meld", REAL / "meld", "dev")
  assert len(records) == len(rows) == 1109
  assert Counter(r.labels[0] for r in records) == Counter(row["Emotion"] for row in rows)
  assert set(r.labels[0] for r in records) == set(templates.CANDIDATES["meld"])
  first = records[0]
  assert first.id == f"dia{rows[0]['Dialogue_ID']}_utt{rows[0]['Utterance_ID']}" == "dia0_utt0"
  assert first.subtitle == rows[0]["Utterance"] and first.meta["speaker"] == rows[0]["Speaker"]
  assert first.target == f"The character's emotional state is {rows[0]['Emotion']}."  # benchmark: OV-style answer
  assert first.video == str(REAL / "meld" / "dev_splits_complete" / "dia0_utt0.mp4") and len(missing) == 1109


@needs_real
def test_cremad_authors_json(tmp_path):
  expected = conversation_items(OFFICIAL / "crema_d_annotations.json", "audios")
  stems = [n for n, _, _ in expected]
  (tmp_path / "audio").mkdir()
  for stem in stems[:3]:
    (tmp_path / "audio" / f"{stem}.wav").write_bytes(b"")
  records, missing = read_source("cremad", OFFICIAL / "crema_d_annotations.json", media_root=tmp_path)
  assert len(records) == len(expected) == 7442
  assert Counter(r.labels[0] for r in records) == Counter(lab for _, _, lab in expected)
  assert set(r.labels[0] for r in records) == set(templates.CANDIDATES["cremad"])
  assert [r.id for r in records] == stems and all(r.subtitle == "" and r.video is None for r in records)
  assert records[0].target == f"The most likely label is {expected[0][2]}."
  assert [r.audio for r in records[:3]] == [str(tmp_path / "audio" / f"{s}.wav") for s in stems[:3]]
  assert len(missing) == 7442 - 3 and records[3].audio == missing[0]


@needs_real
def test_emer_csv():
  rows = csv_rows(OFFICIAL / "EMER_gt-eng.csv")
  records, _ = read_source("emer", OFFICIAL / "EMER_gt-eng.csv")
  assert len(records) == len(rows) == 100
  assert [(r.id, r.labels, r.subtitle, r.target) for r in records] == [
      (row["names"], (row["emotions"],), row["subtitles"], row["reasons"]) for row in rows]
  assert all(r.task == "eri" and r.split == "test" for r in records)


@pytest.mark.parametrize("path, count", [
    pytest.param(OFFICIAL / "MERR_fine_grained.first150.json", 150, marks=needs_real),
    (FIXTURES / "merr_fine" / "MERR_fine_grained.json", 3)])
def test_merr_fine_json(path, count):
  data = json.loads(path.read_text(encoding="utf-8"))
  records, _ = read_source("merr_fine", path)
  assert len(records) == len(data) == count
  assert [(r.id, r.subtitle, r.target, r.labels) for r in records] == [
      (k, v["text"], v["smp_reason_caption"], (v["pseu_emotion"],)) for k, v in data.items()]
  first = next(iter(data.values()))
  assert records[0].meta["visual_prior"] == ", ".join(first["visual_prior_list"])


# -------------------------------------------------------------------------------------- upstream-format fixtures


def write(path: Path, text: str) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, encoding="utf-8")
  return path


def conversation_json(path: Path, key: str, items: list[tuple[str, str, str]]) -> Path:
  """Nano-EmoX `data/crema_d_annotations.json` layout (read by `datasets/datasets/m3ed_dataset.py`,
  `caer_ferv39k_dataset.py`): messages [user subtitle, assistant label] + one media path."""
  data = [{"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": lab}], key: [p]}
          for p, s, lab in items]
  return write(path, json.dumps(data, ensure_ascii=False))


def test_m3ed_caer_and_ferv39k_conversation_json(tmp_path):
  conversation_json(tmp_path / "m3ed_annotaton.json", "audios", [
      ("/x/audio/A_1.wav", "你好", "happy"), ("/x/audio/A_2.wav", "走开", "anger")])
  records, _ = read_source("m3ed", tmp_path)  # the folder's default file name is the authors' (sic)
  assert [(r.id, r.subtitle, r.target) for r in records] == [
      ("A_1", "你好", "The character's emotional state is happy."),
      ("A_2", "走开", "The character's emotional state is anger.")]
  assert all(r.candidates == () for r in records)
  caer = conversation_json(tmp_path / "caer.json", "videos", [
      ("/x/Anger/0001.avi", "", "anger"), ("/y/Sad/0001.avi", "", "sad"), ("/z/clip.mp4", "", "surprise")])
  write(tmp_path / "media" / "video" / "0001.avi", "")
  write(tmp_path / "media" / "clip.mp4", "")
  records, missing = read_source("caer", caer, media_root=tmp_path / "media")  # .avi: CAER's (see below)
  assert [r.id for r in records] == ["0001", "0001#2"]  # repeated names are kept, not merged
  assert [r.video for r in records] == [str(tmp_path / "media" / "video" / "0001.avi")] * 2
  assert missing == [] and all(r.audio is None for r in records)
  assert records[1].candidates == templates.CANDIDATES["caer_ferv39k"]
  (record,), missing = read_source("ferv39k", caer, media_root=tmp_path / "media")
  assert (record.id, record.video, missing) == ("clip", str(tmp_path / "media" / "clip.mp4"), [])


def test_caer_and_ferv39k_each_keep_their_own_items_of_the_combined_file(tmp_path):
  # The authors' combined caer_ferv39k_ann.json (their caer_ferv39k_dataset.py) with video paths of both kinds.
  path = FIXTURES / "caer_ferv39k" / "caer_ferv39k_ann.json"
  items = [(PurePosixPath(x["videos"][0]).name, x["messages"][1]["content"])
           for x in json.loads(path.read_text(encoding="utf-8"))]
  caer, _ = read_source("caer", path.parent)
  ferv, _ = read_source("ferv39k", path.parent)
  got = {name: [(r.meta["media_name"], r.labels[0]) for r in records] for name, records in (("caer", caer),
                                                                                            ("ferv39k", ferv))}
  # by folder (CAER/, FERV39k/, caer/, ferv39k_avi/), else by container (.avi: CAER) in the flat CAER_FERV39K/
  assert got == {"caer": [items[0], items[2], items[3], items[6]], "ferv39k": [items[1], items[4], items[5]]}
  assert sorted(got["caer"] + got["ferv39k"]) == sorted(items) and len(set(items)) == len(items) == 7
  assert [r.id for r in caer] == ["Anger_0001", "0002", "0002#2", "Surprise_0005"]
  assert all(r.dataset == "caer" for r in caer) and all(r.dataset == "ferv39k" for r in ferv)
  conversation_json(tmp_path / "ferv_only.json", "videos", [("/d/CAER_FERV39K/video/x.mp4", "", "sad")])
  with pytest.raises(SourceError, match="ferv_only.json: none of its 1 items is caer's"):
    read_source("caer", tmp_path / "ferv_only.json")


def test_mintrec2_official_tsv(tmp_path):
  # thuiar/MIntRec2.0 data/single_turn/base.py + text_pre.py: columns read by position 0,1,2,3.
  write(tmp_path / "test.tsv", "Dialogue_id\tUtterance_id\tText\tLabel\tSpeaker\n"
                               "3\t0\twhy would you do that?\tDoubt\tAmy\n3\t1\tsorry.\tApologise\tJonah\n")
  write(tmp_path / "video" / "dia3_utt1.mp4", "")
  records, missing = read_source("mintrec2", tmp_path, "test")
  assert [(r.id, r.subtitle, r.target, r.split) for r in records] == [
      ("dia3_utt0", "why would you do that?", "Doubt", "test"), ("dia3_utt1", "sorry.", "Apologise", "test")]
  assert missing == [str(tmp_path / "video" / "dia3_utt0.mp4")]
  assert records[1].video == str(tmp_path / "video" / "dia3_utt1.mp4")
  write(tmp_path / "bad" / "train.tsv", "a\tb\tc\n1\t2\tonly three\n")
  with pytest.raises(SourceError, match="train.tsv:2"):
    read_source("mintrec2", tmp_path / "bad")


def test_mercaptionplus_and_ovmerd_csvs(tmp_path):
  # MER2025 track files as read by Nano-EmoX mercaptionplus_dataset.py / ovmerd_dataset.py.
  folder = FIXTURES / "mercaptionplus"  # the first three items hand-written, the rest generated alike
  records, _ = read_source("mercaptionplus", folder)
  ov = csv_rows(folder / "track2_train_mercaptionplus.csv")
  reasons = {row["name"]: row["reason"] for row in csv_rows(folder / "track3_train_mercaptionplus.csv")}
  want = [(row["name"], "ovmer") for row in ov] + [(f"{row['name']}#eri", "eri") for row in ov
                                                   if reasons.get(row["name"])]
  assert sorted((r.id, r.task) for r in records) == sorted(want) and len(ov) == 120
  assert [(r.id, r.task, r.labels, r.subtitle) for r in records[:5]] == [
      ("samplenew_1", "ovmer", ("happy", "excited"), "Good."), ("samplenew_1#eri", "eri", ("happy", "excited"), "Good."),
      ("samplenew_2", "ovmer", ("neutral",), ""), ("samplenew_3", "ovmer", ("sad", "tired"), ""),
      ("samplenew_3#eri", "eri", ("sad", "tired"), "")]
  assert records[0].target == "The character's emotional state is happy, excited." and records[1].target == "She smiles."
  write(tmp_path / "track2_train_ovmerd.csv", "name,openset\nsample_7,\"['worried']\"\n")
  write(tmp_path / "track3_train_ovmerd.csv", "name,reason\nsample_7,Frowning.\n")
  (rec,), _ = read_source("ovmerd", tmp_path)
  assert (rec.task, rec.split, rec.labels, rec.meta["reason"]) == ("ovmer", "test", ("worried",), "Frowning.")


# The reference's `string_to_list` (zeroQiaoba/MERTools MER2025/MER2025_Track23/toolkit/utils/functions.py) on
# each input, worked by hand: one leading "[" and one trailing "]" dropped independently, nothing stripped first,
# then split at "," "'" '"', pieces stripped, empty ones dropped.
OV_LIST_RULE = [
    ('[], ["confused"]', [']', '[', 'confused']),  # -> '], ["confused"' -> ']' | ' [' | 'confused' | ''
    ("[], [confused]", [']', '[confused']),  # -> '], [confused' -> ']' | ' [confused'
    ("['happy', 'sad']", ["happy", "sad"]),
    ('["happy", "sad"]', ["happy", "sad"]),
    ("happy,sad", ["happy", "sad"]),
    ("[happy, sad]", ["happy", "sad"]),
    ("['happy',]", ["happy"]),
    ("happy, , sad", ["happy", "sad"]),
    ("", []),
    ("[]", []),
    ("[", []),  # the reference raises IndexError here (str[-1] of the emptied string)
    ("]", []),
    ("[happy", ["happy"]),  # the brackets are dropped each on its own
    ("happy]", ["happy"]),
    ("[[happy]]", ["[happy]"]),  # one of each only
    (" [happy, sad] ", ["[happy", "sad]"]),  # no strip before the bracket test
    ("  happy ,  sad  ", ["happy", "sad"]),
    ("happy sad", ["happy sad"]),  # spaces do not split
    ("happy;sad", ["happy;sad"]),
    ("[\"it's fine\", 'sad']", ["it", "s fine", "sad"]),  # every quote splits, apostrophes included
    ("['\"quoted\"']", ["quoted"]),
    ("快乐，悲伤", ["快乐，悲伤"]),  # a full-width comma does not split
    ("['快乐'，'悲伤']", ["快乐", "，", "悲伤"]),  # ... and stays as a piece between quotes
    ("[\u3000happy\u3000]", ["happy"]),  # str.strip removes the ideographic space
]


@pytest.mark.parametrize("text, want", OV_LIST_RULE, ids=[t for t, _ in OV_LIST_RULE])
def test_ov_label_list_rule_of_the_reference(text, want):
  assert mer_ov.split_labels(text) == want


def test_ov_openset_cells_read_with_the_reference_rule(tmp_path):
  write(tmp_path / "track2_train_ovmerd.csv", "name,openset\n"
        "a,\"[], [\"\"confused\"\"]\"\nb,[]\nc,\nd,\"['happy', 'sad']\"\ne,\"快乐，悲伤\"\n")
  records, _ = read_source("ovmerd", tmp_path)
  assert [(r.id, r.labels) for r in records] == [("a", ("]", "[", "confused")), ("b", ("neutral",)),
                                                ("c", ("neutral",)), ("d", ("happy", "sad")), ("e", ("快乐，悲伤",))]


def test_avamerg_turns_and_last_turn_test(tmp_path):
  # Structure read by Nano-EmoX datasets/datasets/avamerg_dataset.py (train.json / v_test_v5_0.json).
  avamerg = json.loads((FIXTURES / "avamerg" / "train.json").read_text(encoding="utf-8"))
  records, missing = read_source("avamerg", FIXTURES / "avamerg")  # conversation 0 hand-written, the rest generated
  assert len(records) == 2 * sum(len(c["turns"]) for c in avamerg) == 2 * (2 + 39 * 3)
  assert [(r.id, r.task) for r in records[:4]] == [
      ("dia00012utt2_3", "erg"), ("dia00012utt2_3#erg_emotion", "erg_emotion"),
      ("dia00012utt4_3", "erg"), ("dia00012utt4_3#erg_emotion", "erg_emotion")]
  last = records[2]
  assert last.subtitle == "I feel useless." and last.history == (
      Turn("speaker", "I lost my job."), Turn("listener", "That sounds hard."))
  assert last.target == ("<think>Firstly, the event scenario of this conversation is: fired\nSecondly, the emotion of the "
                         "speaker is helpless\nThirdly, the emotion cause is self-blame\nFourthly, the goal to response "
                         "is reassure</think>\n You are not useless.")
  assert records[3].target == "The emotion of the speaker is helpless." and last.meta["context"] == "job loss"
  assert missing[0] == str(FIXTURES / "avamerg" / "video" / "dia00012utt2_3.mp4")
  write(tmp_path / "v_test_v5_0.json", json.dumps(avamerg))
  test, _ = read_source("avamerg", tmp_path, "test")
  assert (test[0].id, test[0].task, test[0].labels) == ("dia00012utt4_3", "erg", ("helpless",))
  assert [r.labels[0] for r in test] == [c["turns"][-1]["chain_of_empathy"]["speaker_emotion"] for c in avamerg]
  bad = json.loads(json.dumps(avamerg))
  del bad[0]["turns"][1]["chain_of_empathy"]["emotion_cause"]
  write(tmp_path / "bad" / "train.json", json.dumps(bad))
  with pytest.raises(SourceError, match="conversation 0 turn 1 chain_of_empathy: missing field 'emotion_cause'"):
    read_source("avamerg", tmp_path / "bad")


def test_mer2023_and_mer2024_label_csvs(tmp_path):
  # MERTools MER2024/toolkit/preprocess/mer2023.py: train-label.csv / test1-label.csv with name, discrete, valence.
  write(tmp_path / "test1-label.csv", "name,discrete,valence\nsample_00000007,worried,-1.2\nsample_00000010,happy,2\n")
  write(tmp_path / "transcription-engchi-polish.csv", "name,chinese,english\nsample_00000007,别,Don't.\n")
  write(tmp_path / "test1" / "sample_00000010.avi", "")
  records, missing = read_source("mer2023", tmp_path)
  assert [(r.id, r.labels, r.subtitle, r.meta) for r in records] == [
      ("sample_00000007", ("worried",), "Don't.", {"valence": -1.2}), ("sample_00000010", ("happy",), "", {"valence": 2.0})]
  assert records[1].video == str(tmp_path / "test1" / "sample_00000010.avi") and len(missing) == 1
  assert records[0].candidates == templates.CANDIDATES["mer"] and records[0].split == "test"
  # MERTools mer2024.py: label-disdim.csv (train) read for name and discrete.
  write(tmp_path / "label-disdim.csv", "name,discrete\nsample_3,angry\n")
  (rec,), _ = read_source("mer2024", tmp_path, "train")
  assert rec.target == "The most likely label is angry." and rec.meta == {}


def test_iemocap_release_four_class(tmp_path):
  # IEMOCAP_full_release EmoEvaluation / transcriptions line formats (MERTools toolkit/preprocess/iemocap.py).
  header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
  write(tmp_path / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt", header +
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\nC-E2:\tNeutral;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_F001\tfru\t[2.0000, 3.0000, 3.0000]\n\n"
        "[14.8872 - 18.0175]\tSes01F_impro01_M002\texc\t[3.5000, 3.5000, 3.0000]\n")
  write(tmp_path / "Session5/dialog/EmoEvaluation/Ses05M_script01_1.txt", header +
        "[1.1000 - 2.2000]\tSes05M_script01_1_F000\tang\t[1.5000, 4.0000, 4.0000]\n")
  write(tmp_path / "Session1/dialog/transcriptions/Ses01F_impro01.txt",
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nSes01F_impro01_M002 [014.8872-018.0175]: Yes!\n")
  write(tmp_path / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav", "")
  train, _ = read_source("iemocap", tmp_path, "train")
  assert [(r.id, r.labels, r.subtitle) for r in train] == [
      ("Ses01F_impro01_F000", ("neutral",), "Excuse me."), ("Ses01F_impro01_M002", ("happy",), "Yes!")]
  assert train[0].audio == str(tmp_path / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
  assert train[1].audio is None and train[0].video == str(tmp_path / "subvideo-tgt" / "Ses01F_impro01_F000.avi")
  test, _ = read_source("iemocap", tmp_path)
  assert [(r.id, r.labels) for r in test] == [("Ses05M_script01_1_F000", ("anger",))]


def test_mmsa_label_csvs(tmp_path):
  # thuiar/MMSA data/DataPre.py label.csv (MOSI/MOSEI/SIMS); MERTools simsv2.py meta.csv.
  text = "video_id,clip_id,text,label,annotation,mode\n03bSnISJMiM,1,A lot of sad parts,-1.8,Negative,test\n" \
         "03bSnISJMiM,2,it was okay,0.0,Neutral,test\n03bSnISJMiM,3,great,2.4,Positive,train\n"
  write(tmp_path / "mosi" / "label.csv", text)
  write(tmp_path / "mosi" / "Raw" / "03bSnISJMiM" / "2.mp4", "")
  records, missing = read_source("mosi", tmp_path / "mosi")
  assert [(r.id, r.labels, r.meta["valence"], r.task) for r in records] == [
      ("03bSnISJMiM_1", ("negative",), -1.8, "msa"), ("03bSnISJMiM_2", ("neutral",), 0.0, "msa")]
  assert records[1].video == str(tmp_path / "mosi" / "Raw" / "03bSnISJMiM" / "2.mp4") and len(missing) == 1
  assert records[0].target == "The character's sentiment state is negative."
  write(tmp_path / "sims" / "label.csv", "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
                                         "video_0001,3,我很好,0.6,1,0.4,0.6,Positive,valid\n")
  (rec,), _ = read_source("sims", tmp_path / "sims", "dev")
  assert rec.id == "video_0001_0003" and rec.labels == ("positive",)
  write(tmp_path / "simsv2" / "meta.csv", "video_id,clip_id,text,label,mode\naqgy3_0001,00001,还行,-0.2,test\n")
  (rec,), _ = read_source("simsv2", tmp_path / "simsv2")
  assert rec.id == "aqgy3_0001_00001" and rec.labels == ("negative",) and rec.dataset == "simsv2"
  write(tmp_path / "bad" / "label.csv", "video_id,clip_id,text,mode\nv,1,t,test\n")
  with pytest.raises(SourceError, match=r"label.csv:1: missing column\(s\) \['label'\]"):
    read_source("mosei", tmp_path / "bad")


def test_every_registered_dataset_is_covered():
  assert sorted(SOURCES) == sorted("cremad m3ed caer ferv39k mintrec mintrec2 mercaptionplus merr_fine avamerg mer2023 "
                                   "mer2024 meld iemocap mosi mosei sims simsv2 ovmerd emer".split())


def test_manifest_jsonl_round_trip(tmp_path):
  records = [Record(id="a", task="erg", dataset="avamerg", split="train", target="t###x", labels=("sad",),
                    subtitle="你好", history=(Turn("speaker", "hi"),), video="v.mp4", meta={"context": "c", "n": [1]}),
             Record(id="b", task="mir", dataset="mintrec", split="test", target="Inform", candidates=("inform",))]
  assert write_jsonl(records, tmp_path / "m.jsonl") == 2
  assert read_jsonl(tmp_path / "m.jsonl") == records
  assert "你好" in (tmp_path / "m.jsonl").read_text(encoding="utf-8")
  with pytest.raises(ValueError, match="task 'asr'"):
    Record(id="c", task="asr", dataset="x", split="train", target="")
  write(tmp_path / "bad.jsonl", '{"id": "x", "task": "mer"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1: .*lacks field"):
    read_jsonl(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------------------------ prepare CLI


def prepare(*args: str | Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-m", "nanoemox_jax.data.prepare", *map(str, args)], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=120)


@needs_real
def test_prepare_cli_writes_manifest_and_summary(tmp_path):
  out = tmp_path / "meld_dev.jsonl"
  proc = prepare("--dataset", "meld", "--src", REAL / "meld", "--split", "dev", "--out", out)
  assert proc.returncode == 0, proc.stderr
  rows = csv_rows(REAL / "meld" / "dev_sent_emo.csv")
  assert len(read_jsonl(out)) == len(rows)
  summary = json.loads(out.with_suffix(".summary.json").read_text())
  assert summary["records"] == 1109 and summary["labels"] == dict(Counter(r["Emotion"] for r in rows))
  assert summary["missing_media"] == 1109 == len(summary["missing"]) and "missing media: 1109" in proc.stdout


def test_prepare_cli_bad_input(tmp_path):
  out = tmp_path / "m.jsonl"
  proc = prepare("--dataset", "emer", "--src", tmp_path / "nope.csv", "--out", out)
  assert proc.returncode == 2 and "nope.csv" in proc.stderr and "Traceback" not in proc.stderr
  write(tmp_path / "gt-eng.csv", "names,emotions,subtitles\nsample_1,happy,hi\n")
  proc = prepare("--dataset", "emer", "--src", tmp_path, "--out", out)
  assert proc.returncode == 2 and "gt-eng.csv" in proc.stderr and "'reasons'" in proc.stderr
  write(tmp_path / "crema.json", '{"messages": []}')
  proc = prepare("--dataset", "cremad", "--src", tmp_path / "crema.json", "--out", out)
  assert proc.returncode == 2 and "crema.json" in proc.stderr and "expected a JSON list" in proc.stderr
  write(tmp_path / "broken.json", "[{")
  proc = prepare("--dataset", "mintrec", "--src", tmp_path / "broken.json", "--out", out)
  assert proc.returncode == 2 and "broken.json:1: not JSON (Expecting property name" in proc.stderr
  assert "Traceback" not in proc.stderr and not out.exists()
