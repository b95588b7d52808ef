"""The synthetic demo corpus: read back by the real readers and the prepare CLI, decodable, labels
recoverable from the media by trivial checks that know nothing of the generator, and deterministic."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from nanoemox_jax.data import templates
from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.manifest import read_jsonl
from nanoemox_jax.data.media import FRAMES, decode_sample, load_audio, read_frames
from nanoemox_jax.data.sources import read_source

PER_CLASS = 4
SETS = [(dataset, split) for dataset in demo.WRITERS for split in demo.SPLITS]
TASKS = {"cremad": ("mer",), "caer": ("mer",), "mintrec": ("mir",), "mercaptionplus": ("ovmer", "eri"),
         "avamerg": ("erg", "erg_emotion")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, dict[str, tuple[Path, Path]]]:
  return demo.write_corpus(tmp_path_factory.mktemp("demo"), seed=0, per_class=PER_CLASS)


@pytest.fixture(scope="module")
def records(corpus) -> dict[tuple[str, str], list]:
  out = {}
  for dataset, split in SETS:
    annotation, media_root = corpus[dataset][split]
    out[dataset, split], missing = read_source(dataset, annotation, split, media_root)
    assert missing == [], (dataset, split, missing[:3])
  return out


def items_per_class(split: str) -> int:
  return PER_CLASS if split == "train" else demo.held_out(PER_CLASS)


def primary(records: list) -> list:
  """One record per media item: the first task of the set (and every AvaMERG test record)."""
  task = TASKS[records[0].dataset][0]
  return [r for r in records if r.task == task]


@pytest.mark.parametrize("dataset, split", SETS)
def test_read_back_counts_and_labels(records, dataset, split):
  recs = records[dataset, split]
  classes = demo.CLASSES[dataset]
  n = items_per_class(split) * len(classes)
  turns, tasks = 1, TASKS[dataset]
  if dataset == "avamerg":  # two turns per conversation; dev and test give the last one, as ERG only
    turns, tasks = (2, tasks) if split == "train" else (1, ("erg",))
  assert Counter(r.task for r in recs) == {task: n * turns for task in tasks}
  assert Counter(r.labels[0] for r in primary(recs)) == {label: items_per_class(split) * turns for label in classes}
  assert all(r.split == split and (r.video or r.audio) for r in recs)
  if dataset == "mercaptionplus":
    for r in recs:
      assert set(r.labels) <= {r.labels[0], *demo.OV_WORDS[r.labels[0]]}
      assert r.task == "ovmer" or r.target.endswith(f"most likely {', '.join(r.labels)}.")
  if dataset == "cremad":
    assert all(r.subtitle == "" and r.video is None for r in recs)
  if dataset in ("mintrec", "mercaptionplus", "avamerg"):
    assert len({r.subtitle for r in recs}) > 3


def test_splits_are_disjoint(records):
  """Train, dev and test share no media file, no item id, no media content and (CREMA-D) no actor."""
  pairs = [("train", "dev"), ("train", "test"), ("dev", "test")]
  for dataset in demo.WRITERS:
    media = {split: {r.video or r.audio for r in records[dataset, split]} for split in demo.SPLITS}
    ids = {split: {r.id.split("#")[0] for r in records[dataset, split]} for split in demo.SPLITS}
    content = {split: {Path(f).read_bytes() for f in media[split]} for split in demo.SPLITS}
    assert all(media[split] and ids[split] for split in demo.SPLITS), dataset
    for a, b in pairs:
      assert not media[a] & media[b] and not ids[a] & ids[b] and not content[a] & content[b], (dataset, a, b)
  actors = {split: {Path(r.audio).name.split("_")[1] for r in records["cremad", split]} for split in demo.SPLITS}
  assert actors == {"train": {"1001"}, "dev": {"1091"}, "test": {"1090"}}  # held-out speakers, 4 + 1 + 1 per class


def test_prepare_cli_reads_a_set(corpus, tmp_path):
  annotation, media_root = corpus["mintrec"]["test"]
  out = tmp_path / "mintrec_test.jsonl"
  proc = subprocess.run([sys.executable, "-m", "nanoemox_jax.data.prepare", "--dataset", "mintrec", "--split", "test",
                         "--src", str(annotation), "--media-root", str(media_root), "--out", str(out)],
                        check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
  assert proc.returncode == 0, proc.stderr
  manifest = read_jsonl(out)
  summary = json.loads(out.with_suffix(".summary.json").read_text())
  assert len(manifest) == summary["records"] == len(demo.CLASSES["mintrec"]) * demo.held_out(PER_CLASS)
  assert summary["missing_media"] == 0 and set(summary["labels"]) == set(demo.CLASSES["mintrec"])
  assert all(r.candidates == templates.CANDIDATES["mintrec"] for r in manifest)  # all 20 intents


@pytest.mark.parametrize("dataset", list(demo.WRITERS))
def test_test_split_media_decode(records, dataset):
  for r in primary(records[dataset, "test"]):
    d = decode_sample(r.video, r.audio)
    assert d.errors == () and d.audio_mask and d.video_mask == (r.video is not None)
    assert d.frames.shape == (FRAMES, 3, 224, 224) and d.audio.shape == (8, 32_000)
    assert np.abs(d.audio).max() > 0.05


def dominant_hz(wave: np.ndarray, rate: int = 16_000) -> float:
  """Strongest frequency between 60 and 600 Hz."""
  spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
  hz = np.fft.rfftfreq(len(wave), 1 / rate)
  band = (hz > 60) & (hz < 600)
  return float(hz[band][spectrum[band].argmax()])


def nearest_centroid_accuracy(train: dict[str, list[np.ndarray]], test: dict[str, list[np.ndarray]]) -> float:
  centroids = {label: np.mean(v, axis=0) for label, v in train.items()}
  hits = [min(centroids, key=lambda c: np.linalg.norm(x - centroids[c])) == label
          for label, xs in test.items() for x in xs]
  return float(np.mean(hits))


def features(recs: list, feature) -> dict[str, list[np.ndarray]]:
  out = defaultdict(list)
  for r in primary(recs):
    out[r.labels[0]].append(np.atleast_1d(feature(r)))
  return out


@pytest.mark.parametrize("dataset", list(demo.WRITERS))
def test_label_is_in_the_voice_pitch(records, dataset):
  """An FFT pitch estimate (log Hz) of each item's audio, wav or the video's track, classifies the
  held-out items by the nearest training-class mean."""
  pitch = lambda r: np.log(dominant_hz(load_audio(r.audio or r.video)))
  train, dev, test = (features(records[dataset, split], pitch) for split in ("train", "dev", "test"))
  assert nearest_centroid_accuracy(train, train) == 1.0
  assert nearest_centroid_accuracy(train, test) == nearest_centroid_accuracy(train, dev) == 1.0


def mouth(frame: np.ndarray) -> tuple[float, float]:
  """(dark area, curvature) of the mouth: the dark pixels below the middle of all dark pixels; curvature is
  how much lower its centre columns sit than its sides (> 0: a smile)."""
  ys, xs = np.nonzero(frame.max(axis=-1) < 80)
  low = ys > (ys.min() + ys.max()) / 2
  ys, xs = ys[low], xs[low]
  offset = np.abs(xs - xs.mean()) / (xs.max() - xs.min())
  return float(len(ys)), float(ys[offset < 0.1].mean() - ys[offset > 0.3].mean())


def test_label_is_in_the_frames(records):
  """CAER: the frame border colour classifies held-out clips; the mouth opens for surprise and fear, curves up for
  happiness and down for sadness."""
  recs = records["caer", "train"] + records["caer", "test"]
  last = {r.id: read_frames(r.video)[-1].astype(np.float64) for r in recs}
  border = lambda r: np.concatenate([last[r.id][:6].reshape(-1, 3), last[r.id][-6:].reshape(-1, 3)]).mean(0)
  train, test = (features(records["caer", split], border) for split in ("train", "test"))
  assert nearest_centroid_accuracy(train, test) == 1.0
  shape = {label: np.mean(v, axis=0) for label, v in features(recs, lambda r: np.array(mouth(last[r.id]))).items()}
  assert shape["surprise"][0] > 2 * shape["neutral"][0] and shape["fear"][0] > 1.3 * shape["neutral"][0]
  assert shape["happy"][1] > 1 and shape["sad"][1] < -1 and abs(shape["neutral"][1]) < 1


def test_same_seed_same_bytes(tmp_path, capsys):
  assert demo.main(["--out", str(tmp_path / "a"), "--per-class", "1"]) == 0
  assert "cremad" in capsys.readouterr().out
  demo.write_corpus(tmp_path / "b", seed=0, per_class=1)
  demo.write_corpus(tmp_path / "c", seed=1, per_class=1)
  files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
  match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
  assert mismatch == errors == [] and len(match) == len(files)
  media = {folder: {p.read_bytes() for p in (tmp_path / folder).rglob("*") if p.suffix in (".wav", ".mp4")}
           for folder in ("a", "c")}
  assert len(media["a"]) == len(media["c"]) and not media["a"] & media["c"]  # another seed draws other media


def test_per_class_must_be_positive(tmp_path):
  with pytest.raises(ValueError, match="per_class"):
    demo.write_corpus(tmp_path, per_class=0)
