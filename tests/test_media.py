"""Media decoding against independent references: librosa/soxr resampling of real RAVDESS clips, the
pytorchvideo clip-offset rule recomputed with Fractions, scikit-image's own face detector, PIL resizes,
and synthetic videos whose frames encode their index."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import av
import cv2
import librosa
import numpy as np
import pytest
import scipy.signal
import skimage.data
import soundfile
from PIL import Image
from skimage.feature import Cascade
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from nanoemox_jax.data.media import (MediaError, audio_clips, clip_pixels, decode_sample, detect_face, enlarge_box,
                                     face_pixels, load_audio, read_frames)

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "audio"
needs_real_audio = pytest.mark.skipif(not AUDIO.is_dir(), reason=f"{AUDIO} is absent (real clips of the shared data)")
BARS, BAR_W, HEIGHT = 8, 40, 256  # synthetic frames: 8 vertical bars spell the frame index in binary


def barcode(i: int) -> np.ndarray:
  bits = (i >> np.arange(BARS)) & 1
  return np.repeat(np.repeat(bits * 255, BAR_W)[None, :, None], HEIGHT, 0).repeat(3, 2).astype(np.uint8)


def read_barcode(frame: np.ndarray) -> int:
  bars = frame[HEIGHT // 4:-HEIGHT // 4].reshape(HEIGHT // 2, BARS, BAR_W, 3)[:, :, 8:-8].mean(axis=(0, 2, 3))
  return int(((bars > 128) << np.arange(BARS)).sum())


def write_cv2_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
  """mp4 (MPEG-4 Part 2, fourcc mp4v: the encoder this opencv wheel has; avc1/H264 fail to open), no audio."""
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
  assert writer.isOpened()
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()
  return path


def tone(hz: float, seconds: float, rate: int, channels: int, amplitude: float = 0.5) -> np.ndarray:
  """float32 [channels, N] sine."""
  t = np.arange(int(seconds * rate)) / rate
  return np.tile(amplitude * np.sin(2 * np.pi * hz * t, dtype=np.float64), (channels, 1)).astype(np.float32)


def write_av(path: Path, frames: list[np.ndarray] | None, audio: np.ndarray | None, rate: int = 44_100,
             audio_codec: str = "aac", fps: int = 25, index_first: bool = False) -> Path:
  """Container written by PyAV: optional MPEG-4 video, optional audio [channels, N] float; the mp4 index
  (moov) goes at the end unless `index_first`."""
  with av.open(str(path), "w", options={"movflags": "faststart"} if index_first else {}) as out:
    if frames is not None:
      video = out.add_stream("mpeg4", rate=fps)
      video.height, video.width = frames[0].shape[:2]
      video.pix_fmt = "yuv420p"
    if audio is not None:
      layout = "mono" if len(audio) == 1 else "stereo"
      sound = out.add_stream(audio_codec, rate=rate, layout=layout)
      sound.codec_context.format = "fltp"  # planar float: both aac and libmp3lame take it
    for frame in frames or []:
      out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    if frames is not None:
      out.mux(video.encode())
    if audio is not None:
      size = sound.codec_context.frame_size or 1024
      for start in range(0, audio.shape[1], size):
        chunk = np.ascontiguousarray(audio[:, start:start + size])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, start
        out.mux(sound.encode(frame))
      out.mux(sound.encode())
  return path


def dominant_hz(wave: np.ndarray, rate: int = 16_000) -> float:
  spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
  return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


# ----------------------------------------------------------------------------- frames

@pytest.mark.parametrize("n", [37, 8, 3, 1])
def test_frames_are_the_authors_indices(tmp_path, n):
  path = write_cv2_video(tmp_path / f"bars{n}.mp4", [barcode(i) for i in range(n)])
  frames = read_frames(path)
  assert frames.shape == (8, HEIGHT, BARS * BAR_W, 3) and frames.dtype == np.uint8
  authors = np.arange(0, n, n / min(n, 8)).astype(int).tolist()  # processors/video_processor.py::load_video
  authors += [authors[-1]] * (8 - len(authors))
  assert [read_barcode(f) for f in frames] == authors


def area_resize(image: np.ndarray, size: int = 224) -> np.ndarray:
  """Exact area-average downscale (each output pixel averages the input area it covers), float."""
  def weights(n_in: int) -> np.ndarray:
    scale, i, j = n_in / size, np.arange(size)[:, None], np.arange(n_in)[None, :]
    return np.clip(np.minimum((i + 1) * scale, j + 1) - np.maximum(i * scale, j), 0, None) / scale
  return np.einsum("ih,hwc,jw->ijc", weights(image.shape[0]), image.astype(np.float64), weights(image.shape[1]),
                   optimize=True)


def test_clip_pixels_are_area_resized_with_hf_clip_constants():
  frames = np.stack([skimage.data.astronaut()[:400, 20:500], skimage.data.coffee()[:, 50:530]])
  pixels = clip_pixels(frames)
  assert pixels.shape == (2, 3, 224, 224) and pixels.dtype == np.float32
  ref = np.stack([area_resize(f) for f in frames]) / 255.0
  ref = ((ref - OPENAI_CLIP_MEAN) / OPENAI_CLIP_STD).transpose(0, 3, 1, 2)
  assert np.abs(pixels - ref).max() < 0.51 / 255 / min(OPENAI_CLIP_STD)  # uint8 rounding only


# ----------------------------------------------------------------------------- faces

def largest_skimage_face(image: np.ndarray) -> tuple[int, int, int, int]:
  """scikit-image's own LBP frontal-face cascade (an independent detector), as (x0, y0, x1, y1)."""
  found = Cascade(skimage.data.lbp_frontal_face_cascade_filename()).detect_multi_scale(
      img=image, scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(250, 250))
  d = max(found, key=lambda d: d["width"] * d["height"])
  return d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]


def iou(a, b) -> float:
  inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_face_detector_finds_the_astronaut_face():
  image = skimage.data.astronaut()
  ref = largest_skimage_face(image)
  box = detect_face(image)
  assert iou(box, ref) > 0.6
  x0, y0, x1, y1 = enlarge_box(box, *image.shape[:2])
  assert x0 <= ref[0] and y0 <= ref[1] and x1 >= ref[2] and y1 >= ref[3]
  assert (x1 - x0) == pytest.approx(1.5 * (box[2] - box[0]), abs=2)
  # detection runs downscaled and boxes map back; here the largest box would be a false positive on the suit
  big = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_CUBIC)
  assert iou([v / 2 for v in detect_face(big)], ref) > 0.6
  assert enlarge_box((0, 0, 100, 100), 80, 90) == (0, 0, 90, 80)  # clamped to the image


def test_face_pixels_crop_and_fallback():
  image = skimage.data.astronaut()
  blank = np.full_like(image, 90)
  faces, found = face_pixels(np.stack([image, blank]))
  assert faces.shape == (2, 3, 224, 224) and faces.dtype == np.float32 and found.tolist() == [True, False]
  x0, y0, x1, y1 = enlarge_box(detect_face(image), *image.shape[:2])
  ref = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).resize((224, 224), Image.Resampling.BICUBIC)) / 255.0
  ref = ((ref - IMAGENET_DEFAULT_MEAN) / IMAGENET_DEFAULT_STD).transpose(2, 0, 1)
  assert np.abs(faces[0] - ref).mean() < 0.02  # OpenCV's and PIL's cubic kernels differ slightly
  blank_ref = ((90 / 255 - np.array(IMAGENET_DEFAULT_MEAN)) / IMAGENET_DEFAULT_STD)[:, None, None]
  np.testing.assert_allclose(faces[1], np.broadcast_to(blank_ref, (3, 224, 224)), atol=1e-5)  # whole frame


def test_raw_frames_face_input_is_the_unnormalised_224_frames():
  image = skimage.data.astronaut()
  faces, found = face_pixels(image[None], face_input="raw_frames")
  assert faces.shape == (1, 3, 224, 224) and not found.any()
  assert np.abs(faces[0] - area_resize(image).transpose(2, 0, 1)).max() <= 0.51  # 0-255, no mean/std


# ----------------------------------------------------------------------------- audio

@needs_real_audio
@pytest.mark.parametrize("name", ["ravdess_01-01-05-02-01-01-01_audio.wav", "ravdess_01-01-01-01-01-01-01_audio.wav"])
def test_real_ravdess_clips_match_librosa_and_the_authors_offsets(name):
  path = AUDIO / name
  stereo, rate = soundfile.read(path, dtype="float32")
  assert rate == 48_000 and stereo.shape[1] == 2
  ref = librosa.resample(stereo.mean(axis=1), orig_sr=rate, target_sr=16_000, res_type="soxr_hq")
  wave = load_audio(path)
  assert wave.dtype == np.float32 and len(wave) == len(ref)
  lowpass = scipy.signal.butter(8, 7000, fs=16_000, output="sos")  # the resamplers' transition bands differ
  a, b = scipy.signal.sosfiltfilt(lowpass, wave), scipy.signal.sosfiltfilt(lowpass, ref)
  assert np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)) < 5e-3

  clips = audio_clips(wave)
  assert clips.shape == (8, 32000) and clips.dtype == np.float32
  # pytorchvideo ConstantClipsPerVideoSampler as ImageBind's load_audio uses it: start_k = k * (D - 2) / 8 s
  step = Fraction(max(len(wave) / 16_000 - 2, 0)) / 8
  for k in range(8):
    start = int(step * k * 16_000)
    np.testing.assert_array_equal(clips[k], wave[start:start + 32000])


@needs_real_audio
def test_short_real_clip_is_zero_padded_to_two_seconds():
  path = AUDIO / "emodb_03a01Fa.wav"  # 16 kHz mono, 1.898 s
  ref, rate = soundfile.read(path, dtype="float32")
  assert rate == 16_000 and len(ref) < 32000
  clips = audio_clips(load_audio(path))
  np.testing.assert_allclose(clips[:, :len(ref)], np.broadcast_to(ref, (8, len(ref))), atol=1e-7)
  assert not clips[:, len(ref):].any()


@pytest.mark.parametrize("fmt,rate,channels,hz", [("mp3", 22_050, 1, 1000.0), ("flac", 8_000, 2, 500.0),
                                                  ("wav", 44_100, 2, 3000.0)])
def test_audio_file_formats(tmp_path, fmt, rate, channels, hz):
  wave = tone(hz, 2.5, rate, channels)
  path = tmp_path / f"tone.{fmt}"
  if fmt == "mp3":
    write_av(path, None, wave, rate, audio_codec="libmp3lame")
  else:
    soundfile.write(path, wave.T, rate)
  out = load_audio(path)
  assert abs(len(out) - 2.5 * 16_000) < 0.05 * 16_000
  assert dominant_hz(out) == pytest.approx(hz, abs=2)
  assert np.sqrt(np.mean(out[4000:-4000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_video_with_audio_track_and_faces(tmp_path):
  frames = [np.roll(skimage.data.astronaut(), 4 * i, axis=1) for i in range(10)]
  path = write_av(tmp_path / "talk.mp4", frames, tone(440.0, 3.0, 44_100, 2))
  sample = decode_sample(path)
  assert sample.video_mask and sample.audio_mask and sample.errors == ()
  assert sample.frames.shape == sample.faces.shape == (8, 3, 224, 224) and sample.face_found.all()
  assert sample.audio.shape == (8, 32000)
  for clip in sample.audio:
    assert dominant_hz(clip) == pytest.approx(440.0, abs=1)
    assert np.sqrt(np.mean(clip[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


# ----------------------------------------------------------------------------- failures

def names(error: pytest.ExceptionInfo, path: Path, reason: str) -> bool:
  return str(path) in str(error.value) and reason in str(error.value)


def test_missing_empty_and_non_video_files(tmp_path):
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  text = tmp_path / "notes.mp4"
  text.write_text("this is a text file, not a video\n" * 50)
  for path, reason in [(tmp_path / "missing.mp4", "file not found"), (empty, "empty file"), (text, "cannot")]:
    with pytest.raises(MediaError) as error:
      read_frames(path)
    assert names(error, path, reason) and error.value.field == "video"
    with pytest.raises(MediaError) as error:
      load_audio(path)
    assert names(error, path, reason) and error.value.field == "audio"


def test_truncated_mp4(tmp_path):
  """Index at the end (the default): nothing opens. Index first: the frames that remain are sampled over
  their true count (the container's count, 50, is only a hint; this exercises the second decoding pass)."""
  for index_first in (False, True):
    whole = write_av(tmp_path / f"whole{index_first}.mp4", [barcode(i) for i in range(50)],
                     tone(440.0, 2.0, 44_100, 2), index_first=index_first)
    cut = tmp_path / f"cut{index_first}.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    sample = decode_sample(cut)
    if index_first:
      with av.open(str(cut)) as container:  # the true count, by another decoder
        n = sum(1 for _ in container.decode(video=0))
      assert 0 < n < 50 and [read_barcode(f) for f in read_frames(cut)] == np.arange(0, n, n / 8).astype(int).tolist()
      continue
    assert not sample.video_mask and not sample.audio_mask and len(sample.errors) == 2
    assert all(str(cut) in e for e in sample.errors) and not sample.frames.any() and not sample.audio.any()
    with pytest.raises(MediaError, match="cutFalse.mp4: video"):
      decode_sample(cut, strict=True)


def test_video_without_audio_track_masks_audio(tmp_path):
  path = write_cv2_video(tmp_path / "mute.mp4", [barcode(i) for i in range(12)])
  with pytest.raises(MediaError) as error:
    load_audio(path)
  assert names(error, path, "no audio track")
  sample = decode_sample(path)
  assert sample.video_mask and not sample.audio_mask and not sample.audio.any()
  assert sample.errors == (str(error.value),)


def test_separate_audio_file_and_one_frame_video(tmp_path):
  video = write_cv2_video(tmp_path / "still.mp4", [skimage.data.astronaut()])
  audio = tmp_path / "speech.wav"
  soundfile.write(audio, tone(200.0, 1.0, 16_000, 1)[0], 16_000)
  sample = decode_sample(video, audio)
  assert sample.video_mask and sample.audio_mask and sample.face_found.all()
  assert all(np.array_equal(f, sample.frames[0]) for f in sample.frames)  # the one frame, repeated
  assert decode_sample(None, audio).audio_mask and not decode_sample(None, audio).video_mask


def test_silent_audio(tmp_path):
  rng = np.random.default_rng(0)
  for name, level in [("zeros.wav", 0.0), ("hiss.wav", 2e-5)]:
    path = tmp_path / name
    soundfile.write(path, level * rng.standard_normal(40_000).astype(np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(MediaError) as error:
      load_audio(path)
    assert names(error, path, "silent")
    assert decode_sample(None, path).errors == (str(error.value),)
    assert load_audio(path, silence_peak=0).shape == (40_000,)
  quiet = tmp_path / "quiet.wav"
  soundfile.write(quiet, tone(300.0, 1.0, 16_000, 1, amplitude=1e-3)[0], 16_000)
  assert load_audio(quiet).shape == (16_000,)


def test_media_error_pickles_for_worker_processes():
  error = pickle.loads(pickle.dumps(MediaError("/x/a.mp4", "audio", "no audio track")))
  assert (error.path, error.field, error.reason, str(error)) == ("/x/a.mp4", "audio", "no audio track",
                                                                 "/x/a.mp4: audio: no audio track")
