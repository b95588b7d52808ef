"""python -m nanoemox_jax.infer: answer one video, or a whole manifest into a resumable JSONL file.

    python -m nanoemox_jax.infer --checkpoint DIR --task mer|ovmer|msa|eri|mir|erg --video FILE
        [--audio FILE] [--subtitle TEXT] [--history FILE] [--candidates a,b,c|DATASET] [--json]
    python -m nanoemox_jax.infer --checkpoint DIR --manifest FILE --out preds.jsonl [--batch-size 8] [--cut-left]

--checkpoint is a `checkpoints.load` folder (a training phase's `<workdir>/<phase>/model`); the tokenizer is
--tokenizer, else the `tokenizer/` folder inside the checkpoint. Greedy by default; --sample takes the authors'
settings (`predict.AUTHORS_SAMPLING`), which --temperature / --top-p / --max-new-tokens override.

Single video: the record is a test item (`templates.question`: MER and MSA get the benchmarks' open-vocabulary
question, MER the closed-set one when --candidates is given; MIR's candidates default to MIntRec's 20). Audio
comes from --audio, else the video's own track; a video without one is answered with the audio masked (a
warning says so). ERG: --history is a JSON list of {"role", "text" or "utterance"} turns, an AvaMERG turn
object ({"context", "dialogue_history": [...]}) or a text file of `role: text` lines; --subtitle is the current
user input (default: the history's last turn). The answer is printed (ERG: the <think> part and the reply).

Manifest (`nanoemox_jax.data.prepare`'s JSONL, read strictly: a bad line is one error naming file, line and field):
one prediction line per record, `{"id", "task", "dataset", "text", "answer", "think", "gates", "checkpoint"}` (see
`nanoemox_jax.data.predictions`), written and synced per batch; a rerun skips the records already in --out (a last
line cut by a kill is dropped with a warning naming it; any other bad line is an error naming file, line, field).
Records are named by (dataset, id), unique in the manifest. The batch is split over all local devices (model
replicated); records are batched by prompt length, their media decoded ahead by --threads (or --workers processes);
--sample draws each record from its own key (--seed and its dataset and id), so answers do not depend on
--batch-size, the devices or a resume. A record whose media fail is answered with that modality
masked (logged). --features STORE (either mode): tower outputs are read from a feature store (`nanoemox_jax.data.
features`, training's `paths.features`) where it holds the media's entry for this model's towers and settings (key:
the media files' sha256, the towers' weight digest, --tower-dtype and --compute-dtype, the decoder's settings: on a
GPU both default to bfloat16, as in training, so a training run's store serves inference); the other records' media
are decoded and run through the towers first, once, and written to the store (a read-only store keeps them in
memory). Exit codes: 0 done, 1 a machine error (full disk, read-only --out), 2 bad input (the message names the
file, record or field), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.data import media, templates
from nanoemox_jax.data.manifest import Record, Turn
from nanoemox_jax.data.predictions import InputError, Prediction, append_jsonl, json_lines, read_records
from nanoemox_jax.data.tokenizer import BUNDLED, Tokenizer
from nanoemox_jax.infer import predict as pred
from nanoemox_jax.model import nanoemox

TASKS = ("mer", "ovmer", "msa", "eri", "mir", "erg")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m nanoemox_jax.infer", description=__doc__.splitlines()[0])
  p.add_argument("--checkpoint", required=True, help="checkpoints.load folder (a phase's <workdir>/<phase>/model)")
  p.add_argument("--tokenizer", help="Qwen2 tokenizer folder (default: CHECKPOINT/tokenizer)")
  mode = p.add_mutually_exclusive_group(required=True)
  mode.add_argument("--video", help="single-video mode: the video file")
  mode.add_argument("--manifest", help="manifest mode: a JSONL manifest (nanoemox_jax.data.prepare)")
  single = p.add_argument_group("single video")
  single.add_argument("--task", choices=TASKS)
  single.add_argument("--audio", help="audio file (default: the video's audio track)")
  single.add_argument("--subtitle", default="", help="subtitle; ERG: the current user input")
  single.add_argument("--history", help="ERG dialogue history (JSON or `role: text` lines)")
  single.add_argument("--candidates", help="candidate labels 'a,b,c' or a dataset name of templates.CANDIDATES")
  single.add_argument("--json", action="store_true", help="print the JSON line instead of the answer")
  many = p.add_argument_group("manifest")
  many.add_argument("--out", help="predictions JSONL (appended to; finished ids are skipped)")
  many.add_argument("--batch-size", type=int, default=8)
  many.add_argument("--workers", type=int, default=0, help="media-decoding processes (0: threads of the main process)")
  many.add_argument("--threads", type=int, default=2, help="media-decoding threads (with --workers 0)")
  gen = p.add_argument_group("generation")
  gen.add_argument("--sample", action="store_true", help=f"the authors' sampling: {pred.AUTHORS_SAMPLING}")
  gen.add_argument("--temperature", type=float, help="0: greedy (default without --sample)")
  gen.add_argument("--top-p", type=float)
  gen.add_argument("--max-new-tokens", type=int, help="default 512 (greedy), 1200 (--sample)")
  gen.add_argument("--seed", type=int, default=0)
  gen.add_argument("--max-prompt-tokens", type=int, default=pred.BUCKETS[-1], help="longest prompt (padded bucket)")
  gen.add_argument("--cut-left", action="store_true",
                   help="cut a longer prompt's first text tokens (never its placeholders), as the authors cut theirs "
                        "to max_length 2000 - max_new_tokens (with --sample: --max-prompt-tokens 800)")
  gen.add_argument("--features", metavar="STORE",
                   help="feature store folder: stored tower outputs are read, missing ones computed and written")
  gen.add_argument("--tower-dtype", choices=("auto", *DTYPES), default="auto",
                   help="frozen towers and LM base weights (auto: bfloat16 on an accelerator, float32 on CPU)")
  gen.add_argument("--compute-dtype", choices=("auto", *DTYPES), default="auto",
                   help="activations (auto: bfloat16 on an accelerator, as the paper configs train; float32 on CPU)")
  args = p.parse_args(argv)
  if args.manifest:
    if not args.out:
      p.error("--manifest needs --out")
    extra = [f"--{k}" for k in ("task", "audio", "subtitle", "history", "candidates", "json") if getattr(args, k)]
    if extra:
      p.error(f"{', '.join(extra)} apply to single-video mode, not --manifest")
  elif not args.task:
    p.error("--video needs --task")
  elif args.history and args.task != "erg":
    p.error("--history applies to --task erg")
  if args.features and Path(args.features).exists() and not Path(args.features).is_dir():
    p.error(f"--features {args.features}: not a folder (a feature store, nanoemox_jax.data.features)")
  if args.batch_size < 1 or args.max_prompt_tokens < 2 or args.threads < 0 or args.workers < 0:
    p.error("--batch-size and --max-prompt-tokens must be positive, --threads and --workers not negative")
  return args


def options(args: argparse.Namespace) -> dict:
  """`predict.generate_batches` keyword arguments."""
  sampling = pred.AUTHORS_SAMPLING if args.sample else {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512}
  chosen = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in sampling.items()}
  buckets = [args.max_prompt_tokens]  # the limit and its halves down to 256
  while buckets[0] // 2 >= 256:
    buckets.insert(0, buckets[0] // 2)
  return chosen | {"batch_size": args.batch_size, "seed": args.seed, "workers": args.workers,
                   "threads": args.threads, "buckets": tuple(buckets), "cut_left": args.cut_left,
                   "features": args.features}


def load(args: argparse.Namespace) -> tuple[nanoemox.NanoEmoX, Tokenizer]:
  if not (Path(args.checkpoint) / "nanoemox.json").is_file():
    raise InputError(f"{args.checkpoint}: --checkpoint is not a model folder (no nanoemox.json; see "
                     "nanoemox_jax.checkpoints.load)")
  folder = Path(args.tokenizer) if args.tokenizer else Path(args.checkpoint) / "tokenizer"
  if not args.tokenizer and not folder.is_dir():
    raise InputError(f"{args.checkpoint}: no tokenizer/ folder recorded with the model; pass --tokenizer DIR "
                     f"(the LM's tokenizer folder, e.g. {BUNDLED})")
  tokenizer = Tokenizer(folder)
  auto = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
  dtype = lambda choice: auto if choice == "auto" else DTYPES[choice]
  return parts.load(args.checkpoint, dtype=dtype(args.compute_dtype), tower_dtype=dtype(args.tower_dtype)), tokenizer


def read_history(path: str) -> tuple[tuple[Turn, ...], str]:
  """(turns, context) from a history file (see the module docstring)."""
  try:
    text = Path(path).read_text(encoding="utf-8")
  except OSError as e:
    raise InputError(f"{path}: --history: {e.strerror or e}") from None
  if Path(path).suffix != ".json":
    turns = []
    for lineno, line in enumerate(text.splitlines(), 1):
      role, sep, said = line.partition(":")
      if line.strip() and not sep:
        raise InputError(f"{path}:{lineno}: --history: expected 'role: text', got {line!r}")
      if sep:
        turns.append(Turn(role.strip(), said.strip()))
    return tuple(turns), ""
  try:
    obj = json.loads(text)
    context = obj.get("context", "") if isinstance(obj, dict) else ""
    items = obj["dialogue_history"] if isinstance(obj, dict) else obj
    return tuple(Turn(t["role"], t["text"] if "text" in t else t["utterance"]) for t in items), context
  except (ValueError, KeyError, TypeError) as e:
    raise InputError(f"{path}: --history: not a JSON list of {{'role', 'text'}} turns or an AvaMERG turn "
                     f"object ({type(e).__name__}: {e})") from None


def single_record(args: argparse.Namespace) -> Record:
  """The video as a test `Record`; its media are checked first (a missing or corrupt file is an error, a video
  without an audio track masks the audio)."""
  try:
    media.read_frames(args.video)
    if args.audio:
      media.load_audio(args.audio)
  except media.MediaError as e:
    raise InputError(f"--{e.field}: {e}") from None
  if not args.audio:
    try:
      media.load_audio(args.video)
    except media.MediaError as e:
      print(f"warning: {e}; answering with the audio masked", file=sys.stderr)
  candidates = ()
  if args.candidates:
    candidates = templates.CANDIDATES.get(args.candidates) or tuple(
        c.strip() for c in args.candidates.split(",") if c.strip())
  elif args.task == "mir":
    candidates = templates.CANDIDATES["mintrec"]
  history, context, subtitle = (), "", args.subtitle
  if args.history:
    history, context = read_history(args.history)
    if not subtitle and history:
      history, subtitle = history[:-1], history[-1].text
  split = "train" if args.task == "mer" and candidates else "test"  # the closed-set MER question (templates.question)
  return Record(id=Path(args.video).stem, task=args.task, dataset="cli", split=split, target="",
                candidates=candidates, subtitle=subtitle, history=history, video=args.video, audio=args.audio,
                meta={"context": context})


def finished(out: Path, checkpoint: str) -> set[tuple[str, str]]:
  """The (dataset, id) of the predictions already in `out`. A last line without its newline (a write cut by a
  kill) is cut off the file (synced) with a warning naming the file and line, and its record is redone; any other
  line that is not a prediction of `checkpoint` is an InputError naming the file, line and field."""
  if not out.exists():
    return set()
  data = out.read_bytes()
  if data and not data.endswith(b"\n"):
    keep, lineno = data.rfind(b"\n") + 1, data.count(b"\n") + 1
    with open(out, "r+b") as f:
      f.truncate(keep)
      f.flush()
      os.fsync(f.fileno())
    print(f"warning: {out}:{lineno}: dropped an incomplete last line (a killed write); its record is redone",
          file=sys.stderr)
    if not data[:keep].strip():
      return set()
  done = set()
  for lineno, obj in json_lines(out, "predictions"):
    where = f"{out}:{lineno}"
    p = Prediction.from_json(obj, where=where)
    if p.checkpoint != checkpoint:
      raise InputError(f"{where}: field 'checkpoint': predictions of {p.checkpoint!r}, not {checkpoint!r}; choose "
                       "another --out")
    done.add((p.dataset, p.id))
  return done


def run_single(args: argparse.Namespace, checkpoint: str) -> None:
  record = single_record(args)
  model, tokenizer = load(args)
  p = pred.predict(model, tokenizer, [record], **options(args) | {"batch_size": 1})[0]
  print(render(dataclasses.replace(p, checkpoint=checkpoint).to_json(), args.json))


def render(line: dict, as_json: bool) -> str:
  """What single-video mode prints: the JSON line, or the answer (ERG: `[think]` block, then `[reply]`)."""
  if as_json:
    return json.dumps(line, ensure_ascii=False)
  return line["answer"] if line["think"] is None else f"[think]\n{line['think']}\n[reply]\n{line['answer']}"


def run_manifest(args: argparse.Namespace, checkpoint: str) -> None:
  records = read_records(args.manifest)
  out = Path(args.out)
  done = finished(out, checkpoint)
  todo = [r for r in records if (r.dataset, r.id) not in done]
  if not todo:
    print(f"{out}: all {len(records)} predictions already there")
    return
  model, tokenizer = load(args)
  for name in ("pipeline", "features"):  # one line per masked modality; the store's entries read / computed
    logging.getLogger(f"nanoemox_jax.data.{name}").setLevel(logging.INFO)
  out.parent.mkdir(parents=True, exist_ok=True)
  with logging_redirect_tqdm(), tqdm(total=len(records), initial=len(records) - len(todo), unit="sample",
                                     desc=Path(args.manifest).name) as bar:
    for batch in pred.predict_batches(model, tokenizer, todo, **options(args)):
      append_jsonl((dataclasses.replace(p, checkpoint=checkpoint) for p in batch), out)
      bar.update(len(batch))
  print(f"{out}: {len(todo)} new predictions, {len(records)} in all")


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
  checkpoint = os.path.abspath(args.checkpoint)
  try:
    (run_manifest if args.manifest else run_single)(args, checkpoint)
  except (InputError, media.MediaError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("\ninterrupted: finished batches are kept; the same command continues", file=sys.stderr)
    return 130
  except OSError as e:  # the machine's, not the input's: a full disk (ENOSPC), a read-only --out
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
