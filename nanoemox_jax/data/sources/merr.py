"""MERR fine-grained annotations (`data/MERR/MERR_fine_grained.json` in waHAHJIAHAO/Nano-EmoX).

A JSON object `{name: {"text", "pseu_emotion", "smp_reason_caption", "visual_prior_list",
"audio_prior_list", ...}}` (their `merr_fine_dataset.py`). Phase 3 uses its descriptions
(`label_type: description` in `configs/phase3.yaml`), so each item is an ERI record; the pseudo
emotion is kept as the label. Media: `video/<name>.mp4|.avi` (their config points at MER2023's
`test3/`), `audio/<name>.wav`. An item needs a non-empty emotion and caption and a text (may be empty); a name given twice
in the object is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.sources.common import VIDEO_EXTS, Media, SourceError, load_json, media_candidates, pick_file, text


def read(dataset: str, src: Path, split: str, media: Media) -> list[Record]:
  path = pick_file(src, split, {"train": "MERR_fine_grained.json"})
  data = load_json(path)
  if not isinstance(data, Mapping):
    raise SourceError(f"{path}: expected a JSON object name -> annotation, got {type(data).__name__}")
  records = []
  for name, item in data.items():
    where = f"{path} item {name!r}"
    if not name.strip():
      raise SourceError(f"{where}: an empty item name")
    emotion, target = text(item, "pseu_emotion", where), text(item, "smp_reason_caption", where)
    visual = item.get("visual_prior_list", [])
    if not isinstance(visual, list) or not all(isinstance(v, str) for v in visual):
      raise SourceError(f"{where}: field 'visual_prior_list': expected a list of strings")
    records.append(Record(
        id=name, task="eri", dataset=dataset, split=split, target=target, labels=(emotion,),
        subtitle=text(item, "text", where, empty=True),
        video=media.find(media_candidates(name, ("video", "test3", ""), VIDEO_EXTS)),
        audio=media.find([f"audio/{name}.wav"], required=False),
        meta={"visual_prior": ", ".join(visual),
              "audio_prior": text(item, "audio_prior_list", where, empty=True) if "audio_prior_list" in item else ""}))
  return records
