"""Prompt/target construction against the authors' prompt text and the tokenizer's placeholder ids."""

from __future__ import annotations

import random
import re

import pytest

from nanoemox_jax.data import templates
from nanoemox_jax.data.manifest import Record, Turn
from nanoemox_jax.data.templates import build_example, question
from nanoemox_jax.data.tokenizer import BUNDLED

TOKENIZER = BUNDLED  # the Qwen2 tokenizer files shipped with the package


def record(task: str, split: str = "train", **kw) -> Record:
  return Record(id="x", task=task, dataset="d", split=split, target=kw.pop("target", "ans"), **kw)


def runs(prompt: str, placeholder: str) -> list[int]:
  """Lengths of the contiguous runs of one placeholder."""
  return [len(m.group(0)) // len(placeholder) for m in re.finditer(f"(?:{re.escape(placeholder)})+", prompt)]


def test_full_prompt_text_with_one_token_each():
  prompt, target = build_example(record("mir", subtitle="hi there", candidates=("thank", "greet")), audio_tokens=1,
                                 frame_tokens=1, face_tokens=1, multi_tokens=1)
  # The official `multiface_audio_face_frame_text` prompt (Nano-EmoX base_dataset.py), spelled out by hand.
  assert prompt == (
      "###Human: The audio and video merged info is: <Multi><MultiHere></Multi>. "
      "The audio content is as follows: <Audio><AudioHere></Audio>. "
      "Meanwhile, We uniformly extract facial informations from video: <Video><FaceHere></Video>. "
      "Meanwhile, we uniformly sample raw frames from the video: <Video><FrameHere></Video>. "
      "The subtitle of this video is: <Subtitle>hi there</Subtitle>. "
      "Now, please answer my question based on all the provided information. "
      "[Intent]recognize speaker's intention from the provided candidate labels: thank, greet. ###Assistant: ")
  assert target == "ans###"


@pytest.mark.parametrize("frame_tokens", [32, 64, 128])
def test_placeholder_counts_and_contiguity(frame_tokens):
  prompt, _ = build_example(record("ovmer"), frame_tokens=frame_tokens)
  assert runs(prompt, "<AudioHere>") == [32] and runs(prompt, "<FrameHere>") == [frame_tokens]
  assert runs(prompt, "<FaceHere>") == [4] and runs(prompt, "<MultiHere>") == [1]
  assert prompt.startswith("###Human: ") and prompt.endswith(" ###Assistant: ")
  with pytest.raises(ValueError, match="positive"):
    build_example(record("ovmer"), face_tokens=0)


def test_missing_modalities_keep_placeholders():
  full, _ = build_example(record("mer", candidates=("a",), subtitle="s", video="v.mp4", audio="a.wav"))
  bare, _ = build_example(record("mer", candidates=("a",), subtitle="s"))
  assert full == bare


def test_questions_carry_task_identifiers_and_pools():
  assert len(templates.OV_QUESTIONS) == 5 and len(templates.ERI_QUESTIONS) == 4
  assert all(q.startswith("[Recogn_OV] ") for q in templates.OV_QUESTIONS)
  assert all(q.startswith("[Inference]") for q in templates.ERI_QUESTIONS)
  rng = random.Random(0)
  drawn = {question(record("ovmer"), rng) for _ in range(200)}
  assert drawn == set(templates.OV_QUESTIONS)  # the pool is sampled, all of it
  assert question(record("eri")) == templates.ERI_QUESTIONS[0]  # no rng: deterministic first paraphrase
  for task in ("mer", "ovmer", "eri", "mir"):
    assert question(record(task, candidates=("a",))).startswith(templates.TASK_IDS[task])
  assert "[Interaction]" in question(record("erg", meta={"context": "c"}))


def test_mer_candidates_and_zero_shot_protocol():
  train = record("mer", candidates=templates.CANDIDATES["cremad"])
  assert question(train) == ("[Recognition] Please select the label that can best describe the person's emotional "
                             "state from the provided candidate labels: anger, disgust, fear, happy, neutral, sad.")
  assert question(record("mer")) == "[Recognition] Please recognize the character's most likely emotional state."
  # Benchmarks (MER, MSA) are asked the open-vocabulary question.
  assert question(record("mer", "test", candidates=("a",))) == templates.OV_QUESTIONS[0]
  assert question(record("msa", "test")) == templates.OV_QUESTIONS[0]


def test_intent_candidate_lists():
  assert len(templates.CANDIDATES["mintrec"]) == len(set(templates.CANDIDATES["mintrec"])) == 20
  assert len(templates.CANDIDATES["mintrec2"]) == len(set(templates.CANDIDATES["mintrec2"])) == 30
  q = question(record("mir", candidates=templates.CANDIDATES["mintrec2"]))
  assert q.endswith("asking for opinions, care, comfort, complain, confirm, criticize, doubt, emphasize, explain, "
                    "flaunt, greet, inform, introduce, invite, joke, leave, oppose, plan, praise, prevent, refuse, "
                    "taunt, thank, warn.")


def test_erg_prompt_uses_dialogue_history_and_current_input():
  rec = record("erg", subtitle="I feel useless.", history=(Turn("speaker", "I lost my job."), Turn("listener", "Oh no.")),
               meta={"context": "job loss"}, target="<think>chain</think>\n reply")
  prompt, target = build_example(rec)
  assert ("The dialogue history is:<Dialogue History>speaker: I lost my job.\nlistener: Oh no.</Dialogue History>. "
          "Now here is the dialogue context:\n. Context: job loss\ncurrent user input:I feel useless.\n"
          "[Interaction]") in prompt
  assert "<Subtitle>" not in prompt and target == "<think>chain</think>\n reply###"
  aux, _ = build_example(record("erg_emotion", subtitle="I feel useless.", meta={"context": "job loss"}))
  assert "current speaker input:I feel useless.\nBase on all input information" in aux


def test_answer_formats():
  assert templates.mer_answer("sad", True) == "The most likely label is sad."
  assert templates.mer_answer("sad", False) == "The character's emotional state is sad."
  assert templates.ov_answer(("happy", "shy")) == "The character's emotional state is happy, shy."
  assert templates.sentiment_answer("positive") == "The character's sentiment state is positive."
  chain = {"event_scenario": "e", "speaker_emotion": "s", "emotion_cause": "c", "goal_to_response": "g"}
  assert templates.erg_answer(chain, "r") == ("<think>Firstly, the event scenario of this conversation is: e\n"
                                              "Secondly, the emotion of the speaker is s\nThirdly, the emotion cause "
                                              "is c\nFourthly, the goal to response is g</think>\n r")


def test_placeholders_tokenize_to_single_contiguous_ids():
  from nanoemox_jax.data.tokenizer import Tokenizer
  tok = Tokenizer(TOKENIZER)
  prompt, target = build_example(record("ovmer", subtitle="Oh my God, he's lost it."), frame_tokens=64)
  ids = tok.encode(prompt)
  for placeholder, count in (("<AudioHere>", 32), ("<FrameHere>", 64), ("<FaceHere>", 4), ("<MultiHere>", 1)):
    pid = tok.placeholder_ids[placeholder]
    where = [i for i, t in enumerate(ids) if t == pid]
    assert len(where) == count and where == list(range(where[0], where[0] + count)), placeholder
  assert tok.decode(tok.encode(target)) == target
