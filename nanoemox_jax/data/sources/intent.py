"""MIntRec / MIntRec2.0: the official split TSVs, or the authors' conversation JSON.

Official TSVs (thuiar/MIntRec `data/base.py`, raw videos `raw_video/S/E/clip.mp4` as in its
`tools/audio_preprocess.py`; thuiar/MIntRec2.0 `data/single_turn/base.py` and
`text_pre.py`): a header row, then MIntRec `season, episode, clip, text, label` (item
`S05_E16_329`) and MIntRec2.0 `dialogue, utterance, text, label, ...` read by position (item
`dia0_utt3`). A `.tsv` file, or a folder holding `<split>.tsv`, is read as TSV; anything else goes
to the authors' JSON reader.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources import conversation
from nanoemox_jax.data.sources.common import Media, SourceError, read_rows


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  if src.is_file() and src.suffix == ".tsv":
    return _read_tsv(dataset, src, split, media)
  if src.is_dir() and (src / f"{split}.tsv").is_file():
    return _read_tsv(dataset, src / f"{split}.tsv", split, media)
  return conversation.read(dataset, src, split, media)


def _read_tsv(dataset: str, path: Path, split: str, media: Media) -> list[Record]:
  if dataset == "mintrec":
    rows = [(f"{r['season']}_{r['episode']}_{r['clip']}", r["text"], r["label"], (r["season"], r["episode"], r["clip"]))
            for r in read_rows(path, ("season", "episode", "clip", "text", "label"), delimiter="\t")]
  else:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
      for lineno, line in enumerate(csv.reader(f, delimiter="\t"), 1):
        if lineno == 1:
          continue
        if len(line) < 4:
          raise SourceError(f"{path}:{lineno}: expected columns dialogue, utterance, text, label; got {len(line)}")
        rows.append((f"dia{line[0]}_utt{line[1]}", line[2], line[3], ()))
  candidates = templates.CANDIDATES[dataset]
  records = []
  for name, text, label, official in rows:
    video_paths = [f"video/{name}.mp4", f"{name}.mp4"]
    if official:
      video_paths.append("raw_video/{}/{}/{}.mp4".format(*official))
    records.append(Record(id=name, task="mir", dataset=dataset, split=split, target=label, labels=(label,),
                          candidates=candidates, subtitle=text, video=media.find(video_paths),
                          audio=media.find([f"audio/{name}.wav"], required=False), meta={"source": path.name}))
  return records
