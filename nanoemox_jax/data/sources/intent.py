"""MIntRec / MIntRec2.0: the official split TSVs, or the authors' conversation JSON.

Official TSVs (thuiar/MIntRec `data/base.py`, raw videos `raw_video/S/E/clip.mp4` as in its
`tools/audio_preprocess.py`; thuiar/MIntRec2.0 `data/single_turn/base.py` and
`text_pre.py`): a header row, then MIntRec `season, episode, clip, text, label` (item
`S05_E16_329`) and MIntRec2.0 `dialogue, utterance, text, label, ...` read by position (item
`dia0_utt3`). A `.tsv` file, or a folder holding `<split>.tsv`, is read as TSV; anything else goes
to the authors' JSON reader. A TSV row needs its name columns and label; an item named twice is an error, a label
outside the dataset's intents (case-insensitive; MIntRec2.0's out-of-scope `UNK`) leaves its row out, counted by
prepare.
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources import conversation
from nanoemox_jax.data.sources.common import Ids, Media, SourceError, csv_rows, known_label

MINTREC = ("season", "episode", "clip", "text", "label")


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  if src.is_file() and src.suffix == ".tsv":
    return _read_tsv(dataset, src, split, media)
  if src.is_dir() and (src / f"{split}.tsv").is_file():
    return _read_tsv(dataset, src / f"{split}.tsv", split, media)
  return conversation.read(dataset, src, split, media)


def _read_tsv(dataset: str, path: Path, split: str, media: Media) -> list[Record]:
  candidates, ids = templates.CANDIDATES[dataset], Ids()
  if dataset == "mintrec":
    rows = [(where, f"{r['season']}_{r['episode']}_{r['clip']}", r["text"], r["label"], (r["season"], r["episode"],
                                                                                         r["clip"]))
            for where, r in csv_rows(path, MINTREC, "\t", nonempty=("season", "episode", "clip", "label"))]
  else:
    rows = []
    for where, r in csv_rows(path, (), "\t"):
      cells = list(r.values())
      if len(cells) < 4:
        raise SourceError(f"{where}: expected columns dialogue, utterance, text, label; got {len(cells)}")
      for field, cell in zip(("dialogue", "utterance", "label"), (cells[0], cells[1], cells[3])):
        if not cell.strip():
          raise SourceError(f"{where}: field {field!r}: empty")
      rows.append((where, f"dia{cells[0]}_utt{cells[1]}", cells[2], cells[3], ()))
  records = []
  for where, name, text, label, official in rows:
    ids.add(name, where, "clip" if official else "utterance")
    if not known_label(label, candidates, where, media.skipped):
      continue
    video_paths = [f"video/{name}.mp4", f"{name}.mp4"]
    if official:
      video_paths.append("raw_video/{}/{}/{}.mp4".format(*official))
    records.append(Record(id=name, task="mir", dataset=dataset, split=split, target=label, labels=(label,),
                          candidates=candidates, subtitle=text, video=media.find(video_paths),
                          audio=media.find([f"audio/{name}.wav"], required=False), meta={"source": path.name}))
  return records
