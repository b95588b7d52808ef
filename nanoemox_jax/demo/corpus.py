"""A synthetic demo corpus in the real annotation formats, with media that carry the labels.

  python -m nanoemox_jax.demo.corpus --out DIR [--seed 0] [--per-class 12]

Five sets, each with a train split, a validation split (`dev`, as MIntRec's and MELD's releases name it;
the demo chooses its settings on it) and a held-out test split, laid out as the real releases so that the
readers in `nanoemox_jax.data.sources` take them unchanged. The dev items are those the corpus held out before
it had a dev split (the demo's schedule was tuned on them); the test items came with the dev split.

  cremad/          the authors' conversation JSON (`crema_d_annotations.json`, `..._dev.json`, `..._test.json`,
                   empty subtitles as theirs), `audio/<Emotion>_<actor>_<sentence>_<EMO>_XX.wav`; dev and test
                   actors held out from training and from each other
  caer/            the authors' conversation JSON (`caer_ferv39k_ann.json`, `..._dev.json`, `..._test.json`),
                   `video/*.mp4`
  mintrec/         the official `train.tsv` / `dev.tsv` / `test.tsv`, `raw_video/<season>/<episode>/<clip>.mp4`
  mercaptionplus/  `train/`, `dev/` and `test/`, each a MER2025 track-2/3 folder: `track2_train_mercaptionplus.csv`,
                   `track3_train_mercaptionplus.csv`, `subtitle_chieng.csv` (Chinese column left empty),
                   `video/`, `audio/`
  avamerg/         `train.json`, `dev.json` (the release has no dev file), `v_test_v5_0.json`; `video/`+`audio/`
                   (train and dev), `test_video/`+`test_audio/`

Labels (`CLASSES`): CREMA-D's 6 and CAER's 7 emotions, 8 of MIntRec's 20 intents (records keep the full
candidate list), MER-Caption+ 6 primary emotions each joined by up to two open-vocabulary words
(`OV_WORDS`), AvaMERG 6 speaker emotions.

A clip shows a drawn face whose expression (mouth curve and opening, eyebrow tilt and height, eye
opening, head motion) follows the label's emotion, building up over the clip, on a background whose hue
is set per class. Its voice is a harmonic tone with a per-class base pitch (log-spaced over 100-300 Hz,
rising with the emotion's loudness), a per-emotion pitch contour and loudness, syllable-rate amplitude
and noise. Subtitles come from per-label sentence pools, mixed with label-neutral lines. Videos:
MPEG-4 Part 2, 112x112, 8 fps, with an AAC track, 2-2.5 s (PyAV); wavs: 16 kHz mono PCM-16. Each item
draws from its own generator seeded by (seed, item key), so the same seed writes byte-identical files
(FFmpeg's native mpeg4/aac encoders and mp4 muxer are deterministic).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import soundfile

from nanoemox_jax.data import templates

SIZE = 112
FPS = 8
RATE = 16_000
DEFAULT_PER_CLASS = 12
F0_RANGE = (100.0, 300.0)  # base pitch (Hz) of the first and the last class, log-spaced between
PITCH_DEPTH = 0.07  # octaves the pitch contour moves either side of the base
NEUTRAL_LINE_RATE = 0.4  # share of subtitles drawn from the label-neutral lines
SHIFT = 4  # fractional bits of cv2 drawing coordinates
AA = cv2.LINE_AA
SPLITS = ("train", "dev", "test")
SplitFiles = dict[str, tuple[Path, Path]]  # split -> (annotation file, media root)


@dataclass(frozen=True)
class Expression:
  """How one emotion looks and sounds, at full intensity."""
  smile: float  # mouth corners up (+) or down (-)
  mouth_open: float  # 0 closed .. 1 wide open
  brow_tilt: float  # inner eyebrow ends up (+, sadness, fear) or down (-, anger)
  brow_raise: float  # both eyebrows up
  eye_open: float  # eye height relative to a neutral face
  motion: str  # key of MOTIONS
  contour: str  # key of CONTOURS
  loudness: float
  looks: str  # the face, as the MER-Caption+ descriptions say it
  sounds: str  # the voice, likewise


EXPRESSIONS = {
    "anger": Expression(-0.5, 0.15, -1.0, 0.0, 0.8, "shake", "flat", 0.9,
                        "the eyebrows are pulled down toward the nose and the head shakes", "loud, hard and level"),
    "disgust": Expression(-0.7, 0.0, -0.4, -0.3, 0.45, "sway", "dip", 0.55,
                          "the eyes narrow and the mouth is pressed into a downturned line",
                          "low and dips in the middle"),
    "fear": Expression(-0.2, 0.45, 0.9, 0.6, 1.4, "tremble", "tremble", 0.45,
                       "the eyes are wide, the inner eyebrows rise and the head trembles", "quiet and shaky"),
    "happy": Expression(1.0, 0.3, 0.0, 0.3, 0.9, "bounce", "rise", 0.75,
                        "the corners of the mouth turn up and the head bounces lightly", "bright and rising"),
    "neutral": Expression(0.0, 0.0, 0.0, 0.0, 1.0, "still", "flat", 0.5,
                          "the face is relaxed and the head stays still", "even and unhurried"),
    "sad": Expression(-1.0, 0.0, 0.8, 0.0, 0.6, "droop", "fall", 0.3,
                      "the mouth turns down, the inner eyebrows rise and the head sinks", "soft and falling"),
    "surprise": Expression(0.0, 1.0, 0.2, 1.0, 1.5, "jump", "peak", 0.8,
                           "the eyebrows shoot up, the eyes widen and the mouth drops open", "sudden and peaks high"),
}

# Head offset (dx, dy) in pixels at time t (s), clip fraction u, random phase p.
MOTIONS: dict[str, Callable[[float, float, float], tuple[float, float]]] = {
    "still": lambda t, u, p: (0.0, 0.0),
    "shake": lambda t, u, p: (2.5 * math.sin(2 * math.pi * 3 * t + p), 0.0),
    "sway": lambda t, u, p: (4 * math.sin(2 * math.pi * 0.5 * t + p), 0.0),
    "tremble": lambda t, u, p: (math.sin(2 * math.pi * 7 * t + p), math.cos(2 * math.pi * 9 * t + p)),
    "bounce": lambda t, u, p: (0.0, -2.5 * abs(math.sin(2 * math.pi * 1.5 * t + p))),
    "droop": lambda t, u, p: (0.0, 5 * u),
    "jump": lambda t, u, p: (0.0, -6 * math.exp(-4 * u)),
}
# Pitch contour in [-1, 1] (mean about 0) over clip fraction u and time t (s).
CONTOURS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "flat": lambda u, t: np.zeros_like(u),
    "rise": lambda u, t: 2 * u - 1,
    "fall": lambda u, t: 1 - 2 * u,
    "dip": lambda u, t: 2 * np.abs(2 * u - 1) - 1,
    "tremble": lambda u, t: np.sin(2 * np.pi * 6 * t),
    "peak": lambda u, t: 2 * np.sin(np.pi * u) - 4 / np.pi,
}

# Each set's labels (in the spelling of the real files) -> the emotion its media show.
CLASSES: dict[str, dict[str, str]] = {
    "cremad": {label: label for label in templates.CANDIDATES["cremad"]},
    "caer": {label: label for label in templates.CANDIDATES["caer_ferv39k"]},
    "mintrec": {"Complain": "anger", "Praise": "happy", "Apologise": "sad", "Thank": "happy", "Inform": "neutral",
                "Oppose": "disgust", "Prevent": "fear", "Greet": "surprise"},
    "mercaptionplus": {"neutral": "neutral", "angry": "anger", "happy": "happy", "sad": "sad", "worried": "fear",
                       "surprise": "surprise"},
    "avamerg": {"sad": "sad", "anxious": "fear", "angry": "anger", "joyful": "happy", "surprised": "surprise",
                "disgusted": "disgust"},
}
# MER-Caption+ open-vocabulary words that may join each primary label.
OV_WORDS = {"neutral": ("calm", "relaxed", "indifferent"), "angry": ("annoyed", "frustrated", "irritated"),
            "happy": ("excited", "pleased", "cheerful"), "sad": ("disappointed", "lonely", "helpless"),
            "worried": ("anxious", "nervous", "uneasy"), "surprise": ("astonished", "curious", "shocked")}

NEUTRAL_LINES = ("Let's talk about it later.", "I'm not sure what to say.", "It's eleven o'clock.",
                 "Can you say that again?", "Okay, if you say so.", "Well, here we are.")
EMOTION_LINES = {
    "anger": ("Why does this keep happening every single time?", "I told you to leave my things alone.",
              "You promised, and you did it again."),
    "disgust": ("Take that away from me, please.", "I can't believe people actually eat this.",
                "That smell is everywhere in here."),
    "fear": ("Did you hear that noise outside?", "I don't want to go in there alone.",
             "What if they find out tonight?"),
    "happy": ("We finally did it, all of us together!", "This is the best news I've had all year.",
              "Look at this, it turned out perfect."),
    "neutral": ("The meeting moved to three o'clock.", "I left the keys on the table.",
                "The train takes about an hour."),
    "sad": ("I really thought it would work out this time.", "Nobody called me back after all.",
            "The house feels so empty now."),
    "surprise": ("Wait, you were here the whole time?", "I never expected to see you again.",
                 "Is that really the result?"),
}
INTENT_LINES = {
    "Complain": ("The printer is jammed again and nobody fixed it.", "I have been waiting here for forty minutes.",
                 "This place never has what I need."),
    "Praise": ("You did an amazing job with the display.", "That was a really smart idea.",
               "Your presentation was excellent."),
    "Apologise": ("I'm so sorry about this morning.", "My mistake, I should have checked first.",
                  "Forgive me, I didn't mean it."),
    "Thank": ("I really appreciate your help today.", "You saved me, I owe you one.", "That was very kind of you."),
    "Inform": ("The delivery comes in at noon.", "We're out of the large boxes.", "The store closes early on Sunday."),
    "Oppose": ("No, that's not how we do it here.", "I don't agree with that at all.",
               "That's not true, and you know it."),
    "Prevent": ("Don't touch that, it's still wet!", "Stop, you can't go back there.", "Wait, don't open that door."),
    "Greet": ("Hey, good morning everyone!", "Hi, welcome back!", "Hello there, nice to see you."),
}


@dataclass(frozen=True)
class Story:
  """One AvaMERG conversation plot: the speaker's two lines and the chain-of-empathy facts."""
  topic: str
  opening: str
  follow_up: str
  scenario: str
  cause: str


STORIES = {
    "sad": (Story("family", "My grandmother passed away last week.", "I keep looking at her old photos.",
                  "Losing a grandmother", "Grief over losing someone close"),
            Story("friends", "My best friend moved to another country.", "The weekends feel so quiet without her.",
                  "A close friend moving far away", "Missing a friend who is now far away")),
    "anxious": (Story("school", "My final exam is tomorrow morning.", "I can't stop going over the notes.",
                      "Facing an important exam", "Fear of failing after months of study"),
                Story("work", "I have a job interview on Monday.", "What if I freeze when they ask questions?",
                      "An upcoming job interview", "Doubting whether they are good enough")),
    "angry": (Story("work", "My coworker took credit for my project.", "He didn't even mention my name.",
                    "A colleague taking credit for their work", "Being treated unfairly at work"),
              Story("home", "My neighbours played loud music until three again.",
                    "I've asked them nicely twice already.",
                    "Noisy neighbours at night", "Repeated disrespect from the neighbours")),
    "joyful": (Story("work", "I just got the promotion I worked for!", "We're going out to celebrate tonight.",
                     "Getting a promotion", "Years of effort finally being recognised"),
               Story("family", "My sister had a baby girl this morning.", "I get to meet her this weekend.",
                     "A new baby in the family", "Welcoming a new family member")),
    "surprised": (Story("friends", "My old classmate called me out of nowhere.", "We haven't talked in ten years.",
                        "An unexpected call from an old friend", "Hearing from someone after many years"),
                  Story("travel", "I won a trip to Japan in a raffle.", "I only bought one ticket.",
                        "Winning an unexpected prize", "Winning something they never expected")),
    "disgusted": (Story("food", "I found a hair in my soup at the restaurant.", "And the waiter just shrugged.",
                        "A bad meal at a restaurant", "Unhygienic food and careless service"),
                  Story("work", "The fridge at work smells like rotten fish.", "Nobody ever throws anything away.",
                        "A filthy shared fridge", "Colleagues who never clean up")),
}
GOALS = {"sad": "Offer comfort and show understanding", "anxious": "Alleviate anxiety and offer reassurance",
         "angry": "Acknowledge the frustration and calm things down", "joyful": "Share the joy and encourage them",
         "surprised": "Share the excitement and invite more details",
         "disgusted": "Validate the reaction and suggest a way forward"}
REPLIES = {"sad": ("I'm so sorry, that must be very hard.", "It's okay to miss them; those memories matter."),
           "anxious": ("That sounds stressful, but you have prepared for it.",
                       "Take a deep breath; you know more than you think."),
           "angry": ("That's really unfair, no wonder you're upset.", "You have every right to speak up about it."),
           "joyful": ("That's wonderful news, congratulations!", "You deserve it, enjoy every moment."),
           "surprised": ("Wow, I didn't see that coming!", "What a twist, tell me everything."),
           "disgusted": ("Ugh, that sounds awful.", "I would complain to someone about it too.")}
CREMA_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
SKIN_TONES = ((241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36))
INK, EYE_WHITE, MOUTH = (40, 30, 30), (245, 245, 245), (70, 15, 25)


@dataclass(frozen=True)
class Style:
  """What the media of one class show: the emotion's expression, a base pitch and a background hue."""
  expression: Expression
  f0: float
  hue: int  # OpenCV hue, 0-179


def class_styles(classes: Mapping[str, str]) -> dict[str, Style]:
  """label -> Style: hues evenly spaced in class order; base pitches log-spaced over F0_RANGE in order of
  loudness (louder emotions speak higher; ties keep class order)."""
  k, (low, high) = len(classes), F0_RANGE
  by_loudness = sorted(classes, key=lambda label: EXPRESSIONS[classes[label]].loudness)
  return {label: Style(EXPRESSIONS[emotion], low * (high / low) ** (by_loudness.index(label) / max(k - 1, 1)),
                       180 * i // k) for i, (label, emotion) in enumerate(classes.items())}


def held_out(per_class: int) -> int:
  """Held-out items per class, in the test split and again in the dev split, for `per_class` training items."""
  return max(1, per_class // 4)


def item_rng(seed: int, key: str) -> np.random.Generator:
  """The generator of one item, independent of every other item's."""
  return np.random.default_rng([seed, zlib.crc32(key.encode())])


# ----------------------------------------------------------------------------- media

def _pt(x: float, y: float) -> tuple[int, int]:
  return round(x * (1 << SHIFT)), round(y * (1 << SHIFT))


def _draw_face(img: np.ndarray, cx: float, cy: float, s: float, e: Expression, level: float,
               skin: tuple[float, ...]) -> None:
  cv2.ellipse(img, _pt(cx, cy), _pt(30 * s, 38 * s), 0, 0, 360, skin, -1, AA, SHIFT)
  eye_h = 4 * s * (1 + (e.eye_open - 1) * level)
  for side in (-1, 1):
    ex, ey = cx + side * 12 * s, cy - 8 * s
    cv2.ellipse(img, _pt(ex, ey), _pt(6 * s, eye_h), 0, 0, 360, EYE_WHITE, -1, AA, SHIFT)
    cv2.circle(img, _pt(ex, ey), round(min(2.5 * s, eye_h) * (1 << SHIFT)), INK, -1, AA, SHIFT)
    by, tilt = ey - 8 * s - 4 * s * e.brow_raise * level, 3 * s * e.brow_tilt * level
    cv2.line(img, _pt(cx + side * 5 * s, by - tilt), _pt(cx + side * 18 * s, by + 0.3 * tilt), INK, 2, AA, SHIFT)
  my, half = cy + 18 * s, 11 * s
  if e.mouth_open * level > 0.05:
    cv2.ellipse(img, _pt(cx, my), _pt(0.7 * half, 9 * s * e.mouth_open * level), 0, 0, 360, MOUTH, -1, AA, SHIFT)
  if e.mouth_open * level < 0.5:
    xs = np.linspace(-1, 1, 9)
    lips = [_pt(cx + half * x, my - 7 * s * e.smile * level * (x * x - 0.5)) for x in xs]
    cv2.polylines(img, [np.array(lips, np.int32)], False, INK, 2, AA, SHIFT)


def draw_frames(style: Style, rng: np.random.Generator, count: int) -> np.ndarray:
  """RGB uint8 [count, SIZE, SIZE, 3]: the face on a tinted background with grain; the expression builds up."""
  hsv = np.array([[[style.hue, rng.integers(110, 170), rng.integers(150, 215)]]], np.uint8)
  background = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
  skin = tuple(float(c) * rng.uniform(0.9, 1.05) for c in SKIN_TONES[rng.integers(len(SKIN_TONES))])
  scale, phase = rng.uniform(0.85, 1.1), rng.uniform(0, 2 * math.pi)
  cx, cy = SIZE / 2 + rng.uniform(-6, 6), SIZE / 2 + 4 + rng.uniform(-5, 5)
  blotches = rng.normal(0, 8, (SIZE // 8, SIZE // 8, 3)).astype(np.float32)  # smooth and fixed: cheap to encode
  grain = cv2.resize(blotches, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
  motion, frames = MOTIONS[style.expression.motion], []
  for k in range(count):
    u = k / max(count - 1, 1)
    dx, dy = motion(k / FPS, u, phase)
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = background
    _draw_face(img, cx + dx, cy + dy, scale, style.expression, min(1.0, 0.3 + 1.4 * u), skin)
    frames.append(np.clip(img + grain, 0, 255).astype(np.uint8))
  return np.stack(frames)


def synth_voice(style: Style, rng: np.random.Generator, seconds: float) -> np.ndarray:
  """float32 [N] at RATE: harmonic tone on the class pitch with the emotion's contour and loudness."""
  e = style.expression
  t = np.arange(round(seconds * RATE)) / RATE
  u = t / seconds
  pitch = style.f0 * rng.uniform(0.97, 1.03) * 2.0 ** (PITCH_DEPTH * CONTOURS[e.contour](u, t))
  phase = 2 * np.pi * np.cumsum(pitch) / RATE
  tone = sum(a * np.sin(h * phase) for h, a in enumerate((1.0, 0.5, 0.3, 0.15), 1)) / 2.2
  syllables = 0.1 + 0.9 * np.sin(np.pi * rng.uniform(3.0, 4.5) * t + rng.uniform(0, np.pi)) ** 2
  fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)
  wave = e.loudness * rng.uniform(0.85, 1.15) * syllables * fade * tone + rng.normal(0, 0.01, len(t))
  return np.clip(wave, -1, 1).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, wave: np.ndarray) -> None:
  """MPEG-4 Part 2 video at FPS plus a mono AAC track at RATE, in mp4."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w", format="mp4") as out:
    video = out.add_stream("mpeg4", rate=FPS)
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt, video.bit_rate, video.codec_context.gop_size = "yuv420p", 200_000, 4 * FPS
    sound = out.add_stream("aac", rate=RATE, layout="mono")
    sound.bit_rate = 24_000
    for frame in frames:
      out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    out.mux(video.encode())
    chunk = av.AudioFrame.from_ndarray(wave[None], format="fltp", layout="mono")
    chunk.sample_rate = RATE
    out.mux(sound.encode(chunk))
    out.mux(sound.encode())


def write_wav(path: Path, wave: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  soundfile.write(path, wave, RATE, subtype="PCM_16")


def write_clip(style: Style, rng: np.random.Generator, video: Path | None, audio: Path | None) -> None:
  """One item's media, 2-2.5 s: an mp4 (with the voice muxed in) and/or a wav."""
  seconds = rng.uniform(2.0, 2.5)
  wave = synth_voice(style, rng, seconds)
  if audio is not None:
    write_wav(audio, wave)
  if video is not None:
    write_mp4(video, draw_frames(style, rng, round(seconds * FPS)), wave)


# ----------------------------------------------------------------------------- annotation files

def _items(labels: Sequence[str], per_class: int) -> Iterator[tuple[str, str, int, int]]:
  """(split, label, number, number within the split) with numbers unique per label across splits: train
  first, then dev (the items that were the test split before there was a dev split), then test."""
  n = held_out(per_class)
  for split, first, count in (("train", 0, per_class), ("dev", per_class, n), ("test", per_class + n, n)):
    for label in labels:
      for i in range(first, first + count):
        yield split, label, i, i - first


def _cremad_actor(split: str, j: int, per_class: int) -> int:
  """CREMA-D actor (1001-1091) of an item, `j` its number within the split: training actors count up from
  1001 (12 items each), dev actors down from 1091, test actors down from below the dev ones."""
  if split == "train":
    return 1001 + j // 12
  devs = -(-held_out(per_class) // 12)  # actors the dev split uses
  return 1091 - j // 12 - (devs if split == "test" else 0)


def _subtitle(rng: np.random.Generator, lines: Sequence[str]) -> str:
  pool = NEUTRAL_LINES if rng.random() < NEUTRAL_LINE_RATE else lines
  return pool[rng.integers(len(pool))]


def _write_json(path: Path, data: Any) -> None:
  """2-space indented UTF-8 JSON without a final newline, as the authors' files."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _write_rows(path: Path, rows: Sequence[Sequence[Any]], delimiter: str = ",") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(rows)


def _conversation_set(root: Path, seed: int, per_class: int, dataset: str, files: Mapping[str, str]) -> SplitFiles:
  """cremad / caer: the authors' `{"messages": [user subtitle, assistant label], "audios"|"videos": [path]}`."""
  styles, items = class_styles(CLASSES[dataset]), {split: [] for split in SPLITS}
  for split, label, i, j in _items(list(CLASSES[dataset]), per_class):
    if dataset == "cremad":
      actor = _cremad_actor(split, j, per_class)
      name = f"{label.capitalize()}_{actor}_{CREMA_SENTENCES[i % 12]}_{label[:3].upper()}_XX"
      key, media = "audios", Path("audio") / f"{name}.wav"
      write_clip(styles[label], item_rng(seed, f"{dataset}/{name}"), None, root / media)
    else:
      name = f"{label.capitalize()}_{i + 1:04d}"
      key, media = "videos", Path("video") / f"{name}.mp4"
      write_clip(styles[label], item_rng(seed, f"{dataset}/{name}"), root / media, None)
    messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": label}]
    items[split].append({"messages": messages, key: [f"/data/{dataset}/{media.as_posix()}"]})
  for split, data in items.items():
    _write_json(root / files[split], data)
  return {split: (root / files[split], root) for split in items}


def _cremad(root: Path, seed: int, per_class: int) -> SplitFiles:
  return _conversation_set(root, seed, per_class, "cremad",
                           {"train": "crema_d_annotations.json", "dev": "crema_d_annotations_dev.json",
                            "test": "crema_d_annotations_test.json"})


def _caer(root: Path, seed: int, per_class: int) -> SplitFiles:
  return _conversation_set(root, seed, per_class, "caer",
                           {"train": "caer_ferv39k_ann.json", "dev": "caer_ferv39k_ann_dev.json",
                            "test": "caer_ferv39k_ann_test.json"})


def _mintrec(root: Path, seed: int, per_class: int) -> SplitFiles:
  """Official TSVs `season, episode, clip, text, label`; videos `raw_video/S05/E16/329.mp4` carry the audio."""
  styles = class_styles(CLASSES["mintrec"])
  rows = {split: [("season", "episode", "clip", "text", "label")] for split in SPLITS}
  for clip, (split, label, i, _) in enumerate(_items(list(CLASSES["mintrec"]), per_class), 1):
    rng = item_rng(seed, f"mintrec/{label}/{i}")
    season, episode = f"S{rng.integers(4, 7):02d}", f"E{rng.integers(1, 23):02d}"
    write_clip(styles[label], rng, root / "raw_video" / season / episode / f"{clip}.mp4", None)
    rows[split].append((season, episode, str(clip), _subtitle(rng, INTENT_LINES[label]), label))
  for split, lines in rows.items():
    _write_rows(root / f"{split}.tsv", lines, "\t")
  return {split: (root / f"{split}.tsv", root) for split in rows}


def _mercaptionplus(root: Path, seed: int, per_class: int) -> SplitFiles:
  """Per split a MER2025 folder: OV labels (`name, openset`), descriptions (`name, reason`), subtitles."""
  classes = CLASSES["mercaptionplus"]
  styles, out = class_styles(classes), {}
  tables: dict[str, dict[str, list[tuple[str, ...]]]] = {
      split: {"track2_train_mercaptionplus.csv": [("name", "openset")],
              "track3_train_mercaptionplus.csv": [("name", "reason")],
              "subtitle_chieng.csv": [("name", "chinese", "english")]} for split in SPLITS}
  for number, (split, label, _, _) in enumerate(_items(list(classes), per_class), 1):
    name = f"samplenew3_{number:08d}"
    rng = item_rng(seed, f"mercaptionplus/{name}")
    extra = rng.choice(OV_WORDS[label], rng.integers(0, 3), replace=False).tolist()
    words = [label, *extra]
    empty = label == "neutral" and not extra and rng.random() < 0.5  # the release's empty set means neutral
    lines = EMOTION_LINES[classes[label]]
    subtitle = _subtitle(rng, lines)
    e = EXPRESSIONS[classes[label]]
    cue = "The words fit this state." if subtitle in lines else "The words alone say little about it."
    reason = (f"In the video, {e.looks}. The voice is {e.sounds}. The subtitle says: {subtitle} {cue} "
              f"Therefore, the person is most likely {', '.join(words)}.")
    folder = root / split
    write_clip(styles[label], rng, folder / "video" / f"{name}.mp4", folder / "audio" / f"{name}.wav")
    table = tables[split]
    table["track2_train_mercaptionplus.csv"].append((name, "[]" if empty else str(words)))
    table["track3_train_mercaptionplus.csv"].append((name, reason))
    table["subtitle_chieng.csv"].append((name, "", subtitle))
  for split, table in tables.items():
    for file, rows in table.items():
      _write_rows(root / split / file, rows)
    out[split] = (root / split / "track2_train_mercaptionplus.csv", root / split)
  return out


def _avamerg(root: Path, seed: int, per_class: int) -> SplitFiles:
  """Two-turn conversations; a speaker clip per turn, `dia<id>utt<2*turn>_<speaker ID>` (.mp4 and .wav)."""
  styles, conversations = class_styles(CLASSES["avamerg"]), {split: [] for split in SPLITS}
  for number, (split, label, _, _) in enumerate(_items(list(CLASSES["avamerg"]), per_class), 1):
    cid = f"{number:05d}"
    rng = item_rng(seed, f"avamerg/{cid}")
    story = STORIES[label][rng.integers(len(STORIES[label]))]
    speaker, listener = (int(x) for x in rng.choice(np.arange(1, 61), 2, replace=False))
    profiles = [{"age": ("young", "middle-aged", "elderly")[rng.integers(3)],
                 "gender": ("female", "male")[rng.integers(2)], "timbre": ("high", "mid", "low")[rng.integers(3)],
                 "ID": ident} for ident in (speaker, listener)]
    chain = {"speaker_emotion": label, "event_scenario": story.scenario, "emotion_cause": story.cause,
             "goal_to_response": GOALS[label]}
    lines = [("speaker", story.opening), ("listener", REPLIES[label][0]), ("speaker", story.follow_up)]
    turns = []
    for turn in (1, 2):
      history = [{"index": j, "role": role, "utterance": text} for j, (role, text) in enumerate(lines[:2 * turn - 1])]
      turns.append({"turn_id": str(turn), "context": story.scenario, "dialogue_history": history,
                    "response": REPLIES[label][turn - 1], "chain_of_empathy": chain})
      name, prefix = f"dia{cid}utt{2 * turn}_{speaker}", "test_" if split == "test" else ""
      write_clip(styles[label], item_rng(seed, f"avamerg/{name}"), root / f"{prefix}video" / f"{name}.mp4",
                 root / f"{prefix}audio" / f"{name}.wav")
    conversations[split].append({"conversation_id": cid, "speaker_profile": profiles[0],
                                 "listener_profile": profiles[1], "topic": story.topic, "turns": turns})
  files = {"train": root / "train.json", "dev": root / "dev.json", "test": root / "v_test_v5_0.json"}
  for split, data in conversations.items():
    _write_json(files[split], data)
  return {split: (path, root) for split, path in files.items()}


WRITERS: dict[str, Callable[[Path, int, int], SplitFiles]] = {
    "cremad": _cremad, "caer": _caer, "mintrec": _mintrec, "mercaptionplus": _mercaptionplus, "avamerg": _avamerg}


def write_corpus(out_dir: str | Path, seed: int = 0, per_class: int = DEFAULT_PER_CLASS) -> dict[str, SplitFiles]:
  """Writes every set under `out_dir/<dataset>/`; returns dataset -> split (`SPLITS`) -> (annotation file,
  media root), the `src` and `media_root` of `sources.read_source(dataset, src, split, media_root)`.
  `per_class` training items per label (AvaMERG: conversations of two turns), and `held_out(per_class)`
  in each of dev and test."""
  if per_class < 1:
    raise ValueError(f"per_class must be at least 1, got {per_class}")
  out_dir = Path(out_dir)
  return {dataset: write(out_dir / dataset, seed, per_class) for dataset, write in WRITERS.items()}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.demo.corpus", description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, type=Path, help="folder to write the corpus into")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS, help="training items per label")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  sets = write_corpus(args.out, args.seed, args.per_class)
  seconds = time.perf_counter() - start
  files = [f for f in args.out.rglob("*") if f.is_file()]
  for dataset, splits in sets.items():
    for split, (annotation, media_root) in splits.items():
      print(f"{dataset:<15} {split:<5} {annotation}  (media root {media_root})")
  print(f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {seconds:.1f} s")
  annotation, media_root = sets["cremad"]["test"]
  print(f"e.g. python -m nanoemox_jax.data.prepare --dataset cremad --split test --src {annotation} "
        f"--media-root {media_root} --out cremad_test.jsonl")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
