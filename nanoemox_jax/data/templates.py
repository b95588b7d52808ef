"""Prompt and target text for every task, as the Nano-EmoX authors' dataset classes build them.

Facts from GitHub waHAHJIAHAO/Nano-EmoX @ b08f985: `datasets/datasets/base_dataset.py` (question pools,
answer formats, the `multiface_audio_face_frame_text` prompt used in phases 2-3), the per-dataset
classes (candidate label lists), `datasets/datasets/avamerg_dataset.py` (the dialogue-history prompt
and the chain of empathy) and `inference_hybird.py` (benchmarks are asked the OV question, zero-shot).

Every prompt carries every placeholder group; a sample missing a modality keeps its placeholders
(the model gives them a zero embedding and a mask). The target is the answer plus `###`; the
tokenizer stage adds BOS/EOS.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from nanoemox_jax.data.manifest import Record, Turn

TASK_IDS = {"mer": "[Recognition]", "ovmer": "[Recogn_OV]", "eri": "[Inference]", "mir": "[Intent]",
            "erg": "[Interaction]"}
STOP = "###"

# Candidate label lists, in the authors' order and spelling.
CANDIDATES = {
    "cremad": ("anger", "disgust", "fear", "happy", "neutral", "sad"),
    "caer_ferv39k": ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
    "mintrec": ("complain", "praise", "apologise", "thank", "criticize", "agree", "taunt", "flaunt", "joke",
                "oppose", "comfort", "care", "inform", "advise", "arrange", "introduce", "leave", "prevent",
                "greet", "ask for help"),
    "mintrec2": ("acknowledge", "advise", "agree", "apologise", "arrange", "ask for help", "asking for opinions",
                 "care", "comfort", "complain", "confirm", "criticize", "doubt", "emphasize", "explain", "flaunt",
                 "greet", "inform", "introduce", "invite", "joke", "leave", "oppose", "plan", "praise", "prevent",
                 "refuse", "taunt", "thank", "warn"),
    # MER-UniBench label sets (MERTools `toolkit/preprocess/*.py`).
    "mer": ("neutral", "angry", "happy", "sad", "worried", "surprise"),
    "meld": ("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise"),
    "iemocap": ("happy", "sad", "neutral", "anger"),
}

MER_WITH_CANDIDATES = ("[Recognition] Please select the label that can best describe the person's emotional state "
                       "from the provided candidate labels: {candidates}.")
MER_WITHOUT_CANDIDATES = "[Recognition] Please recognize the character's most likely emotional state."
OV_QUESTIONS = (
    "[Recogn_OV] Please recognize all possible emotional states of the character.",
    "[Recogn_OV] Can you identify every emotional state the character could be displaying?",
    "[Recogn_OV] Recognize all the possible emotional states the character might be feeling in this context.",
    "[Recogn_OV] Identify all possible emotions the character may be experiencing.",
    "[Recogn_OV] What are the various emotional states the character could potentially be in?",
)
ERI_QUESTIONS = (
    "[Inference]Evaluate all available clues\u2014visual, auditory, and physiological. What is the final conclusion "
    "about the subject's emotion, and which pieces of evidence were most critical to this determination?",
    "[Inference]From the combined evidence of speech, tone, and visual expression, construct a detailed summary of "
    "the subject's emotional journey and final inferred state.",
    "[Inference]Analyze the complete emotional narrative. Considering the visual context, vocal characteristics, "
    "and facial action units, what is the most accurate emotional assessment and why?",
    "[Inference]Based on the synthesis of multimodal data including video, audio, and facial expressions, what is "
    "the subject's comprehensive emotional state? Provide a detailed rationale with evidence from each modality.",
)
MIR_QUESTION = "[Intent]recognize speaker's intention from the provided candidate labels: {candidates}."
# The authors' string concatenation leaves some sentences without a separating space; kept as trained.
ERG_QUESTION = (
    "Context: {context}\ncurrent user input:{current}\n"
    "[Interaction]You are an empathetic listener. Your goal is to understand the user\u2019s emotions and "
    "intentions, and respond or comfort them with appropriate language that helps them feel understood and cared "
    "for. Avoid rushing into your response; instead, carefully engage in a step-by-step, in-depth analysis before "
    "providing an answer.Please analyze using Chain of Empathy (Firstly, Event scenario:Reflect on the event "
    "scenarios that arise from the ongoing dialogueSecondly, User\u2019s emotion:please analyze User\u2019s emotion "
    "mostly like emotions conveyed by the user(speaker),Thirdly, the emotion cause:Infer the underlying reasons for "
    "the user\u2019s emotions.Fourthly, the goal to response:Determine the goal of your response in this particular "
    "instance, such as alleviating anxiety, offering reassurance, or expressing understanding.)in <think></think> "
    "tags and with Line break,then provide your empathic response:")
ERG_EMOTION_QUESTION = ("Context: {context}\ncurrent speaker input:{current}\nBase on all input information,please "
                        "analyze User\u2019s emotion mostly like emotions conveyed by the user(speaker)")

_MODALITIES = ("###Human: The audio and video merged info is: <Multi>{multi}</Multi>. "
               "The audio content is as follows: <Audio>{audio}</Audio>. "
               "Meanwhile, We uniformly extract facial informations from video: <Video>{face}</Video>. "
               "Meanwhile, we uniformly sample raw frames from the video: <Video>{frame}</Video>. ")
_SUBTITLE_TAIL = ("The subtitle of this video is: <Subtitle>{subtitle}</Subtitle>. "
                  "Now, please answer my question based on all the provided information. {question} ###Assistant: ")
_DIALOGUE_TAIL = ("The dialogue history is:<Dialogue History>{history}</Dialogue History>. "
                  "Now here is the dialogue context:\n. {question} ###Assistant: ")


def mer_answer(label: str, with_candidates: bool) -> str:
  return f"The most likely label is {label}." if with_candidates else f"The character's emotional state is {label}."


def ov_answer(labels: Sequence[str]) -> str:
  return f"The character's emotional state is {', '.join(labels)}."


def sentiment_answer(sentiment: str) -> str:
  return f"The character's sentiment state is {sentiment}."


def erg_answer(chain: Mapping[str, str], response: str) -> str:
  """`<think>` four-step chain of empathy `</think>`, a newline and a space, then the reply."""
  steps = (f"Firstly, the event scenario of this conversation is: {chain['event_scenario']}\n"
           f"Secondly, the emotion of the speaker is {chain['speaker_emotion']}\n"
           f"Thirdly, the emotion cause is {chain['emotion_cause']}\n"
           f"Fourthly, the goal to response is {chain['goal_to_response']}")
  return f"<think>{steps}</think>\n {response}"


def erg_emotion_answer(emotion: str) -> str:
  return f"The emotion of the speaker is {emotion}."


def history_text(history: Sequence[Turn]) -> str:
  return "\n".join(f"{t.role}: {t.text}" for t in history)


def _pick(pool: Sequence[str], rng: random.Random | None) -> str:
  return pool[0] if rng is None else rng.choice(pool)


def question(record: Record, rng: random.Random | None = None) -> str:
  """The user question for a record; `rng` draws from the paraphrase pool (None: the first one).

  Off the training split, MER and MSA items get the OV question: the authors score those benchmarks
  zero-shot from open-vocabulary answers.
  """
  task, candidates = record.task, ", ".join(record.candidates)
  if task in ("ovmer", "msa") or (task == "mer" and record.split != "train"):
    return _pick(OV_QUESTIONS, rng)
  if task == "mer":
    return MER_WITH_CANDIDATES.format(candidates=candidates) if record.candidates else MER_WITHOUT_CANDIDATES
  if task == "eri":
    return _pick(ERI_QUESTIONS, rng)
  if task == "mir":
    return MIR_QUESTION.format(candidates=candidates)
  context = record.meta.get("context", "")
  template = ERG_QUESTION if task == "erg" else ERG_EMOTION_QUESTION
  return template.format(context=context, current=record.subtitle)


def build_example(record: Record, *, audio_tokens: int = 32, frame_tokens: int = 32, face_tokens: int = 4,
                  multi_tokens: int = 1, rng: random.Random | None = None) -> tuple[str, str]:
  """(prompt, target) for one record. `frame_tokens` is the visual-token ablation switch (32/64/128)."""
  counts = {"audio": audio_tokens, "frame": frame_tokens, "face": face_tokens, "multi": multi_tokens}
  if any(n < 1 for n in counts.values()):
    raise ValueError(f"placeholder counts must be positive, got {counts}")
  prompt = _MODALITIES.format(multi="<MultiHere>" * multi_tokens, audio="<AudioHere>" * audio_tokens,
                              face="<FaceHere>" * face_tokens, frame="<FrameHere>" * frame_tokens)
  q = question(record, rng)
  if record.task in ("erg", "erg_emotion"):
    prompt += _DIALOGUE_TAIL.format(history=history_text(record.history), question=q)
  else:
    prompt += _SUBTITLE_TAIL.format(subtitle=record.subtitle, question=q)
  return prompt, record.target + STOP
