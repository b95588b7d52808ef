"""MER2024's open-vocabulary metric (MER-OV track): set-level accuracy and recall after a judge's synonym groups.

python -m nanoemox_jax.evaluate.mer2024_ov --gt check-openset.csv --pred predict-openset.csv \
    --synonyms openset-synonym.zip

Reference: zeroQiaoba/MERTools `MER2024/main-ov.py` (`calculate_openset_overlap_rate_mer2024`, `main_metric`). Inputs
are CSVs `name, openset` (a list such as `['happy', 'sad']`) and the judge's replies already on disk: one
`<name>.npy` per sample holding a string `[['joyful', 'happy'], ['worried']]` (a folder, or a zip of one as the
published `ov_store/openset-synonym.zip`). Every sample with a synonym file is scored: each word maps to the first
word of its group, both sides are lower-cased sets, accuracy = |gt & pred| / |pred| and recall = |gt & pred| / |gt|
(both 0 for an empty prediction), each averaged over the samples; the score is their mean. The list rules are
MER2024's (`toolkit/utils/functions.py` `string_to_list`, `listlist_to_list`), which differ from MER2025's
(`data.sources.mer_ov.split_labels`): the text between the first `[` and the next `]` is split at quotes only, and
the pieces are kept unstripped unless blank or a lone comma.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nanoemox_jax.data.predictions import InputError
from nanoemox_jax.data.sources.common import SourceError, read_rows

_QUOTES = re.compile("['\"]")
_BRACKETS = re.compile(r"[\[\]]")


def _pieces(text: str) -> list[str]:
  return [item for item in _QUOTES.split(text) if item.strip() not in ("", ",")]


def string_to_list(text: str) -> list[str]:
  """MER2024's `string_to_list`: '' -> []; else the text between the first `[` and the following `]`, split at
  quotes (a text without `[` is an error there; here a ValueError)."""
  if text == "":
    return []
  if "[" not in text:
    raise ValueError(f"{text!r} has no '['")
  return _pieces(text.split("[")[1].split("]")[0])


def synonym_groups(text: str) -> list[list[str]]:
  """MER2024's `listlist_to_list`: "[['a', 'b'], ['c']]" -> [['a', 'b'], ['c']]."""
  return [_pieces(chunk) for chunk in _BRACKETS.split(text) if chunk.strip() not in ("", ",")]


def scores(gt: Mapping[str, str], pred: Mapping[str, str], synonyms: Mapping[str, str]) -> dict[str, float]:
  """{"accuracy", "recall", "score", "n"} over the names of `synonyms` (each name's gt and pred label strings and
  its judge reply)."""
  accuracy, recall = [], []
  for name, reply in synonyms.items():
    head = {word: group[0] for group in synonym_groups(reply) for word in group}
    g = {head.get(w, w) for w in (x.lower() for x in string_to_list(gt[name]))}
    p = {head.get(w, w) for w in (x.lower() for x in string_to_list(pred[name]))}
    accuracy.append(len(g & p) / len(p) if p else 0.0)
    recall.append(len(g & p) / len(g) if p else 0.0)
  if not accuracy:
    raise ValueError("no sample to score (no synonym file)")
  a, r = float(np.mean(accuracy)), float(np.mean(recall))
  return {"accuracy": a, "recall": r, "score": (a + r) / 2, "n": len(accuracy)}


def read_labels(path: str | Path) -> dict[str, str]:
  """name -> openset cell of a `name, openset` CSV (an empty cell is '', as pandas' NaN becomes there)."""
  path = Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  try:
    rows = read_rows(path, ("name", "openset"))
  except SourceError as e:
    raise InputError(str(e)) from None
  out: dict[str, str] = {}
  for lineno, row in enumerate(rows, 2):
    try:
      string_to_list(row["openset"])
    except ValueError as e:
      raise InputError(f"{path}:{lineno}: field 'openset': {e}") from None
    out[row["name"]] = row["openset"]
  return out


def read_synonyms(path: str | Path) -> dict[str, str]:
  """name -> judge reply of a folder (or zip) of `<name>.npy` strings, read without pickle."""
  path = Path(path)
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
      files = {Path(n).stem: z.read(n) for n in z.namelist() if n.endswith(".npy")}
  elif path.is_dir():
    files = {f.stem: f.read_bytes() for f in sorted(path.glob("*.npy"))}
  else:
    raise InputError(f"{path}: not a folder or zip of <name>.npy synonym files")
  out = {}
  for name, data in files.items():
    try:
      value = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
      raise InputError(f"{path}: {name}.npy: not a numpy string ({e})") from None
    if value.shape != () or value.dtype.kind != "U":
      raise InputError(f"{path}: {name}.npy: expected one string, got {value.dtype} of shape {value.shape}")
    out[name] = str(value)
  return out


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.evaluate.mer2024_ov",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--gt", required=True, help="CSV name, openset (the checked labels)")
  parser.add_argument("--pred", required=True, help="CSV name, openset (the predicted labels)")
  parser.add_argument("--synonyms", required=True, help="folder or zip of <name>.npy synonym groups")
  args = parser.parse_args(argv)
  try:
    gt, pred, synonyms = read_labels(args.gt), read_labels(args.pred), read_synonyms(args.synonyms)
    for what, table, path in (("gt", gt, args.gt), ("pred", pred, args.pred)):
      if missing := [n for n in synonyms if n not in table]:
        raise InputError(f"{path}: no {what} row for {len(missing)} synonym file(s), e.g. {missing[0]!r}")
    s = scores(gt, pred, synonyms)
  except ValueError as e:  # InputError included
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"samples: {s['n']}\nset level accuracy: {s['accuracy']}; recall: {s['recall']}\navg score: {s['score']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
