"""MELD's official CSVs (GitHub declare-lab/MELD `data/MELD/{train,dev,test}_sent_emo.csv`).

Columns used: `Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID`; the clip is
`dia<Dialogue_ID>_utt<Utterance_ID>.mp4` in the MELD.Raw split folder (`train_splits`,
`dev_splits_complete`, `output_repeated_splits_test`). MERTools `toolkit/preprocess/meld.py` builds
MER-UniBench's MELD from these files (7 emotions; test = 2,610 rows). A (Dialogue_ID, Utterance_ID) twice is an error; an emotion outside the seven
leaves its row out (prepare counts it).
"""

from __future__ import annotations

from pathlib import Path

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import Ids, Media, csv_rows, known_label, pick_file

FILES = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
CLIP_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  path = pick_file(src, split, FILES)
  records, ids = [], Ids()
  for where, row in csv_rows(path, COLUMNS, nonempty=("Emotion", "Dialogue_ID", "Utterance_ID")):
    name, label = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}", row["Emotion"]
    ids.add(name, where, "Utterance_ID")
    if not known_label(label, templates.CANDIDATES["meld"], where, media.skipped):
      continue
    records.append(Record(id=name, task="mer", dataset=dataset, split=split,
                          target=templates.mer_answer(label, split == "train"), labels=(label,),
                          candidates=templates.CANDIDATES["meld"], subtitle=row["Utterance"],
                          video=media.find([f"{CLIP_FOLDERS[split]}/{name}.mp4", f"{name}.mp4"]),
                          audio=media.find([f"audio/{name}.wav"], required=False),
                          meta={"speaker": row["Speaker"], "sentiment": row["Sentiment"]}))
  return records
