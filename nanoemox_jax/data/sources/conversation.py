"""The authors' conversation JSON (`data/*.json` in waHAHJIAHAO/Nano-EmoX).

A list of `{"messages": [{"role": "user", "content": subtitle}, {"role": "assistant", "content": label}],
"audios"|"videos": [path]}`; the item name is the media file's stem (their `*_dataset.py` classes:
crema, m3ed, caer_ferv39k, mintrec, mintrec2). The absolute paths in the file are the authors'
machine's, so media are looked up by file name under the media root (`audio/`, `video/` or the root).

`caer` and `ferv39k` share the authors' combined `caer_ferv39k_ann.json` (their one `caer_ferv39k`
dataset); each keeps only its own items (`combined_member`), so preparing both gives every item once.

Each item needs its messages, a non-empty label string and a string subtitle (may be empty, as CREMA-D's are) and
a media path with a file name; a label outside the dataset's candidates (case-insensitive) leaves its item out,
counted by prepare; a media name seen before is kept as `name#2` (`unique_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import (VIDEO_EXTS, Media, SourceError, as_list, known_label, load_json,
                                              media_candidates, need, pick_file, text, unique_ids)


@dataclass(frozen=True)
class Settings:
  task: str  # "mer" or "mir"
  media_key: str  # "audios" (audio-only) or "videos"
  candidates: tuple[str, ...]  # empty: the question has no candidate list
  files: dict[str, str]  # split -> file name inside a dataset folder
  separate_audio: bool = False  # a video dataset whose audio the authors read from audio/<name>.wav
  member: str = ""  # of the combined CAER/FERV39k file: keep only the items `combined_member` gives this name


COMBINED = ("caer", "ferv39k")


def combined_member(file: PurePosixPath) -> str:
  """"caer" or "ferv39k": whose item of `caer_ferv39k_ann.json` the video path `file` is.

  A folder of the path that names one of the two datasets (case-insensitive, e.g. `.../CAER/train/Anger/`,
  `.../FERV39k/...`) decides; a folder naming both (the authors' flat `CAER_FERV39K/video/`) says nothing.
  Otherwise the container decides: `.avi` is CAER's (CAER ships AVI clips), anything else FERV39k's
  (FERV39k ships frame folders, so its clips are re-encoded, `.mp4` in the authors' loader).
  """
  named = set()
  for folder in file.parent.parts:
    hits = [name for name in COMBINED if name in folder.lower()]
    if len(hits) == 1:
      named.add(hits[0])
  if len(named) == 1:
    return named.pop()
  return "caer" if file.suffix.lower() == ".avi" else "ferv39k"


SETTINGS = {
    "cremad": Settings("mer", "audios", templates.CANDIDATES["cremad"], {"train": "crema_d_annotations.json"}),
    "m3ed": Settings("mer", "audios", (), {"train": "m3ed_annotaton.json"}),
    "caer": Settings("mer", "videos", templates.CANDIDATES["caer_ferv39k"], {"train": "caer_ferv39k_ann.json"},
                     member="caer"),
    "ferv39k": Settings("mer", "videos", templates.CANDIDATES["caer_ferv39k"], {"train": "caer_ferv39k_ann.json"},
                        member="ferv39k"),
    "mintrec": Settings("mir", "videos", templates.CANDIDATES["mintrec"],
                        {"train": "train_MIntRec_ann.json", "test": "test_MIntRec_ann.json"}, separate_audio=True),
    "mintrec2": Settings("mir", "videos", templates.CANDIDATES["mintrec2"],
                         {"train": "train_MIntRec2_ann.json", "test": "test_MIntRec2_ann.json"}, separate_audio=True),
}


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  s = SETTINGS[dataset]
  path = pick_file(src, split, s.files)
  data = as_list(load_json(path), str(path))
  items = []
  for i, item in enumerate(data):
    where = f"{path} item {i}"
    messages = need(item, "messages", where)
    if not isinstance(messages, list) or len(messages) < 2:
      raise SourceError(f"{where}: field 'messages' must hold a user and an assistant message")
    files = need(item, s.media_key, where)
    if not isinstance(files, list) or not files or not isinstance(files[0], str):
      raise SourceError(f"{where}: field {s.media_key!r} must be a non-empty list of paths")
    file = PurePosixPath(files[0].replace("\\", "/"))
    if not file.stem.strip():
      raise SourceError(f"{where}: field {s.media_key!r}: path {files[0]!r} has no file name")
    subtitle = text(messages[0], "content", f"{where} messages[0]", empty=True)
    label = text(messages[1], "content", f"{where} messages[1]")
    if (not s.member or combined_member(file) == s.member) and known_label(label, s.candidates, where,
                                                                           media.skipped):
      items.append((file, subtitle, label))
  if data and not items and not media.skipped:
    raise SourceError(f"{path}: none of its {len(data)} items is {dataset}'s (a folder naming CAER or FERV39k "
                      "decides, else .avi is CAER's)")
  records = []
  for rid, (file, subtitle, label) in zip(unique_ids(f.stem for f, _, _ in items), items):
    if s.media_key == "audios":
      video, audio = None, media.find([f"audio/{file.name}", file.name])
    else:
      exts = (file.suffix,) + tuple(e for e in VIDEO_EXTS if e != file.suffix)
      video = media.find(media_candidates(file.stem, ("video", ""), exts))
      audio = media.find([f"audio/{file.stem}.wav"], required=False) if s.separate_audio else None
    target = label if s.task == "mir" else templates.mer_answer(label, bool(s.candidates) and split == "train")
    records.append(Record(id=rid, task=s.task, dataset=dataset, split=split, target=target, labels=(label,),
                          candidates=s.candidates, subtitle=subtitle, video=video, audio=audio,
                          meta={"source": path.name, "media_name": file.name}))
  return records
