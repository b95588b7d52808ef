"""`python -m nanoemox_jax.evaluate` end to end on a small predictions + labels pair, both selection protocols."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, f1_score

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record, write_jsonl
from nanoemox_jax.evaluate.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
MER_TRUTH = ["happy", "sad", "neutral", "angry"]
MER_ANSWERS = {"ckpt_5": ["happy", "happy", "happy", "angry"], "ckpt_10": ["happy", "sadness", "sad", "worried"]}
MOSI_VALENCE = [1.5, -0.8, 0.0, 2.0]
MOSI_ANSWERS = {"ckpt_5": ["positive", "negative", "positive", "negative"],
                "ckpt_10": ["positive", "negative", "negative", "positive"]}
INTENTS = ["complain", "thank", "ask for help"]
INTENT_ANSWERS = {"ckpt_5": ["complain", "thank", "greet"], "ckpt_10": ["praise", "thank"]}  # ckpt_10 lacks one


def _erg(emotion: str, reply: str) -> str:
  return (f"<think>Firstly, the event scenario of this conversation is: x\nSecondly, the emotion of the speaker is "
          f"{emotion}\nThirdly, the emotion cause is y\nFourthly, the goal to response is z</think>\n {reply}")


@pytest.fixture
def files(tmp_path):
  records = [Record(id=f"m{i}", task="mer", dataset="mer2023", split="test", target="", labels=(l,),
                    candidates=templates.CANDIDATES["mer"]) for i, l in enumerate(MER_TRUTH)]
  records += [Record(id=f"s{i}", task="msa", dataset="mosi", split="test", target="",
                     labels=("positive" if v > 0 else "negative" if v < 0 else "neutral",), meta={"valence": v})
              for i, v in enumerate(MOSI_VALENCE)]
  records += [Record(id=f"i{i}", task="mir", dataset="mintrec", split="test", target=l, labels=(l,),
                     candidates=templates.CANDIDATES["mintrec"]) for i, l in enumerate(INTENTS)]
  records += [Record(id=f"a{i}", task="erg", dataset="avamerg", split="test", target="", labels=(l,))
              for i, l in enumerate(["joyful", "angry"])]
  write_jsonl(records, tmp_path / "labels.jsonl")
  for ckpt in ("ckpt_5", "ckpt_10"):
    rows = [{"id": f"m{i}", "task": "mer", "dataset": "mer2023", "text": f"The character's emotional state is {a}.",
                 "gates": {"expert1": 0.2, "expert2": 0.5, "expert3": 0.3}} for i, a in enumerate(MER_ANSWERS[ckpt])]
    rows += [{"id": f"s{i}", "task": "msa", "dataset": "mosi", "text": f"The character's sentiment state is {a}.",
                  "gates": {"expert1": 0.6, "expert2": 0.1, "expert3": 0.3}} for i, a in enumerate(MOSI_ANSWERS[ckpt])]
    rows += [{"id": f"i{i}", "task": "mir", "dataset": "mintrec", "text": a} for i, a in enumerate(INTENT_ANSWERS[ckpt])]
    emotions = ["joyful", "furious"] if ckpt == "ckpt_5" else ["happy", "angry"]
    rows += [{"id": f"a{i}", "task": "erg", "dataset": "avamerg", "text": _erg(e, "that is so good to hear"),
                  "answer": "that is so good to hear", "think": "..."} for i, e in enumerate(emotions)]
    (tmp_path / f"{ckpt}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return tmp_path


def test_cli_best_of_range_writes_report(files):
  out = files / "report"
  run = subprocess.run([sys.executable, "-m", "nanoemox_jax.evaluate", "--benchmark", "merunibench", "--predictions",
                        str(files / "ckpt_10.jsonl"), str(files / "ckpt_5.jsonl"), "--labels",
                        str(files / "labels.jsonl"), "--select", "best", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert run.returncode == 0, run.stderr
  scores = json.loads((out / "scores.json").read_text())
  mer, mosi = scores["selected"]["mer2023"], scores["selected"]["mosi"]
  # neutral is skipped; every wheel: happy hit, sad miss/hit, angry hit/miss -> 2/3 for both checkpoints:
  # the tie goes to the first checkpoint in natural order (ckpt_5, although 'ckpt_10' sorts first as text)
  assert mer["scores"]["hit_rate"] == pytest.approx(2 / 3) and mer["checkpoint"] == "ckpt_5"
  assert mer["counted"] == [3] * 5
  truth = [v > 0 for v in MOSI_VALENCE if v != 0]
  for ckpt in ("ckpt_5", "ckpt_10"):
    pred = [a == "positive" for v, a in zip(MOSI_VALENCE, MOSI_ANSWERS[ckpt]) if v != 0]
    assert scores["checkpoints"][ckpt]["mosi"]["scores"]["weighted_f1"] == pytest.approx(
        f1_score(truth, pred, average="weighted"))
  assert mosi["checkpoint"] == "ckpt_10" and mosi["scores"]["weighted_f1"] == 1.0
  assert scores["average"] == {"value": pytest.approx((2 / 3 + 1.0) / 2), "datasets": ["mer2023", "mosi"]}
  assert scores["protocol"] == "best" and scores["judge"] is None
  # the printed table: paper columns, missing datasets as '-', the partial average marked
  assert "| Nano-EmoX (ours) | 66.67 | - | - | - | 100.00 | - | - | - | - | 83.33 (2/9) |" in run.stdout
  assert "best checkpoint of the range, per dataset" in (out / "report.md").read_text()
  for name in ("confusion_mer2023.png", "datasets.png", "gates.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_cli_fixed_checkpoint(files, capsys):
  args = ["--benchmark", "mintrec", "--predictions", str(files / "ckpt_*.jsonl"), "--labels",
          str(files / "labels.jsonl"), "--out", str(files / "r")]
  assert main(args + ["--checkpoint", "ckpt_5"]) == 0
  s = json.loads((files / "r" / "scores.json").read_text())["selected"]["mintrec"]
  assert s["checkpoint"] == "ckpt_5" and s["n"] == 3 and s["missing"] == 0
  assert s["scores"]["accuracy"] == pytest.approx(accuracy_score(INTENTS, INTENT_ANSWERS["ckpt_5"]))
  assert s["scores"]["weighted_f1"] == pytest.approx(f1_score(INTENTS, INTENT_ANSWERS["ckpt_5"], average="weighted"))
  assert "fixed checkpoint" in capsys.readouterr().out
  assert main(args) == 0  # default: the last checkpoint, which lacks one prediction
  s = json.loads((files / "r" / "scores.json").read_text())["selected"]["mintrec"]
  assert (s["checkpoint"], s["n"], s["missing"], s["scores"]["accuracy"]) == ("ckpt_10", 2, 1, 0.5)
  assert main(["--benchmark", "avamerg", "--predictions", str(files / "ckpt_*.jsonl"), "--labels",
               str(files / "labels.jsonl"), "--select", "best", "--out", str(files / "a")]) == 0
  s = json.loads((files / "a" / "scores.json").read_text())["selected"]["avamerg"]
  # truth joyful/angry projects to happy/angry: ckpt_5 (joyful, furious) scores 0/2 exact, 2/2 coarse;
  # ckpt_10 (happy, angry) 2/2 -> best
  assert s["checkpoint"] == "ckpt_10" and s["scores"]["accuracy"] == 1.0 and s["scores"]["hit_rate"] == 1.0
  c5 = json.loads((files / "a" / "scores.json").read_text())["checkpoints"]["ckpt_5"]["avamerg"]["scores"]
  assert (c5["accuracy"], c5["hit_rate"]) == (0.0, 1.0)
  capsys.readouterr()
  assert main(["--benchmark", "emer", "--predictions", str(files / "ckpt_5.jsonl"), "--labels",
               str(files / "labels.jsonl"), "--out", str(files / "e")]) == 2
  assert capsys.readouterr().err == f"error: {files / 'labels.jsonl'}: no emer record (datasets emer with their " \
                                    "benchmark task)\n"


def test_sims_and_simsv2_share_ids_and_a_dataset_without_predictions_is_listed(tmp_path, capsys):
  # SIMSv2 holds every SIMS test id: the same four ids in both, opposite valences, and MOSI with no prediction
  sims, simsv2 = [1.0, -1.0, 0.5, -0.5], [-1.0, 1.0, -0.5, 0.5]
  records = [Record(id=f"v{i}", task="msa", dataset=d, split="test", target="", meta={"valence": v})
             for d, valences in (("sims", sims), ("simsv2", simsv2)) for i, v in enumerate(valences)]
  records += [Record(id=f"v{i}", task="msa", dataset="mosi", split="test", target="", meta={"valence": 1.0})
              for i in range(2)]
  write_jsonl(records, tmp_path / "labels.jsonl")
  answers = {"sims": ["positive", "negative", "negative", "positive"],  # 2 of 4 right
             "simsv2": ["negative", "positive", "negative", "positive"]}  # all right
  rows = [{"id": f"v{i}", "task": "msa", "dataset": d, "text": f"The sentiment state is {a}."}
          for d, said in answers.items() for i, a in enumerate(said)]
  (tmp_path / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "report"
  assert main(["--benchmark", "merunibench", "--predictions", str(tmp_path / "preds.jsonl"), "--labels",
               str(tmp_path / "labels.jsonl"), "--model-name", "Mine", "--out", str(out)]) == 0
  captured = capsys.readouterr()
  selected = json.loads((out / "scores.json").read_text())["selected"]
  # SIMS: truth +,-,+,- against +,-,-,+: each class P = R = 1/2, so weighted F1 1/2; SIMSv2: all right
  assert selected["sims"]["scores"] == {"weighted_f1": 0.5, "accuracy": 0.5}
  assert selected["simsv2"]["scores"] == {"weighted_f1": 1.0, "accuracy": 1.0}
  assert (selected["sims"]["n"], selected["simsv2"]["n"]) == (4, 4)
  assert selected["mosi"] == {"main": None, "scores": {}, "n": 0, "missing": 2, "checkpoint": "preds"}
  assert "| Mine | - | - | - | - | – | - | 50.00 | 100.00 | - | 75.00 (2/9) |" in captured.out
  assert "–: no prediction for any record of MOSI." in captured.out
  assert "warning: mosi: none of its 2 records has a prediction; not scored" in captured.err
  md = (out / "report.md").read_text()
  assert "- model: Mine" in md and "- without any prediction (not scored, – in the tables): MOSI (2 records)" in md
  assert "| preds | – | 50.00 | 100.00 |" in md and "| MOSI | 0 | 2 |" in md
