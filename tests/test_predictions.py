"""preds.jsonl: what the infer CLI appends, the evaluate CLI reads back unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nanoemox_jax.data import templates
from nanoemox_jax.data.predictions import InputError, Prediction, append_jsonl, read_checkpoints


def test_infer_writes_what_evaluate_reads(tmp_path):
  chain = {"event_scenario": "a lost job", "speaker_emotion": "sad", "emotion_cause": "the layoff",
           "goal_to_response": "comfort"}
  batches = [[Prediction.from_text("d1", "erg", "avamerg", templates.erg_answer(chain, "I am sorry to hear that.")),
              Prediction.from_text("m1", "mer", "mer2023", "The character's emotional state is happy.",
                                   {"speech16_vision12": 0.25, "speech20_vision16": 0.75})],
             [Prediction.from_text("i1", "mir", "mintrec", "complain — très fort")]]  # a later batch, non-ASCII
  out = tmp_path / "preds.jsonl"
  for batch in batches:  # as `python -m nanoemox_jax.infer --manifest` does, the checkpoint filled in
    append_jsonl((dataclasses.replace(p, checkpoint="/runs/sft/model") for p in batch), out)
  written = [dataclasses.replace(p, checkpoint="/runs/sft/model") for batch in batches for p in batch]
  assert written[0].think.startswith("Firstly, the event scenario") and written[0].answer == "I am sorry to hear that."
  assert [set(json.loads(line)) for line in out.read_text(encoding="utf-8").splitlines()] == [
      {"id", "task", "dataset", "text", "answer", "think", "gates", "checkpoint"}] * 3
  read = read_checkpoints([str(tmp_path / "*.jsonl")])
  assert list(read) == ["/runs/sft/model"] and len(read["/runs/sft/model"]) == len(written)
  for got, want in zip(read["/runs/sft/model"], written):
    for field in dataclasses.fields(Prediction):
      assert getattr(got, field.name) == getattr(want, field.name), (want.id, field.name)
    assert got == want == Prediction.from_json(want.to_json())


def test_records_are_named_by_dataset_and_id(tmp_path):
  # SIMSv2 holds every SIMS test id: the same id in two datasets is two predictions, in one dataset an error
  lines = [Prediction.from_text("v1", "msa", d, f"{d} answer", checkpoint="c").to_json() for d in ("sims", "simsv2")]
  path = tmp_path / "preds.jsonl"
  path.write_text("".join(json.dumps(line) + "\n" for line in lines))
  assert [(p.dataset, p.id, p.text) for p in read_checkpoints([str(path)])["c"]] == [
      ("sims", "v1", "sims answer"), ("simsv2", "v1", "simsv2 answer")]
  with pytest.raises(InputError, match=f"^{path}:2: field 'dataset': unknown dataset 'simsv2' \\(known: sims\\)$"):
    read_checkpoints([str(path)], datasets={"sims"})
  path.write_text(path.read_text() + json.dumps(lines[0] | {"text": "again"}) + "\n")
  with pytest.raises(InputError, match=f"^{path}:3: field 'id': a second prediction for sims id 'v1' of checkpoint "
                                       f"'c' \\(the first at {path}:1\\)$"):
    read_checkpoints([str(path)])
