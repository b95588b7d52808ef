"""`python -m nanoemox_jax.infer` end to end on a tiny model saved to a tmp folder: one video, a manifest with
resume, and bad input (exit 2, the message names the file or field)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flax import nnx

from nanoemox_jax.demo import corpus as demo
from nanoemox_jax.data.manifest import Record, Turn, write_jsonl
from nanoemox_jax.data.sources import read_source
from nanoemox_jax.infer.__main__ import main, read_history, render
from nanoemox_jax.model.frozen import FrozenParam
from nanoemox_jax.checkpoints.params_io import save_params
from tests.test_nanoemox import CFG
from tests.test_predict import FOLDER, tiny_model

REPO = Path(__file__).resolve().parents[1]
KEYS = ["id", "task", "dataset", "text", "answer", "think", "gates", "checkpoint"]
NEW = ["--max-new-tokens", "6"]


def write_model(folder: Path) -> Path:
  """`tiny_model()` as a `checkpoints.load` folder, with the tokenizer recorded in it."""
  model = tiny_model()
  configs = {"clip": CFG.clip.to_hf(), "hubert": CFG.hubert.to_hf(), "face": CFG.face.to_dict(),
             "llm": CFG.llm.to_hf()}
  for part, config in configs.items():
    (folder / part).mkdir(parents=True)
    (folder / part / "config.json").write_text(json.dumps(config))
    save_params(nnx.to_pure_dict(nnx.state(getattr(model, part), FrozenParam)), folder / part / "params")
  save_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)), folder / "adapters" / "params")
  (folder / "nanoemox.json").write_text(json.dumps({"preset": "tiny"}))
  (folder / "tokenizer").symlink_to(FOLDER, target_is_directory=True)  # the tokenizer recorded with the model
  return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """(model folder, records): an OV-MER item (video + audio), a MIntRec video, a CREMA-D audio-only clip and
  the OV-MER item again under another id with its video missing."""
  root = tmp_path_factory.mktemp("infer_cli")
  corpus = demo.write_corpus(root / "corpus", seed=0, per_class=1)
  records = []
  for dataset in ("mercaptionplus", "mintrec", "cremad"):
    annotation, media_root = corpus[dataset]["test"]
    records.append(read_source(dataset, annotation, "test", media_root)[0][0])
  gone = records[0].to_json() | {"id": "no_video", "video": str(root / "gone.mp4")}
  records.append(Record.from_json(gone))
  return write_model(root / "model"), records


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
  """Runs the CLI in a subprocess; the runs share a persistent compilation cache (the model's initialiser
  compiles once)."""
  cache = str(tmp_path_factory.mktemp("jax_cache"))

  def run(*args: str, devices: int = 1) -> subprocess.CompletedProcess:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return subprocess.run([sys.executable, "-m", "nanoemox_jax.infer", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=os.environ | {"JAX_COMPILATION_CACHE_DIR": cache,
                                                                    "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags})
  return run


def test_manifest_resume_and_single_video(setup, cli, tmp_path):
  model, records = setup
  manifest, out = tmp_path / "test.jsonl", tmp_path / "preds.jsonl"
  write_jsonl(records, manifest)
  first = {**dict.fromkeys(KEYS, ""), "id": records[1].id, "task": "mir", "dataset": "mintrec", "gates": None,
           "checkpoint": str(model.absolute()), "text": "kept from an earlier run"}
  out.write_text(json.dumps(first) + "\n" + '{"id": "cut by a ki')  # a finished line and a killed write
  run = cli("--checkpoint", str(model), "--manifest", str(manifest), "--out", str(out), "--batch-size", "2", *NEW)
  assert run.returncode == 0, run.stderr
  assert "incomplete last line" in run.stderr and "gone.mp4: video: file not found" in run.stderr
  lines = [json.loads(line) for line in out.read_text().splitlines()]
  assert lines[0] == first and sorted(p["id"] for p in lines) == sorted(r.id for r in records)
  by_id = {p["id"]: p for p in lines}
  for r in records:
    p = by_id[r.id]
    assert list(p) == KEYS and (p["task"], p["dataset"], p["checkpoint"]) == (r.task, r.dataset, str(model.absolute()))
    if r.id != records[1].id:
      assert p["answer"] == p["text"] and p["think"] is None and p["text"]
  gates = by_id[records[0].id]["gates"]  # video and audio present: the fusion gate's 3 expert weights
  assert list(gates) == ["speech2_vision2", "speech3_vision3", "speech4_vision4"] and abs(sum(gates.values()) - 1) < 1e-5
  assert by_id["no_video"]["gates"] is None and by_id[records[2].id]["gates"] is None  # fusion token masked

  before = out.read_bytes()
  rerun = cli("--checkpoint", str(model), "--manifest", str(manifest), "--out", str(out), *NEW)
  assert rerun.returncode == 0 and "all 4 predictions already there" in rerun.stdout
  assert out.read_bytes() == before

  r = records[0]  # alone (batch 1) it gets the tokens it got in a batch of 2
  single = cli("--checkpoint", str(model), "--task", r.task, "--video", r.video, "--audio", r.audio,
               "--subtitle", r.subtitle, *NEW)
  assert single.returncode == 0, single.stderr
  assert single.stdout.strip() == by_id[r.id]["answer"]


def test_missing_video_exits_2_naming_the_file(setup, cli, tmp_path):
  model, _ = setup
  run = cli("--checkpoint", str(model), "--task", "mer", "--video", str(tmp_path / "nope.mp4"))
  assert run.returncode == 2
  assert f"{tmp_path / 'nope.mp4'}: video: file not found" in run.stderr and "Traceback" not in run.stderr


def test_bad_input_in_process(setup, tmp_path, capsys):
  model, records = setup
  corrupt = tmp_path / "corrupt.mp4"
  corrupt.write_bytes(b"not a video" * 100)
  video = records[0].video
  cases = [
      (["--task", "mer", "--video", str(corrupt)], f"{corrupt}: video: "),
      (["--task", "mer", "--video", video, "--audio", str(tmp_path / "a.wav")], f"{tmp_path / 'a.wav'}: audio: file"),
      (["--task", "erg", "--video", video, "--history", str(tmp_path / "h.json")], f"{tmp_path / 'h.json'}: --history"),
      (["--task", "mer", "--video", video, "--tokenizer", str(tmp_path)], f"{tmp_path}: tokenizer file vocab.json"),
      (["--manifest", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "o.jsonl")], f"{tmp_path / 'm.jsonl'}"),
  ]
  for args, message in cases:
    assert main(["--checkpoint", str(model), *args]) == 2, args
    assert message in capsys.readouterr().err, args
  assert main(["--checkpoint", str(tmp_path), "--task", "mer", "--video", video]) == 2
  assert f"{tmp_path}: --checkpoint is not a model folder" in capsys.readouterr().err
  bad_task = tmp_path / "bad_task.jsonl"
  bad_task.write_text(json.dumps(records[0].to_json() | {"task": "poetry"}) + "\n")
  assert main(["--checkpoint", str(model), "--manifest", str(bad_task), "--out", str(tmp_path / "o.jsonl")]) == 2
  assert f"{bad_task}:1: field 'task': 'poetry' is not one of" in capsys.readouterr().err
  other = tmp_path / "other.jsonl"
  other.write_text(json.dumps({"id": "x", "task": "mir", "dataset": "mintrec", "text": "Joke",
                               "checkpoint": "/elsewhere"}) + "\n")
  write_jsonl(records, tmp_path / "ok.jsonl")
  assert main(["--checkpoint", str(model), "--manifest", str(tmp_path / "ok.jsonl"), "--out", str(other)]) == 2
  assert f"{other}:1: field 'checkpoint': predictions of '/elsewhere'" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    main(["--checkpoint", str(model), "--task", "poetry", "--video", video])
  assert e.value.code == 2 and "invalid choice: 'poetry'" in capsys.readouterr().err


def test_single_video_printout():
  line = {"id": "d", "task": "erg", "text": "<think>Firstly, x</think>\n Sorry.", "answer": "Sorry.",
          "think": "Firstly, x", "gates": None}
  assert render(line, as_json=False) == "[think]\nFirstly, x\n[reply]\nSorry."
  assert render(line | {"task": "mer", "answer": "happy", "think": None}, as_json=False) == "happy"
  assert json.loads(render(line, as_json=True)) == line


def test_history_files_and_duplicate_ids(setup, tmp_path, capsys):
  model, records = setup
  text, obj = tmp_path / "h.txt", tmp_path / "h.json"
  text.write_text("speaker: My friend moved away.\nlistener: That sounds hard.\n")
  obj.write_text(json.dumps({"context": "a move", "dialogue_history": [{"role": "speaker", "utterance": "Hi."}]}))
  turns = (Turn("speaker", "My friend moved away."), Turn("listener", "That sounds hard."))
  assert read_history(str(text)) == (turns, "")
  assert read_history(str(obj)) == ((Turn("speaker", "Hi."),), "a move")
  write_jsonl([records[0], records[0]], tmp_path / "dupes.jsonl")
  assert main(["--checkpoint", str(model), "--manifest", str(tmp_path / "dupes.jsonl"), "--out", str(tmp_path / "o")]) == 2
  assert (f"dupes.jsonl:2: field 'id': a second record for mercaptionplus id {records[0].id!r} (the first at "
          in capsys.readouterr().err)


def test_sims_and_simsv2_ids_in_one_manifest(tmp_path, capsys):
  # SIMSv2 holds every SIMS test id: records and finished predictions are named by (dataset, id). No model is
  # needed: a manifest whose predictions are all in --out returns before loading it.
  folder = tmp_path / "not_a_model"
  folder.mkdir()
  records = [Record(id=i, task="msa", dataset=d, split="test", target="", video=str(tmp_path / f"{i}.mp4"))
             for d in ("sims", "simsv2") for i in ("v1", "v2")]
  write_jsonl(records, tmp_path / "test.jsonl")
  out = tmp_path / "preds.jsonl"
  done = [{**dict.fromkeys(KEYS, ""), "id": r.id, "task": "msa", "dataset": r.dataset, "gates": None,
           "checkpoint": str(folder.absolute())} for r in records]
  args = ["--checkpoint", str(folder), "--manifest", str(tmp_path / "test.jsonl"), "--out", str(out)]
  out.write_text("".join(json.dumps(line) + "\n" for line in done))
  assert main(args) == 0 and "all 4 predictions already there" in capsys.readouterr().out
  out.write_text("".join(json.dumps(line) + "\n" for line in done[:3]))  # simsv2/v2 not done: the model is loaded
  assert main(args) == 2 and "--checkpoint is not a model folder" in capsys.readouterr().err
  write_jsonl(records + records[1:2], tmp_path / "test.jsonl")
  assert main(args) == 2
  assert "test.jsonl:5: field 'id': a second record for sims id 'v2'" in capsys.readouterr().err


def test_bad_manifest_lines_exit_2_naming_file_line_and_field(setup, tmp_path, capsys):
  model, records = setup
  good = json.dumps(records[0].to_json())
  cases = {
      "not_json": ("{", ":2: not JSON"),
      "array": ("[1]", ":2: expected a JSON object, got array"),
      "no_split": (json.dumps(records[1].to_json() | {"split": None}), ":2: field 'split': expected a string"),
      "missing_id": (json.dumps({k: v for k, v in records[1].to_json().items() if k != "id"}), ":2: field 'id': missing"),
      "unknown": (json.dumps(records[1].to_json() | {"lables": []}), ":2: field 'lables': unknown field"),
      "labels_string": (json.dumps(records[1].to_json() | {"labels": "happy"}),
                        ":2: field 'labels': expected an array of strings, got string"),
      "turn": (json.dumps(records[1].to_json() | {"history": [{"role": "a"}]}), ":2: field 'history': expected"),
      "split": (json.dumps(records[1].to_json() | {"split": "val"}), ":2: field 'split': 'val' is not one of"),
  }
  for name, (line, message) in cases.items():
    path = tmp_path / f"{name}.jsonl"
    path.write_text(f"{good}\n{line}\n")
    assert main(["--checkpoint", str(model), "--manifest", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {path}{message}" in err, (name, err)


def _answers(path: Path) -> dict[tuple[str, str], str]:
  return {(p["dataset"], p["id"]): p["text"] for p in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def sampled(setup, tmp_path_factory):
  """(the arguments, the manifest's answers at batch 1 on one device): eight records (the four twice, under other
  ids) drawn with --sample."""
  model, records = setup
  tmp = tmp_path_factory.mktemp("sampled")
  records = records + [Record.from_json(r.to_json() | {"id": r.id + "_b"}) for r in records]
  write_jsonl(records, tmp / "test.jsonl")
  args = ["--checkpoint", str(model), "--manifest", str(tmp / "test.jsonl"), "--sample", "--seed", "5", *NEW]
  assert main([*args, "--out", str(tmp / "b1.jsonl"), "--batch-size", "1"]) == 0
  one = _answers(tmp / "b1.jsonl")
  assert len(one) == 8 and len(set(one.values())) >= 6  # sampled answers differ between records
  return args, tmp / "b1.jsonl", one


def test_sampled_answers_do_not_depend_on_batch_size_or_resume(sampled, tmp_path, capsys):
  # At batch 8, and resumed at batch 8 after a kill that left three lines of the batch-1 run and a cut one.
  args, first, one = sampled
  assert main([*args, "--out", str(tmp_path / "b8.jsonl"), "--batch-size", "8"]) == 0
  assert _answers(tmp_path / "b8.jsonl") == one
  lines = first.read_text().splitlines()
  (tmp_path / "resumed.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
  capsys.readouterr()
  assert main([*args, "--out", str(tmp_path / "resumed.jsonl"), "--batch-size", "8"]) == 0
  assert "5 new predictions" in capsys.readouterr().out and _answers(tmp_path / "resumed.jsonl") == one


@pytest.mark.slow  # 42 s; the mesh it uses (model.mesh) is checked on 4 devices by test_sharding's training step
def test_sampled_answers_on_4_devices_equal_one_device(sampled, cli, tmp_path):
  # Batch 8 split over 4 simulated devices in a subprocess (60 s at load 6 on 2 cores, compilation cached).
  args, _, one = sampled
  run = cli(*args, "--out", str(tmp_path / "d4.jsonl"), "--batch-size", "8", devices=4)
  assert run.returncode == 0, run.stderr
  assert _answers(tmp_path / "d4.jsonl") == one
