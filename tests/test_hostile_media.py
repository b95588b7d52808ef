"""A fuzz corpus of broken and odd media files, made here at test time, through `data.media.decode_sample`: no case
raises; every case ends either decoded (right shapes, finite values) or with its modality masked (zeros) and an
error line `<file>: video|audio: <reason>` naming the file given. Each case states which of the two it expects.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from nanoemox_jax.data import media
from tests.test_media import tone, write_av, write_cv2_video

RNG = np.random.default_rng(0)
OK, MASKED, EITHER = True, False, None


def _noise(n: int, h: int = 64, w: int = 80) -> list[np.ndarray]:
  return [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _mp4(tmp: Path, name: str = "v.mp4", n: int = 10, h: int = 64, w: int = 80, audio: bool = True, **kw) -> Path:
  return write_av(tmp / name, _noise(n, h, w), tone(440, 1.0, 16_000, 1) if audio else None, rate=16_000, **kw)


def _wav(tmp: Path, wave: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16", name: str = "a.wav") -> Path:
  soundfile.write(tmp / name, wave, rate, subtype=subtype)
  return tmp / name


def _cut(path: Path, fraction: float) -> Path:
  os.truncate(path, int(path.stat().st_size * fraction))
  return path


def _renamed(path: Path, name: str) -> Path:
  return path.rename(path.with_name(name))


def _patch_tkhd_size(path: Path, width: int, height: int) -> Path:
  """The mp4 track header's width/height (16.16 fixed point, the box's last 8 bytes) set to a huge size."""
  data = bytearray(path.read_bytes())
  at = data.find(b"tkhd")
  size = struct.unpack(">I", data[at - 4:at])[0]
  end = at - 4 + size
  data[end - 8:end] = struct.pack(">II", width << 16, height << 16)
  path.write_bytes(bytes(data))
  return path


def _flip_middle(path: Path) -> Path:
  data = bytearray(path.read_bytes())
  for i in range(len(data) // 3, len(data) // 3 + 64):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))
  return path


SINE = tone(220, 1.5, 16_000, 1)[0]
Case = Callable[[Path], tuple[Path | None, Path | None]]  # tmp -> (video, audio) given to decode_sample

VIDEO_CASES: dict[str, tuple[Case, bool | None, bool | None]] = {  # name -> (build, video decodes?, audio decodes?)
    "zero_bytes_mp4": (lambda t: ((t / "v.mp4").write_bytes(b"") and None or t / "v.mp4", None), MASKED, MASKED),
    "missing_file": (lambda t: (t / "absent.mp4", None), MASKED, MASKED),
    "folder_named_mp4": (lambda t: ((t / "d.mp4").mkdir() or t / "d.mp4", None), MASKED, MASKED),
    "broken_symlink": (lambda t: ((t / "l.mp4").symlink_to(t / "nowhere.mp4") or t / "l.mp4", None), MASKED, MASKED),
    "text_named_mp4": (lambda t: ((t / "v.mp4").write_text("not a video\n") and None or t / "v.mp4", None), MASKED,
                       MASKED),
    "random_bytes_mp4": (lambda t: ((t / "v.mp4").write_bytes(RNG.bytes(50_000)) and None or t / "v.mp4", None),
                         MASKED, MASKED),
    "truncated_mp4_5pct": (lambda t: (_cut(_mp4(t), 0.05), None), MASKED, MASKED),
    "truncated_mp4_50pct": (lambda t: (_cut(_mp4(t), 0.5), None), MASKED, MASKED),  # moov at the end: gone
    "truncated_mp4_99pct": (lambda t: (_cut(_mp4(t), 0.99), None), MASKED, MASKED),
    "truncated_faststart_mp4_50pct": (lambda t: (_cut(_mp4(t, index_first=True), 0.5), None), EITHER, EITHER),
    "truncated_faststart_mp4_90pct": (lambda t: (_cut(_mp4(t, index_first=True), 0.9), None), EITHER, EITHER),
    "bytes_flipped_mid_mp4": (lambda t: (_flip_middle(_mp4(t, n=30)), None), EITHER, EITHER),
    "audio_only_mp4": (lambda t: (write_av(t / "v.mp4", None, tone(440, 1.0, 16_000, 1), rate=16_000), None),
                       MASKED, OK),
    "video_only_mp4": (lambda t: (_mp4(t, audio=False), None), OK, MASKED),
    "one_frame_mp4": (lambda t: (_mp4(t, n=1), None), OK, OK),
    "two_frame_mp4": (lambda t: (_mp4(t, n=2), None), OK, OK),
    "seven_frame_mp4": (lambda t: (_mp4(t, n=7), None), OK, OK),
    "one_frame_cv2_no_audio": (lambda t: (write_cv2_video(t / "v.mp4", _noise(1)), None), OK, MASKED),
    "large_2160p_frame": (lambda t: (_mp4(t, n=2, h=2160, w=3840, audio=False), None), OK, MASKED),
    "extreme_aspect_16x1024": (lambda t: (_mp4(t, n=3, h=16, w=1024, audio=False), None), OK, MASKED),
    "extreme_aspect_1024x16": (lambda t: (_mp4(t, n=3, h=1024, w=16, audio=False), None), OK, MASKED),
    "tiny_16x16_frames": (lambda t: (_mp4(t, n=4, h=16, w=16), None), OK, OK),
    "huge_dimensions_in_header": (lambda t: (_patch_tkhd_size(_mp4(t), 60_000, 60_000), None), EITHER, EITHER),
    "no_face_noise_frames": (lambda t: (_mp4(t, n=8, h=240, w=320), None), OK, OK),
    "black_frames": (lambda t: (write_av(t / "v.mp4", [np.zeros((64, 80, 3), np.uint8)] * 8,
                                         tone(440, 1.0, 16_000, 1), rate=16_000), None), OK, OK),
    "silent_audio_track": (lambda t: (write_av(t / "v.mp4", _noise(8), np.zeros((1, 16_000), np.float32),
                                               rate=16_000), None), OK, MASKED),
    "stereo_mp3_in_mkv": (lambda t: (write_av(t / "v.mkv", _noise(8), tone(440, 1.0, 44_100, 2), rate=44_100,
                                              audio_codec="libmp3lame"), None), OK, OK),
    "mp4_named_wav_as_audio": (lambda t: (None, _renamed(_mp4(t), "a.wav")), None, OK),
    "wav_named_mp4_as_video": (lambda t: (_renamed(_wav(t, SINE), "v.mp4"), None), MASKED, OK),
    "jpeg_named_mp4": (lambda t: (_jpeg(t / "v.mp4"), None), EITHER, MASKED),
    "video_given_as_separate_audio": (lambda t: (_mp4(t, name="v.mp4"), _mp4(t, name="w.mp4")), OK, OK),
    "good_video_missing_audio_file": (lambda t: (_mp4(t), t / "absent.wav"), OK, MASKED),
    "broken_video_good_audio_file": (lambda t: (_cut(_mp4(t), 0.3), _wav(t, SINE)), MASKED, OK),
}


def _jpeg(path: Path) -> Path:
  ok, blob = cv2.imencode(".jpg", _noise(1)[0])
  assert ok
  path.write_bytes(blob.tobytes())
  return path


def _float_wav(t: Path, values: np.ndarray, subtype: str = "DOUBLE") -> Path:
  return _wav(t, values, subtype=subtype)


AUDIO_CASES: dict[str, tuple[Case, bool | None]] = {  # name -> (build, audio decodes?)
    "wav_zero_bytes": (lambda t: (None, (t / "a.wav").write_bytes(b"") and None or t / "a.wav"), MASKED),
    "wav_header_only": (lambda t: (None, _cut(_wav(t, SINE), 44 / (_wav(t, SINE).stat().st_size))), MASKED),
    "wav_truncated_half": (lambda t: (None, _cut(_wav(t, SINE), 0.5)), OK),
    "wav_random_bytes": (lambda t: (None, (t / "a.wav").write_bytes(RNG.bytes(20_000)) and None or t / "a.wav"),
                         MASKED),
    "wav_8khz": (lambda t: (None, _wav(t, SINE, rate=8_000)), OK),
    "wav_11025hz": (lambda t: (None, _wav(t, SINE, rate=11_025)), OK),
    "wav_96khz": (lambda t: (None, _wav(t, tone(220, 0.5, 96_000, 1)[0], rate=96_000)), OK),
    "wav_1hz_rate": (lambda t: (None, _wav(t, SINE[:8], rate=1)), OK),
    "wav_6_channels": (lambda t: (None, _wav(t, tone(220, 1.0, 48_000, 6).T, rate=48_000)), OK),
    "wav_6_channels_cancelling": (lambda t: (None, _wav(t, np.stack([SINE, -SINE] * 3, 1))), MASKED),  # mean 0
    "wav_float64": (lambda t: (None, _float_wav(t, SINE.astype(np.float64))), OK),
    "wav_float32": (lambda t: (None, _float_wav(t, SINE, "FLOAT")), OK),
    "wav_pcm_u8": (lambda t: (None, _wav(t, SINE, subtype="PCM_U8")), OK),
    "wav_pcm_24": (lambda t: (None, _wav(t, SINE, subtype="PCM_24")), OK),
    "wav_nan_samples": (lambda t: (None, _float_wav(t, np.where(np.arange(SINE.size) % 100 == 0, np.nan, SINE))),
                        MASKED),
    "wav_all_nan": (lambda t: (None, _float_wav(t, np.full(16_000, np.nan))), MASKED),
    "wav_inf_samples": (lambda t: (None, _float_wav(t, np.where(np.arange(SINE.size) == 5, np.inf, SINE))), MASKED),
    "wav_huge_values": (lambda t: (None, _float_wav(t, SINE * 1e6)), OK),
    "wav_one_sample": (lambda t: (None, _wav(t, np.array([0.5]))), OK),
    "wav_silent": (lambda t: (None, _wav(t, np.zeros(16_000))), MASKED),
    "wav_60_seconds": (lambda t: (None, _wav(t, tone(220, 60.0, 16_000, 1)[0])), OK),
    "flac_file": (lambda t: (None, _wav(t, SINE, name="a.flac", subtype="PCM_16")), OK),
    "ogg_vorbis_file": (lambda t: (None, _wav(t, SINE, name="a.ogg", subtype="VORBIS")), OK),
    "flac_named_wav": (lambda t: (None, _renamed(_wav(t, SINE, name="a.flac", subtype="PCM_16"), "b.wav")), OK),
    "text_named_wav": (lambda t: (None, (t / "a.wav").write_text("RIFF? no") and None or t / "a.wav"), MASKED),
}


def _check(video: Path | None, audio: Path | None, want_video: bool | None, want_audio: bool | None) -> None:
  d = media.decode_sample(video, audio)
  assert d.frames.shape == d.faces.shape == (8, 3, 224, 224) and d.audio.shape == (8, 32_000)
  assert d.frames.dtype == d.faces.dtype == d.audio.dtype == np.float32 and d.face_found.shape == (8,)
  for name in ("frames", "faces", "audio"):
    assert np.isfinite(getattr(d, name)).all(), name
  if not d.video_mask:
    assert not d.frames.any() and not d.faces.any() and not d.face_found.any()
  if not d.audio_mask:
    assert not d.audio.any()
  if want_video is not None and video is not None:
    assert d.video_mask == want_video, d.errors
  if want_audio is not None:
    assert d.audio_mask == want_audio, d.errors
  masked = (["video"] if video is not None and not d.video_mask else []) + (
      ["audio"] if (video or audio) is not None and not d.audio_mask else [])
  assert len(d.errors) == len(masked), d.errors
  for error, field in zip(d.errors, masked):
    source = audio if field == "audio" and audio is not None else video
    assert "\n" not in error and re.match(rf"{re.escape(str(source))}: {field}: \S", error), error


@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_broken_and_odd_videos(tmp_path, case):
  build, want_video, want_audio = VIDEO_CASES[case]
  video, audio = build(tmp_path)
  _check(video, audio, want_video, want_audio)


@pytest.mark.parametrize("case", sorted(AUDIO_CASES))
def test_broken_and_odd_audio_files(tmp_path, case):
  build, want_audio = AUDIO_CASES[case]
  video, audio = build(tmp_path)
  _check(video, audio, None, want_audio)


def test_nan_audio_names_the_count():
  """The reason of the NaN case, word for word (the others are checked by shape)."""
  import tempfile

  with tempfile.TemporaryDirectory() as tmp:
    path = _float_wav(Path(tmp), np.where(np.arange(SINE.size) % 100 == 0, np.nan, SINE))
    with pytest.raises(media.MediaError, match=rf"a.wav: audio: {SINE.size // 100} of {SINE.size} samples are NaN"):
      media.load_audio(path)
