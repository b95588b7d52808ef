"""The output files AffectGPT and Nano-EmoX publish, read as predictions (`read`, for `predictions.read_checkpoints`).

Their inference writes one file per dataset and epoch, `output/results-<dataset>/<run>/<checkpoint>.npz` holding
`name2reason` ({name: answer}, a pickled dict), and their scorer (`evaluation-scoreonly.py`, `ew_metric.py`
`extract_openset_batchcalling`, `openset_to_sentiment_batchcalling`) stores the judge's replies beside it:
`<checkpoint>-openset.npz` and, for MSA, `<checkpoint>-openset-sentiment.npz`, each `filenames` and `fileitems`
(unicode arrays). A raw file gives one prediction per name (text = the answer, checkpoint = the file stem) and
carries the judge files found beside it (`Prediction.openset`, `.sentiment`), which are then scored as they
are, with no judge query. Any of an epoch's files names the epoch (so `dir/*.npz` reads each epoch once); judge
files without their raw file give predictions with an empty text. The dataset is the `results-<dataset>` folder
(AffectGPT's names: cmumosi, cmumosei, iemocapfour, ... map to this project's).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nanoemox_jax.data import npz
from nanoemox_jax.data.predictions import InputError, Prediction

OPENSET, SENTIMENT = "-openset.npz", "-openset-sentiment.npz"
# AffectGPT's `results-<name>` -> this project's dataset (the others are the same, lower-cased).
DATASETS = {"cmumosi": "mosi", "cmumosei": "mosei", "iemocapfour": "iemocap"}
# The task of each dataset's items, for datasets that AffectGPT / Nano-EmoX publish outputs of.
TASKS = {**{d: "mer" for d in ("mer2023", "mer2024", "meld", "iemocap")},
         **{d: "msa" for d in ("mosi", "mosei", "sims", "simsv2")}, "ovmerd": "ovmer", "mintrec": "mir",
         "mintrec2": "mir", "avamerg": "erg"}


def dataset_of(path: Path) -> str:
  """The dataset named by the nearest `results-<name>` folder above `path`."""
  for folder in path.resolve().parents:
    if folder.name.lower().startswith("results-"):
      name = folder.name[len("results-"):].lower()
      dataset = DATASETS.get(name, name)
      if dataset not in TASKS:
        raise InputError(f"{path}: folder {folder.name!r}: unknown dataset {name!r} (known: {', '.join(TASKS)})")
      return dataset
  raise InputError(f"{path}: no results-<dataset> folder above it (AffectGPT's output layout) to name its dataset")


def _pairs(path: Path) -> dict[str, str]:
  """name -> item of a judge file (`filenames`, `fileitems` of equal length, strings)."""
  members = _load(path)
  names, items = members.get("filenames"), members.get("fileitems")
  if not isinstance(names, list) or not isinstance(items, list) or len(names) != len(items):
    raise InputError(f"{path}: expected members 'filenames' and 'fileitems' of one length (members: "
                      f"{', '.join(members)})")
  for name, item in zip(names, items):
    if not isinstance(name, str) or not isinstance(item, str):
      raise InputError(f"{path}: field 'fileitems': {name!r} -> {item!r} is not a string pair")
  return dict(zip(names, items))


def _load(path: Path) -> dict[str, object]:
  try:
    return npz.load(path)
  except npz.NpzError as e:
    raise InputError(str(e)) from None


def base_of(path: Path) -> Path:
  """The raw-answer file that a published file belongs to: `x.npz` for `x.npz`, `x-openset.npz` and
  `x-openset-sentiment.npz`."""
  for suffix in (SENTIMENT, OPENSET, ".npz"):
    if path.name.endswith(suffix):
      return path.with_name(path.name[:-len(suffix)] + ".npz")
  raise InputError(f"{path}: not an .npz file")


def read(paths: Iterable[str | Path]) -> list[tuple[str, Prediction]]:
  """(where, prediction) of published `.npz` files, one set per epoch however many of its files are named (see the
  module docstring); `where` names the epoch's file and the item."""
  bases = dict.fromkeys(base_of(Path(path)) for path in paths)
  return [(f"{base} name {p.id!r}", p) for base in bases for p in _read_epoch(base)]


def _read_epoch(raw_path: Path) -> list[Prediction]:
  stem = raw_path.name.removesuffix(".npz")
  dataset = dataset_of(raw_path)
  openset_path, sentiment_path = raw_path.with_name(stem + OPENSET), raw_path.with_name(stem + SENTIMENT)
  texts: dict[str, str] | None = None
  if raw_path.is_file():
    reasons = _load(raw_path).get("name2reason")
    if not isinstance(reasons, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in reasons.items()):
      raise InputError(f"{raw_path}: field 'name2reason': expected a dict of name -> answer strings")
    texts = reasons
  opensets = _pairs(openset_path) if openset_path.is_file() else {}
  sentiments = _pairs(sentiment_path) if sentiment_path.is_file() else {}
  names = list(texts if texts is not None else opensets or sentiments)
  return [Prediction(id=n, task=TASKS[dataset], dataset=dataset, text=(texts or {}).get(n, ""),
                     answer=(texts or {}).get(n, ""), checkpoint=stem, openset=opensets.get(n),
                     sentiment=sentiments.get(n))
          for n in names]
