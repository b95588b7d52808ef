"""The judge client against a real chat-completions server on loopback (fake replies): batching, retry, cache."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nanoemox_jax.data.manifest import Record
from nanoemox_jax.data.predictions import Prediction
from nanoemox_jax.evaluate import emer, judge, mer_unibench, wheel


class FakeServer:
  """Counts requests, fails the first `fail_first` with `fail_code`, answers by the kind of prompt."""

  def __init__(self):
    self.requests, self.inflight, self.max_inflight = 0, 0, 0
    self.fail_first, self.fail_code, self.delay_s = 0, 503, 0.0
    self.bodies, self.headers = [], []
    self.lock = threading.Lock()
    server = self

    class Handler(BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
          server.requests += 1
          n = server.requests
          server.inflight += 1
          server.max_inflight = max(server.max_inflight, server.inflight)
          server.bodies.append(body)
          server.headers.append(dict(self.headers))
        try:
          time.sleep(server.delay_s)
          if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "not found"})
          if n <= server.fail_first:
            return self._send(server.fail_code, {"error": "busy"})
          reply = server.reply(body["messages"][-1]["content"])
          self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})
        finally:
          with server.lock:
            server.inflight -= 1

      def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  @staticmethod
  def reply(prompt: str) -> str:
    if "Choose the most likely sentiment" in prompt:
      return "Output: negative" if "sad" in prompt else "positive"
    if "in list format" in prompt:
      item = prompt.rsplit("Input: ", 1)[1]
      return "[sad, worried]" if "gloomy" in item else "[happy]"
    if "Video description" in prompt:
      return "anxious" if "nervous" in prompt.rsplit("Video description:", 1)[1] else "happy"
    if "Reference description" in prompt:
      return "'Predicted score': 8; 'Reason': close" if "nervous" in prompt.split("Predicted description")[1] \
          else "'Predicted score': 2.5; 'Reason': far"
    if "True emotions" in prompt:
      return "'Predicted score': 9" if prompt.count("anxious") == 2 else "no score given"
    return "echo: " + prompt


@pytest.fixture
def server():
  s = FakeServer()
  yield s
  s.httpd.shutdown()
  s.httpd.server_close()


def _judge(server, tmp_path, **kw):
  settings = {"base_url": server.url, "model": "fake-7b", "seed": 3, "concurrency": 4, "backoff_s": 0.01,
                  "cache_dir": str(tmp_path / "cache")}
  return judge.Judge(judge.JudgeConfig(**{**settings, **kw}))


def test_batch_is_concurrent_and_ordered(server, tmp_path):
  server.delay_s = 0.1
  j = _judge(server, tmp_path)
  prompts = [f"question {i}" for i in range(12)] + ["question 3"]  # a repeated prompt is asked once
  t0 = time.perf_counter()
  assert j.complete(prompts) == [f"echo: {p}" for p in prompts]
  assert server.requests == 12 and j.requests_sent == 12
  assert server.max_inflight > 1 and time.perf_counter() - t0 < 12 * 0.1  # requests overlapped
  body = server.bodies[0]
  assert body["model"] == "fake-7b" and body["messages"] == [{"role": "user", "content": body["messages"][0]["content"]}]
  assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.7, 0.8, 512, 3)
  assert "repetition_penalty" not in body


def test_retry_on_transient_errors(server, tmp_path, monkeypatch):
  monkeypatch.setenv("MY_KEY", "sk-test")
  server.fail_first = 3
  j = _judge(server, tmp_path, concurrency=1, api_key_env="MY_KEY")
  assert j.complete(["a", "b"]) == ["echo: a", "echo: b"]
  assert server.requests == 5 and j.requests_sent == 5  # 3 failures (503) + 2 answers
  assert server.headers[-1]["Authorization"] == "Bearer sk-test"
  server.requests, server.fail_first, server.fail_code = 0, 1, 429
  assert _judge(server, tmp_path, cache_dir=str(tmp_path / "c2")).complete(["c"]) == ["echo: c"]
  assert server.requests == 2


def test_gives_up(server, tmp_path):
  server.fail_first = 100
  with pytest.raises(judge.JudgeError, match="gave up after 3 attempts"):
    _judge(server, tmp_path, max_retries=2).complete(["a"])
  server.requests, server.fail_code = 0, 400  # a client error is not retried
  with pytest.raises(judge.JudgeError, match="HTTP 400"):
    _judge(server, tmp_path).complete(["a"])
  assert server.requests == 1
  closed = judge.JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, backoff_s=0.01,
                             cache_dir=str(tmp_path / "c3"))
  j = judge.Judge(closed)
  with pytest.raises(judge.JudgeError, match="gave up after 2 attempts"):
    j.complete(["a"])
  assert j.requests_sent == 2


def test_cache_makes_a_rerun_free(server, tmp_path):
  prompts = [f"p{i}" for i in range(6)]
  first = _judge(server, tmp_path).complete(prompts)
  assert server.requests == 6
  again = _judge(server, tmp_path)
  assert again.complete(prompts) == first and server.requests == 6 and again.cache_hits == 6
  assert again.requests_sent == 0
  # other sampling settings or another model are other cache entries
  again.complete(prompts[:2], temperature=0.0)
  _judge(server, tmp_path, model="other").complete(prompts[:1])
  assert server.requests == 9


def test_config_from_env_and_file(tmp_path):
  env = {"NANOEMOX_JUDGE_BASE_URL": "http://h/v1", "NANOEMOX_JUDGE_MODEL": "m", "NANOEMOX_JUDGE_TEMPERATURE": "0",
         "NANOEMOX_JUDGE_TOP_P": "none", "NANOEMOX_JUDGE_SEED": "7"}
  c = judge.JudgeConfig.load(environ=env)
  assert (c.temperature, c.top_p, c.seed, c.max_tokens) == (0.0, None, 7, 512)
  path = tmp_path / "judge.json"
  path.write_text(json.dumps({"model": "qwen", "max_tokens": 64}))
  c = judge.JudgeConfig.load(path, environ=env)
  assert c.describe() == {"base_url": "http://h/v1", "model": "qwen", "temperature": 0.0, "max_tokens": 64, "seed": 7}
  with pytest.raises(ValueError, match="lack"):
    judge.JudgeConfig.load(environ={})
  path.write_text(json.dumps({"modle": "x"}))
  with pytest.raises(ValueError, match="unknown judge setting"):
    judge.JudgeConfig.load(path, environ=env)


def test_reply_parsing():
  assert judge.clean_reply(" Output: [happy,\n sad]\n") == "[happy, sad]"
  assert judge.clean_reply("输出：positive") == "positive"
  assert judge.parse_score("'Predicted score': 7.5; 'Reason': 3 clues") == 7.5
  assert judge.parse_score("no number") == 0.0 and judge.parse_score("1..5") == 0.0


def test_mer_unibench_through_the_judge(server, tmp_path):
  j = _judge(server, tmp_path)
  asked = [Prediction(id=str(i), task="mer", dataset="meld", text=t, answer=t)
           for i, t in enumerate(["He looks gloomy.", "She smiles."])]
  labels, replies = mer_unibench.predicted_labels(asked, j)
  assert labels == [["sad", "worried"], ["happy"]] and replies == ["[sad, worried]", "[happy]"]
  # a reply already on disk (a published -openset.npz) is used as it is: no request for it
  sent = j.requests_sent + j.cache_hits
  on_disk = Prediction(id="2", task="mer", dataset="meld", text="She smiles.", answer="", openset="[angry]")
  labels, replies = mer_unibench.predicted_labels([asked[0], on_disk], j)
  assert labels == [["sad", "worried"], ["angry"]] and j.requests_sent + j.cache_hits == sent + 1
  records = [Record(id=str(i), task="msa", dataset="mosei", split="test", target="", labels=(s,), meta={"valence": v})
             for i, (s, v) in enumerate([("negative", -2.0), ("positive", 1.0), ("positive", 0.6)])]
  preds = [Prediction(id=str(i), task="msa", dataset="mosei", text=t, answer=t)
           for i, t in enumerate(["He looks gloomy.", "She smiles.", "He looks gloomy."])]
  out = mer_unibench.score("mosei", records, preds, j, wheel.load())
  # sentiments: negative (after 'Output:' is cleaned), positive, negative -> 2 of 3 right
  assert out["scores"]["accuracy"] == pytest.approx(2 / 3)


def test_emer_overlaps(server, tmp_path):
  j = _judge(server, tmp_path)
  s = emer.overlap_scores(["He is nervous before the exam.", "He is nervous."],
                          ["The man seems nervous.", "The man is cheerful."], j)
  # clue: 8 and 2.5; label: summaries (anxious, anxious) -> 9, (anxious, happy) -> no number -> 0
  assert s["clue_overlap"] == pytest.approx((8 + 2.5) / 2) and s["label_overlap"] == pytest.approx(9 / 2)
  assert all(b["temperature"] == 0.0 and "top_p" not in b for b in server.bodies)


def test_cli_with_judge_reruns_from_cache(server, tmp_path):
  from nanoemox_jax.data.manifest import write_jsonl
  from nanoemox_jax.evaluate.__main__ import main
  records = [Record(id="o1", task="ovmer", dataset="ovmerd", split="test", target="", labels=("sad", "worried")),
             Record(id="o2", task="ovmer", dataset="ovmerd", split="test", target="", labels=("neutral",)),
             Record(id="o3", task="ovmer", dataset="ovmerd", split="test", target="", labels=("happy",))]
  write_jsonl(records, tmp_path / "labels.jsonl")
  answers = ["He looks gloomy and tense.", "Hard to say.", "She smiles."]
  (tmp_path / "preds.jsonl").write_text("".join(
      json.dumps({"id": f"o{i + 1}", "task": "ovmer", "dataset": "ovmerd", "text": a, "checkpoint": "final"}) + "\n"
      for i, a in enumerate(answers)))
  config = tmp_path / "judge.json"
  config.write_text(json.dumps({"base_url": server.url, "model": "fake-7b", "seed": 0,
                                "cache_dir": str(tmp_path / "cache"), "backoff_s": 0.01}))
  args = ["--benchmark", "ovmerd", "--predictions", str(tmp_path / "preds.jsonl"), "--labels",
          str(tmp_path / "labels.jsonl"), "--judge", str(config), "--out", str(tmp_path / "out")]
  for sent in (3, 0):
    assert main(args) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["judge_requests"] == {"sent": sent, "cached": 3 - sent} and server.requests == 3
  # the judge's lists equal the truths on every wheel (o2's neutral truth is skipped)
  assert scores["selected"]["ovmerd"]["scores"] == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
  assert scores["judge"] == {"base_url": server.url, "model": "fake-7b", "temperature": 0.7, "top_p": 0.8,
                             "max_tokens": 512, "seed": 0}
