"""IEMOCAP four-class from the official release (`IEMOCAP_full_release/Session{1..5}`).

Labels: `dialog/EmoEvaluation/*.txt`, one line per turn `[start - end]<TAB>name<TAB>code<TAB>[V, A, D]`;
text: `dialog/transcriptions/*.txt`, lines `name [start-end]: text` (format as parsed in MERTools
`MER2024/toolkit/preprocess/iemocap.py`). Four classes as in MER-UniBench: ang -> anger, hap and exc
-> happy, neu -> neutral, sad -> sad; other codes are dropped. Split as in Nano-EmoX
`datasets/datasets/iemocap.py`: Sessions 1-4 train, Session 5 test (1,241 turns). MER-UniBench's own
labels are a pickle and are not read. Media: MER-UniBench's `subvideo-tgt/<name>.avi` (the
speaker's half of the frame), audio from the release's `Session<n>/sentences/wav/<dialog>/<name>.wav`.
Label files must be UTF-8; of their lines only those starting with `[` are turns, and one that does not parse, or
a turn named twice, is an error naming file and line (the evaluators' lines are skipped). Transcription lines that
do not parse, and bytes that are not UTF-8 there, are skipped and replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import Ids, Media, SourceError, read_text

FOUR_CLASS = {"ang": "anger", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}
_TURN = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]\t(\S+)\t(\S+)\t\[([^\]]*)\]")
_TEXT = re.compile(r"^(\S+) \[[^\]]*\]:\s?(.*)$")


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  if split not in ("train", "test"):
    raise SourceError(f"{src}: IEMOCAP has splits train (Sessions 1-4) and test (Session 5), not {split!r}")
  label_files = sorted(src.glob("Session*/dialog/EmoEvaluation/*.txt")) if src.is_dir() else []
  if not label_files:
    raise SourceError(f"{src}: no Session*/dialog/EmoEvaluation/*.txt (expected the IEMOCAP_full_release folder)")
  texts = {}
  for path in sorted(src.glob("Session*/dialog/transcriptions/*.txt")):
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
      if m := _TEXT.match(line.strip()):
        texts[m.group(1)] = m.group(2).strip()
  records, ids = [], Ids()
  for path in label_files:
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
      m = _TURN.match(line)
      if not m:
        if line.startswith("["):
          raise SourceError(f"{path}:{lineno}: not a turn line '[start - end]<TAB>name<TAB>code<TAB>[V, A, D]'")
        continue
      if m.group(4) not in FOUR_CLASS:
        continue
      name, session = m.group(3), m.group(3)[3:5]
      if not (name.startswith("Ses") and session.isdigit()):
        raise SourceError(f"{path}:{lineno}: turn name {name!r} does not start with SesNN")
      ids.add(name, f"{path}:{lineno}", "name")
      if (split == "test") != (session == "05"):
        continue
      label = FOUR_CLASS[m.group(4)]
      dialog = name.rsplit("_", 1)[0]
      records.append(Record(
          id=name, task="mer", dataset=dataset, split=split, target=templates.mer_answer(label, split == "train"),
          labels=(label,), candidates=templates.CANDIDATES["iemocap"], subtitle=texts.get(name, ""),
          video=media.find([f"subvideo-tgt/{name}.avi", f"subvideo/{name}.mp4"]),
          audio=media.find([f"Session{int(session)}/sentences/wav/{dialog}/{name}.wav", f"subaudio/{name}.wav"],
                           required=False),
          meta={"code": m.group(4), "start": float(m.group(1)), "end": float(m.group(2)),
                "vad": m.group(5).strip()}))
  return records
