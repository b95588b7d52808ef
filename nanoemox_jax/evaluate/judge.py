"""The LLM judge: an OpenAI-compatible chat-completions client with the benchmarks' judge prompts.

MER-UniBench turns free-form answers into open-set labels (and labels into a sentiment) with Qwen2.5-7B-Instruct
(Nano-EmoX `utils/qwen.py` `reason_to_openset_qwen`, `openset_to_sentiment_qwen`; vLLM sampling temperature 0.7,
top-p 0.8, 512 tokens, one user message). EMER scores clue and label overlap with an OpenAI model at
temperature 0 (Nano-EmoX `eval_ovmerd.py`, AffectGPT `evaluation.py`). The prompts below are ours, with the
reference's instructions, few-shot examples and output formats (theirs for EMER are in Chinese).

Requests go out concurrently (`concurrency` threads), are retried on HTTP 429 / 5xx and connection errors
with exponential backoff, and every reply is cached on disk under a hash of (prompt, model, sampling
settings): a rerun with the same settings sends no request. An entry is written atomically (temporary sibling,
fsync, rename: `checkpoints.params_io.atomic_write`) and checked on read; a damaged one is named on stderr and
asked again. Only the standard library is used.

Settings come from a JSON file (`--judge FILE`) over environment variables NANOEMOX_JUDGE_<FIELD>
(BASE_URL, MODEL, TEMPERATURE, TOP_P, MAX_TOKENS, SEED, CACHE_DIR, ...); the API key is read from the
variable named by `api_key_env` (default NANOEMOX_JUDGE_API_KEY) and never written anywhere.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanoemox_jax.checkpoints.params_io import atomic_write
from nanoemox_jax.data.predictions import InputError, json_type

ENV_PREFIX = "NANOEMOX_JUDGE_"
SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "repetition_penalty")
TRANSIENT_HTTP = frozenset({408, 409, 425, 429})


class JudgeError(RuntimeError):
  """A request that failed for good (a non-transient HTTP error, a malformed reply, or retries exhausted)."""


@dataclass(frozen=True)
class JudgeConfig:
  """Where the judge is and how it samples. None sampling fields are left out of the request."""
  base_url: str  # e.g. http://localhost:8000/v1 (the client posts to <base_url>/chat/completions)
  model: str
  temperature: float | None = 0.7
  top_p: float | None = 0.8
  max_tokens: int | None = 512
  seed: int | None = None
  repetition_penalty: float | None = None  # vLLM extension (the reference used 1.05); OpenAI rejects it
  api_key_env: str = ENV_PREFIX + "API_KEY"
  concurrency: int = 8
  max_retries: int = 5
  backoff_s: float = 1.0
  timeout_s: float = 120.0
  cache_dir: str = "~/.cache/nanoemox_jax/judge"

  @classmethod
  def load(cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> JudgeConfig:
    """Fields from ENV_PREFIX variables, overridden by the JSON object in `path` (when given)."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, f in fields.items():
      if (raw := environ.get(ENV_PREFIX + name.upper())) is not None:
        values[name] = _parse_env(raw, f.type)
    if path is not None:
      try:
        overrides = json.loads(Path(path).read_text(encoding="utf-8"))
      except OSError as e:
        raise InputError(f"{path}: cannot read the judge settings: {e.strerror or e}") from None
      except ValueError as e:  # not UTF-8, not JSON
        raise InputError(f"{path}: judge settings are not JSON ({e})") from None
      if not isinstance(overrides, dict):
        raise InputError(f"{path}: judge settings: expected a JSON object, got {json_type(overrides)}")
      unknown = sorted(set(overrides) - set(fields))
      if unknown:
        raise InputError(f"{path}: field {unknown[0]!r}: unknown judge setting(s) {unknown}; known: {sorted(fields)}")
      values.update(overrides)
    missing = [k for k in ("base_url", "model") if not values.get(k)]
    if missing:
      raise InputError(f"{path or ENV_PREFIX + '* variables'}: judge settings lack {missing}: set "
                       f"{[ENV_PREFIX + k.upper() for k in missing]} or put them in the --judge JSON file")
    return cls(**values)

  def sampling(self) -> dict[str, Any]:
    return {k: getattr(self, k) for k in SAMPLING if getattr(self, k) is not None}

  def describe(self) -> dict[str, Any]:
    """What a report records: endpoint, model and sampling settings (never the key)."""
    return {"base_url": self.base_url, "model": self.model, **self.sampling()}


def _parse_env(raw: str, kind: str) -> Any:
  if raw.lower() in ("", "none", "null"):
    return None
  if "int" in kind:
    return int(raw)
  if "float" in kind:
    return float(raw)
  return raw


class Judge:
  """Sends prompts, returns replies (cached). `requests_sent` counts HTTP attempts, `cache_hits` cached replies."""

  def __init__(self, config: JudgeConfig):
    self.config = config
    self.cache_dir = Path(config.cache_dir).expanduser()
    self.requests_sent = 0
    self.cache_hits = 0
    self._lock = threading.Lock()

  def complete(self, prompts: Sequence[str], **overrides: Any) -> list[str]:
    """The reply to every prompt, in order. `overrides` replace sampling settings for this call (None drops one)."""
    sampling = {**self.config.sampling(), **overrides}
    sampling = {k: v for k, v in sampling.items() if v is not None}
    replies: dict[str, str] = {}
    todo = []
    for prompt in dict.fromkeys(prompts):
      cached = self._cached(prompt, sampling)
      if cached is None:
        todo.append(prompt)
      else:
        replies[prompt] = cached
    with self._lock:
      self.cache_hits += len(replies)
    if todo:
      with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
        for prompt, reply in zip(todo, pool.map(lambda p: self._ask(p, sampling), todo)):
          replies[prompt] = reply
    return [replies[p] for p in prompts]

  def _key(self, prompt: str, sampling: Mapping[str, Any]) -> Path:
    blob = json.dumps({"prompt": prompt, "model": self.config.model, "settings": dict(sampling)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()
    return self.cache_dir / digest[:2] / f"{digest}.json"

  def _cached(self, prompt: str, sampling: Mapping[str, Any]) -> str | None:
    """The cached reply, or None. An entry that is not the JSON this judge wrote for this prompt, model and
    settings (torn, edited, another key's) is reported on stderr, naming the file, and asked again."""
    path = self._key(prompt, sampling)
    if not path.is_file():
      return None
    try:
      entry = json.loads(path.read_bytes().decode("utf-8"))
      ok = (isinstance(entry, dict) and isinstance(entry.get("reply"), str) and entry.get("prompt") == prompt
            and entry.get("model") == self.config.model and entry.get("settings") == dict(sampling))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
      ok = False
    if not ok:
      print(f"warning: {path}: a damaged judge cache entry; asking again", file=sys.stderr)
      return None
    return entry["reply"]

  def _ask(self, prompt: str, sampling: Mapping[str, Any]) -> str:
    reply = self._post({"model": self.config.model, "messages": [{"role": "user", "content": prompt}], **sampling})
    path = self._key(prompt, sampling)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"prompt": prompt, "model": self.config.model, "settings": dict(sampling),
                                   "reply": reply}, ensure_ascii=False).encode("utf-8"))
    return reply

  def _post(self, body: Mapping[str, Any]) -> str:
    url = self.config.base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get(self.config.api_key_env):
      headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode("utf-8")
    for attempt in range(self.config.max_retries + 1):
      with self._lock:
        self.requests_sent += 1
      wait = self.config.backoff_s * 2 ** attempt
      try:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
          payload = json.loads(response.read().decode("utf-8"))
        return _content(payload, url)
      except urllib.error.HTTPError as e:
        if e.code < 500 and e.code not in TRANSIENT_HTTP:
          raise JudgeError(f"{url}: HTTP {e.code}: {e.read()[:500].decode('utf-8', 'replace')}") from None
        if (retry_after := e.headers.get("Retry-After")) and retry_after.replace(".", "", 1).isdigit():
          wait = float(retry_after)
        error = f"HTTP {e.code}"
      except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as e:
        error = repr(e)
      if attempt == self.config.max_retries:
        raise JudgeError(f"{url}: gave up after {attempt + 1} attempts, last error {error}")
      time.sleep(wait)
    raise AssertionError("unreachable")


def _content(payload: Any, url: str) -> str:
  try:
    return payload["choices"][0]["message"]["content"] or ""
  except (KeyError, IndexError, TypeError):
    raise JudgeError(f"{url}: reply is not a chat completion: {str(payload)[:300]}") from None


# ---- prompts (instructions and output formats of the reference; our wording) ----

def openset_prompt(description: str) -> str:
  """Free-form answer -> open-set label list `[a, b]` (reference `reason_to_openset_qwen`)."""
  return ("Please act as an expert in the field of emotions. We give clues that may relate to the characters' "
          "emotions. From these clues, identify the emotional states of the main character, that is, the "
          "character described by the most detailed clues. Output only the emotion categories that can be clearly "
          "identified, separated by commas, in list format. If none can be identified, output an empty list. "
          "Input: We cannot tell what his emotional state is; Output: [] "
          "Input: His emotional state is happy, sad, and angry; Output: [happy, sad, angry] "
          f"Input: {description}; Output: ")


def sentiment_prompt(labels: str) -> str:
  """Open-set label list -> positive / negative / neutral (reference `openset_to_sentiment_qwen`)."""
  return ("Please act as an expert in the field of emotions. We give a few words that describe a character's "
          "emotions. Choose the most likely sentiment from the candidates [positive, negative, neutral]. "
          "Output the answer directly, without the analysis. "
          "Input: [joyful]; Output: positive "
          "Input: []; Output: neutral "
          f"Input: {labels}; Output: ")


def clue_overlap_prompt(reference: str, predicted: str) -> str:
  """EMER clue overlap, a 1-10 score (reference `func_clue_scoring`)."""
  return ("Below are the reference description of a character and a predicted description. Score the predicted "
          "description from 1 to 10 with these steps; output only the value of the score, and give the reason.\n"
          "1. Summarise what the reference description says about the character's emotional state.\n"
          "2. Summarise what the predicted description says about the character's emotional state.\n"
          "3. Measure the overlap between the predicted and the reference description: the higher the overlap, "
          "the higher the score.\n"
          "4. Output format: 'Predicted score': predicted score; 'Reason': reason\n"
          f"Input:\nReference description: {reference}\nPredicted description: {predicted}\nOutput:\n")


def emotion_summary_prompt(description: str) -> str:
  """A description -> the character's most likely emotion words (reference `get_summarized_emotions`)."""
  return ("From the video description below, infer the most likely emotional state of the character in the video; "
          "output only emotion words.\n"
          "Video description: He looks happy, but he is actually anxious\nOutput: anxious\n"
          f"Video description: {description}\nOutput:\n")


def label_overlap_prompt(reference: str, predicted: str) -> str:
  """EMER label overlap of two emotion summaries, a 1-10 score (reference `func_label_scoring`)."""
  return ("Below are the true emotions of a character and the predicted emotions. Measure the overlap between the "
          "predicted and the true emotions: the higher the overlap, the higher the score, from 1 to 10. Output "
          "only the value of the score, and give the reason.\n"
          "Output format: 'Predicted score': predicted score; 'Reason': reason\n"
          f"Input:\nTrue emotions: {reference}\nPredicted emotions: {predicted}\nOutput:\n")


_PREFIXES = ("输入", "输出", "翻译", "让我们来翻译一下：", "output", "Output", "input", "Input")
_SCORE = re.compile(r"\d\.*\d*")


def clean_reply(reply: str) -> str:
  """Reference `func_postprocess_qwen`: strip one leading 'Input'/'Output'-style word and a colon, drop newlines."""
  reply = reply.strip()
  for prefix in _PREFIXES:
    reply = reply.removeprefix(prefix)
  reply = reply.strip()
  for colon in (":", "："):
    reply = reply.removeprefix(colon)
  return reply.strip().replace("\n", "").strip()


def parse_score(reply: str) -> float:
  """The first number in a score reply (reference regex `[\\d][.]*[\\d]*`); 0.0 when there is none or it does not
  parse ("1..5", on which the reference crashes)."""
  m = _SCORE.search(reply)
  try:
    return float(m.group()) if m else 0.0
  except ValueError:
    return 0.0
