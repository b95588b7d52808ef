"""Decode one sample's media into the arrays the towers take: frames, face crops and audio clips.

Official counterparts (Nano-EmoX, built on AffectGPT): `processors/video_processor.py::load_video`
(decord, 8 frames at `arange(0, n, n/8)`, 224x224, CLIP mean/std), `models/ImageBind/data.py::load_audio`
(torchaudio, 16 kHz, pytorchvideo `ConstantClipsPerVideoSampler`: 8 clips of 2 s) and
`models/nano_emox.py` (the face encoder takes the raw 224x224 frames, 0-255).

Every failure (missing, empty, truncated or undecodable file, no audio track, silent audio) raises
`MediaError`, which names the file, the field and the reason. `decode_sample` turns those into
masks so that the pipeline never crashes on one bad sample (or re-raises with `strict=True`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.signal import resample_poly

FRAMES = 8
IMAGE_SIZE = 224
SAMPLE_RATE = 16_000
CLIPS = 8
CLIP_SAMPLES = 2 * SAMPLE_RATE
SILENCE_PEAK = 1e-4  # audio whose every sample has |x| below this (about -80 dBFS) counts as silent
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
FACE_INPUTS = ("crop", "raw_frames")
FACE_CASCADE = "haarcascade_frontalface_default.xml"  # ships inside the opencv-python(-headless) 4.x wheels
DETECT_MAX_SIDE = 640  # frames are downscaled to this longest side before detection
FACE_ENLARGE = 1.5


class MediaError(Exception):
  """A media file that cannot be used; `str()` is `"{path}: {field}: {reason}"`."""

  def __init__(self, path: str | Path, field: str, reason: str):
    super().__init__(f"{path}: {field}: {reason}")
    self.path, self.field, self.reason = str(path), field, reason

  def __reduce__(self):  # survives pickling between worker processes
    return MediaError, (self.path, self.field, self.reason)


def _checked_file(path: str | Path, field: str) -> Path:
  path = Path(path)
  if not path.is_file():
    raise MediaError(path, field, "file not found" if not path.exists() else "not a regular file")
  if path.stat().st_size == 0:
    raise MediaError(path, field, "empty file (0 bytes)")
  return path


# ----------------------------------------------------------------------------- frames

def frame_indices(n: int, count: int = FRAMES) -> np.ndarray:
  """The authors' uniform sampling, int64 [count]: `arange(0, n, n / min(n, count))`, then the last index
  repeated up to `count` when the video has fewer frames (exact integer form of `floor(k * n / count)`)."""
  if n <= 0:
    raise ValueError(f"frame_indices: a video needs at least one frame, got n={n}")
  m = min(n, count)
  head = (np.arange(m) * n) // m
  return np.concatenate([head, np.full(count - m, head[-1])])


def _grab(path: Path, count: int, wanted: set[int] | None = None) -> tuple[dict[int, np.ndarray], int]:
  """Decodes every frame in order (the only exact frame count) and keeps the `wanted` ones as RGB;
  `None` wants the `frame_indices` of the container's frame count (a hint that may be wrong)."""
  cap = cv2.VideoCapture(str(path))
  try:
    if not cap.isOpened():
      raise MediaError(path, "video", "OpenCV/FFmpeg cannot open it as a video (truncated or not a video file?)")
    if wanted is None:
      hint = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
      wanted = set(frame_indices(hint, count).tolist()) if hint > 0 else set()
    kept, n = {}, 0
    while cap.grab():
      if n in wanted:
        ok, bgr = cap.retrieve()
        if not ok:
          raise MediaError(path, "video", f"frame {n} was read but cannot be converted to an image")
        kept[n] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
      n += 1
    return kept, n
  finally:
    cap.release()


def read_frames(path: str | Path, count: int = FRAMES) -> np.ndarray:
  """RGB uint8 [count, H, W, 3] at the source resolution, the frames `frame_indices(n, count)`.

  The container's frame count is only a hint: frames are decoded in order and counted, and a second
  pass runs when the true count asks for frames the first pass did not keep.
  """
  path = _checked_file(path, "video")
  kept, n = _grab(path, count)
  if n == 0:
    raise MediaError(path, "video", "no decodable frames")
  wanted = frame_indices(n, count).tolist()
  if not set(wanted) <= kept.keys():
    kept, _ = _grab(path, count, set(wanted))
    if not set(wanted) <= kept.keys():
      raise MediaError(path, "video", f"frames {sorted(set(wanted) - kept.keys())} did not decode on a second pass")
  return np.stack([kept[i] for i in wanted])


def resize_frames(frames: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
  """uint8 [T, H, W, 3] -> uint8 [T, size, size, 3], aspect not kept, `cv2.INTER_AREA` (area average;
  decord resizes inside FFmpeg's `scale` filter instead)."""
  return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _normalise(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """uint8 [T, H, W, 3] -> float32 [T, 3, H, W], `(x / 255 - mean) / std` (HF image-processor layout)."""
  return ((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)


def clip_pixels(frames: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
  """uint8 [T, H, W, 3] -> float32 [T, 3, size, size]: `resize_frames`, CLIP mean/std (HF `pixel_values`)."""
  return _normalise(resize_frames(frames, size), CLIP_MEAN, CLIP_STD)


# ----------------------------------------------------------------------------- faces

_THREAD = threading.local()


def _face_cascade() -> cv2.CascadeClassifier:
  """This thread's detector: a `CascadeClassifier` shared by threads (Grain's readers) returns different boxes
  from run to run (measured: 11-14 of 28 demo clips' crops changed with 8 threads), so each thread loads its own."""
  cascade = getattr(_THREAD, "cascade", None)
  if cascade is None:
    cascade = _THREAD.cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / FACE_CASCADE))
  if cascade.empty():
    raise RuntimeError(f"{Path(cv2.data.haarcascades) / FACE_CASCADE}: cannot load the face detector; "
                       "install an opencv-python(-headless) 4.x wheel (5.x ships no cascades)")
  return cascade


def detect_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
  """The best-supported frontal face in uint8 [H, W, 3] as pixel box (x0, y0, x1, y1), or None.

  OpenCV Haar cascade `haarcascade_frontalface_default.xml` on the grey image downscaled to a longest side
  of at most 640 px, `detectMultiScale2(scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))` at that scale.
  Of several boxes, the one with the most neighbouring raw hits (the cascade's confidence) wins, ties to
  the larger: the largest box alone can be a false positive.
  """
  h, w = rgb.shape[:2]
  scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
  grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  if scale < 1.0:
    grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
  boxes, hits = _face_cascade().detectMultiScale2(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
  if len(boxes) == 0:
    return None
  best = max(range(len(boxes)), key=lambda i: (hits[i], boxes[i][2] * boxes[i][3]))
  x, y, bw, bh = boxes[best].tolist()
  return round(x / scale), round(y / scale), round((x + bw) / scale), round((y + bh) / scale)


def enlarge_box(box: Sequence[int], height: int, width: int, factor: float = FACE_ENLARGE) -> tuple[int, int, int, int]:
  """Scales the box's width and height by `factor` about its centre, clamped to the image."""
  x0, y0, x1, y1 = box
  cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
  return (max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh)),
          min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh)))


def face_pixels(frames: np.ndarray, face_input: str = "crop", size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [T, H, W, 3] -> (float32 [T, 3, size, size], bool [T] face found).

  "crop": `detect_face`, `enlarge_box` (+50%), crop, `cv2.INTER_CUBIC` resize, ImageNet mean/std; a frame
  without a detected face falls back to the whole frame (flag False). "raw_frames" (official code): the
  `resize_frames` frames as float 0-255, unnormalised; no detection runs, so every flag is False.
  """
  if face_input == "raw_frames":
    return resize_frames(frames, size).astype(np.float32).transpose(0, 3, 1, 2), np.zeros(len(frames), bool)
  if face_input != "crop":
    raise ValueError(f"face_input must be one of {FACE_INPUTS}, got {face_input!r}")
  crops, found = [], []
  for frame in frames:
    box = detect_face(frame)
    if box is not None:
      x0, y0, x1, y1 = enlarge_box(box, *frame.shape[:2])
      frame = frame[y0:y1, x0:x1]
    crops.append(cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC))
    found.append(box is not None)
  return _normalise(np.stack(crops), IMAGENET_MEAN, IMAGENET_STD), np.array(found)


# ----------------------------------------------------------------------------- audio

def load_audio(path: str | Path, silence_peak: float = SILENCE_PEAK) -> np.ndarray:
  """Mono float32 [N] at 16 kHz from an audio file (wav, flac, mp3, ...) or a video's first audio track.

  PyAV (FFmpeg) decodes; channels are averaged; `scipy.signal.resample_poly` resamples (Kaiser-windowed
  polyphase FIR; the authors use `torchaudio.functional.resample`). Raises `MediaError` when there is no
  audio track, no samples, a NaN or infinite sample (a float wav can hold them), or the result is silent
  (every |x| < `silence_peak`; pass 0 to keep silence).
  """
  path = _checked_file(path, "audio")
  chunks, rate = [], None
  try:
    with av.open(str(path)) as container:
      if not container.streams.audio:
        raise MediaError(path, "audio", "no audio track")
      stream = container.streams.audio[0]
      to_float = av.AudioResampler(format="fltp")  # sample format only; rate and channels unchanged
      for frame in container.decode(stream):
        rate = rate or frame.sample_rate
        chunks += [out.to_ndarray() for out in to_float.resample(frame)]
      chunks += [out.to_ndarray() for out in to_float.resample(None)]
  except av.FFmpegError as e:
    raise MediaError(path, "audio", f"FFmpeg cannot decode it ({e.strerror or e})") from e
  if not chunks or sum(c.shape[1] for c in chunks) == 0:
    raise MediaError(path, "audio", "the audio track holds no samples")
  wave = np.concatenate(chunks, axis=1).mean(axis=0)
  if bad := int((~np.isfinite(wave)).sum()):
    raise MediaError(path, "audio", f"{bad} of {wave.size} samples are NaN or infinite")
  if rate != SAMPLE_RATE:
    g = math.gcd(rate, SAMPLE_RATE)
    wave = resample_poly(wave, SAMPLE_RATE // g, rate // g)
  peak = float(np.abs(wave).max())
  if peak < silence_peak:
    raise MediaError(path, "audio", f"silent (peak |x| = {peak:.1e} < {silence_peak:g})")
  return wave.astype(np.float32)


def clip_starts(n: int, clips: int = CLIPS, clip_samples: int = CLIP_SAMPLES) -> np.ndarray:
  """Start offsets int64 [clips] of `audio_clips`: `floor(k * (n - clip_samples) / clips)`, k = 0..clips-1.

  pytorchvideo's `ConstantClipsPerVideoSampler` (the authors') divides the free range by `clips`, not
  `clips - 1`: the last clip starts at 7/8 of it and the final 1/8 of the range is never read.
  """
  return (np.arange(clips) * max(n - clip_samples, 0)) // clips


def audio_clips(wave: np.ndarray, clips: int = CLIPS, clip_samples: int = CLIP_SAMPLES) -> np.ndarray:
  """float [N] -> float32 [clips, clip_samples]: zero-padded at the end to at least one clip, then
  the windows at `clip_starts`."""
  wave = np.pad(np.asarray(wave, np.float32), (0, max(0, clip_samples - len(wave))))
  return np.stack([wave[s:s + clip_samples] for s in clip_starts(len(wave), clips, clip_samples)])


# ----------------------------------------------------------------------------- one sample

@dataclasses.dataclass(frozen=True)
class Decoded:
  """One sample's model inputs. A masked modality holds zeros of the same shape.

  frames: float32 [8, 3, 224, 224] CLIP-normalised; faces: float32 [8, 3, 224, 224] (see `face_pixels`);
  face_found: bool [8]; audio: float32 [8, 32000] at 16 kHz; video_mask / audio_mask: whether the modality
  decoded; errors: the `MediaError` messages behind any mask.
  """

  frames: np.ndarray
  faces: np.ndarray
  face_found: np.ndarray
  audio: np.ndarray
  video_mask: bool
  audio_mask: bool
  errors: tuple[str, ...]


def decode_sample(video: str | Path | None, audio: str | Path | None = None, face_input: str = "crop",
                  strict: bool = False) -> Decoded:
  """Decodes frames and faces from `video` and clips from `audio` (default: `video`'s audio track).

  A `MediaError` masks its modality and is recorded in `errors` (`strict=True` re-raises it). A `None`
  path masks its modality without an error.
  """
  if face_input not in FACE_INPUTS:
    raise ValueError(f"face_input must be one of {FACE_INPUTS}, got {face_input!r}")
  frames, faces = (np.zeros((FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32) for _ in range(2))
  found = np.zeros(FRAMES, bool)
  clips, errors = np.zeros((CLIPS, CLIP_SAMPLES), np.float32), []
  video_ok = audio_ok = False
  try:
    if video is not None:
      rgb = read_frames(video)
      frames, (faces, found), video_ok = clip_pixels(rgb), face_pixels(rgb, face_input), True
  except MediaError as e:
    if strict:
      raise
    errors.append(str(e))
  try:
    if audio is not None or video is not None:
      clips, audio_ok = audio_clips(load_audio(audio if audio is not None else video)), True
  except MediaError as e:
    if strict:
      raise
    errors.append(str(e))
  return Decoded(frames, faces, found, clips, video_ok, audio_ok, tuple(errors))
