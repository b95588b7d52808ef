"""Regenerates the packaged emotion-wheel tables (`evaluate/data/*.csv`) from the MER-UniBench xlsx files.

The authors ship `wheel1..5.xlsx` (columns level1, level2, level3; a blank cell repeats the value above) and
`synonym.xlsx` (columns word_run1, synonym_run1, ..., word_run8, synonym_run8), read with pandas; `format.csv`
is already plain. The package carries each sheet as a CSV with the cells verbatim (blank stays blank), so no
spreadsheet reader is needed at run time. Reading uses the standard library only (an xlsx file is a zip of XML).

  python -m nanoemox_jax.evaluate.wheel_tables --src ../shared/data/real/emotion_wheel --out DIR
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_CELL_REF = re.compile(r"([A-Z]+)(\d+)")
TABLES = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5", "synonym")


def _column_index(letters: str) -> int:
  index = 0
  for ch in letters:
    index = index * 26 + ord(ch) - ord("A") + 1
  return index - 1


def _text(node: ET.Element) -> str:
  """The text of a shared-string or inline-string item (plain `<t>` or rich-text runs; phonetic hints left out)."""
  phonetic = {id(t) for t in node.iterfind(".//m:rPh//m:t", _NS)}
  return "".join(t.text or "" for t in node.iterfind(".//m:t", _NS) if id(t) not in phonetic)


def read_xlsx(path: str | Path) -> list[list[str]]:
  """The first sheet of an xlsx file as rows of cell strings (blank cells ''; rows padded to equal length)."""
  with zipfile.ZipFile(path) as z:
    names = set(z.namelist())
    shared = []
    if "xl/sharedStrings.xml" in names:
      shared = [_text(si) for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iterfind("m:si", _NS)]
    sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
  rows: list[list[str]] = []
  for row in sheet.iterfind(".//m:sheetData/m:row", _NS):
    cells: dict[int, str] = {}
    for c in row.iterfind("m:c", _NS):
      column = _column_index(_CELL_REF.fullmatch(c.get("r")).group(1))
      kind, value = c.get("t"), c.find("m:v", _NS)
      if kind == "s":
        cells[column] = shared[int(value.text)]
      elif kind == "inlineStr":
        cells[column] = _text(c.find("m:is", _NS))
      elif value is not None and value.text is not None:
        cells[column] = value.text
    index = int(row.get("r")) - 1
    rows.extend([] for _ in range(index - len(rows) + 1))
    rows[index] = [cells.get(i, "") for i in range(max(cells, default=-1) + 1)]
  width = max(map(len, rows), default=0)
  return [r + [""] * (width - len(r)) for r in rows]


def convert(src: str | Path, out: str | Path) -> list[Path]:
  """Writes `<table>.csv` for every xlsx in TABLES and copies `format.csv`; returns the written paths."""
  src, out = Path(src), Path(out)
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name in TABLES:
    rows = read_xlsx(src / f"{name}.xlsx")
    while rows and not any(rows[-1]):
      rows.pop()
    path = out / f"{name}.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
      csv.writer(f, lineterminator="\n").writerows(rows)
    written.append(path)
  written.append(Path(shutil.copyfile(src / "format.csv", out / "format.csv")))
  return written


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--src", required=True, help="folder with wheel1..5.xlsx, synonym.xlsx, format.csv")
  parser.add_argument("--out", default=str(Path(__file__).parent / "data"))
  args = parser.parse_args(argv)
  for path in convert(args.src, args.out):
    print(path)


if __name__ == "__main__":
  main()
