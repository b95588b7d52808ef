"""Persistent frozen-tower feature store: CLIP, HuBERT and FaceXFormer run once per distinct media content.

The towers are frozen in every P2E phase and the media decoder (Haar face detection included) is deterministic,
so a sample's `TowerFeatures` are a function of its (video, audio) file contents, the towers' weights and the
preprocessing settings. The store keeps them on disk, shared by every phase, resume, process and host (on a
shared file system); the step then runs only the adapters, the fusion and the LM, and the loader decodes nothing
(`Pipeline(..., features=cache)`, `Batch.features`). The authors recompute both for every sample.

  STORE/files/<writer>.jsonl       sha256 of media files, memoised by (absolute path, size, mtime_ns)
  STORE/<space>/space.json         what the features depend on (`space_settings`): the towers' weight digests
                                   and configs, the compute dtype, the decoder's settings and library versions,
                                   the fields' shapes and dtypes; <space> = its sha256[:16]
  STORE/<space>/<writer>-<n>.bin   a shard: entries' bytes (the `TowerFeatures` fields of one item, row-major)
  STORE/<space>/<writer>-<n>.json  its index: entry key -> [offset, crc32, has_video, has_audio, errors]

An entry key is the sha256 of the (video, audio) files' digests. Every process writes its own shards (writer =
host-pid-random); a shard, then its index, is written under a temporary name, fsynced and renamed, so a killed
writer leaves no index that points at missing bytes, and readers ignore `*.tmp`. Each entry's crc32 covers its
key, its decoder status and its bytes and is checked on every read: a missing or corrupt entry is recomputed,
never read as data. A store that cannot be written (a read-only mount, no permission) is read as it is: the
entries it lacks are computed and kept in the process's memory, with one warning.

Size: 135 KB per item for the full towers in bf16 (frames and audio [8, 1024], faces [8, 256], three experts'
[8, 1024] per side), 270 KB in fp32.

    python -m nanoemox_jax.data.features build --manifests data/manifests/*_train.jsonl \
        --parts checkpoints/nanoemox --out data/features [--part 0/2] [--workers 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import socket
import stat
import sys
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import cv2
import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx
from tqdm import tqdm

from nanoemox_jax.checkpoints import parts
from nanoemox_jax.checkpoints.params_io import atomic_write
from nanoemox_jax.data import media
from nanoemox_jax.data.manifest import Record, read_jsonl
from nanoemox_jax.model import fields
from nanoemox_jax.model.nanoemox import NanoEmoX, TowerFeatures

log = logging.getLogger(__name__)

VERSION = 1  # of the layout; part of every space's settings
SHARD_ENTRIES = 64  # entries per shard (8.6 MB of full-size bf16 features)
TOWER_NAMES = ("clip", "hubert", "face")
MediaKey = tuple[str | None, str | None]  # (video, audio) paths as the records give them
WRITE_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)  # a store we may read but not write


def media_key(record: Record) -> MediaKey:
  return (None if record.video is None else str(record.video), None if record.audio is None else str(record.audio))


@dataclasses.dataclass(frozen=True)
class MediaStatus:
  """What decoding one media pair gave: which modalities exist and the decoder's error messages."""
  has_video: bool
  has_audio: bool
  errors: tuple[str, ...]


class FileDigests:
  """sha256 of media files (streamed), memoised on disk by (absolute path, size, mtime_ns): a file is read once
  per store. A path that is no regular file gets "absent:<path>" (its entry then holds the decoder's error)."""

  def __init__(self, folder: Path, writer: str):
    self.log: Path | None = folder / f"{writer}.jsonl"
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      _denied(e, folder)
      self.log = None
    self.known: dict[tuple[str, int, int], str] = {}
    for path in folder.glob("*.jsonl"):
      for line in path.read_text(errors="replace").splitlines():
        try:
          d = json.loads(line)
          self.known[(d["path"], d["size"], d["mtime_ns"])] = d["sha256"]
        except (ValueError, KeyError, TypeError):  # a line cut by a killed writer
          continue

  def __call__(self, path: str | None) -> str:
    if path is None:
      return "none"
    p = Path(path).absolute()
    try:
      st = p.stat()
    except OSError:
      return f"absent:{p}"
    if not stat.S_ISREG(st.st_mode):
      return f"absent:{p}"
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in self.known:
      with open(p, "rb") as f:
        self.known[key] = hashlib.file_digest(f, "sha256").hexdigest()
      if self.log is not None:
        try:
          with open(self.log, "a") as f:
            f.write(json.dumps({"path": key[0], "size": key[1], "mtime_ns": key[2], "sha256": self.known[key]}) + "\n")
        except OSError as e:
          _denied(e, self.log.parent)
          self.log = None
    return self.known[key]


def _denied(error: OSError, folder: Path) -> None:
  """Re-raises `error` unless it says the store may not be written; then logs a warning naming `folder`."""
  if error.errno not in WRITE_DENIED:
    raise error
  log.warning("feature store: %s is not writable (%s); what it lacks is computed and kept in memory only", folder,
              error.strerror)


def entry_key(video_digest: str, audio_digest: str) -> str:
  return hashlib.sha256(f"{video_digest}\n{audio_digest}".encode()).hexdigest()


def towers_digest(model: NanoEmoX) -> dict[str, str]:
  """Per present tower, the sha256 of its weights (paths, shapes, dtypes and bytes, in path order)."""
  out = {}
  for name in TOWER_NAMES:
    tower = getattr(model, name)
    if tower is None:
      continue
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(nnx.state(tower))[0],
                             key=lambda item: jax.tree_util.keystr(item[0])):
      x = np.asarray(leaf)
      h.update(f"{jax.tree_util.keystr(path)} {x.shape} {x.dtype}\n".encode())
      h.update(np.ascontiguousarray(x).tobytes())
    out[name] = h.hexdigest()
  return out


def _abstract_inputs(model: NanoEmoX, batch: int) -> tuple[jax.ShapeDtypeStruct, ...]:
  size, cfg, s = media.IMAGE_SIZE, model.config, jax.ShapeDtypeStruct
  return (s((batch, cfg.num_frames, 3, size, size), jnp.float32), s((batch, cfg.num_frames, 3, size, size), jnp.float32),
          s((batch, cfg.num_audio_clips, media.CLIP_SAMPLES), jnp.float32))


def space_settings(model: NanoEmoX) -> dict:
  """Everything an entry's features depend on besides the media contents: tower weights and configs, the
  features taken from them, the compute dtype, the decoder's settings and versions, the fields' layout."""
  cfg = model.config
  shapes = jax.eval_shape(lambda *x: model.tower_features(*x), *_abstract_inputs(model, 1))
  picked = ("visual_layer", "visual_layers", "audio_layers", "expert_pairs", "speech_last_layers", "normalize_audio",
            "face_input", "num_frames", "num_audio_clips")
  return {
      "version": VERSION, "towers": towers_digest(model), "compute_dtype": jnp.dtype(model.dtype).name,
      "config": {n: fields.to_dict(getattr(cfg, n)) for n in TOWER_NAMES if getattr(model, n) is not None}
      | {n: fields.to_dict(getattr(cfg, n)) for n in picked},
      "media": {"frames": media.FRAMES, "image_size": media.IMAGE_SIZE, "clips": media.CLIPS,
                "clip_samples": media.CLIP_SAMPLES, "sample_rate": media.SAMPLE_RATE,
                "silence_peak": media.SILENCE_PEAK, "cascade": media.FACE_CASCADE,
                "detect_max_side": media.DETECT_MAX_SIDE, "face_enlarge": media.FACE_ENLARGE,
                "opencv": cv2.__version__, "pyav": av.__version__},
      "fields": [[name, list(x.shape[1:]), jnp.dtype(x.dtype).name] for name, x in zip(TowerFeatures._fields, shapes)]}


@dataclasses.dataclass(frozen=True)
class Entry:
  shard: str
  offset: int
  crc32: int
  status: MediaStatus


def _checksum(key: str, status: MediaStatus, data: bytes) -> int:
  head = json.dumps([key, status.has_video, status.has_audio, list(status.errors)]).encode()
  return zlib.crc32(data, zlib.crc32(head))


class FeatureStore:
  """One space of a store (see the module docstring): entries from every writer's indexes, shards of this one."""

  def __init__(self, root: str | Path, settings: dict):
    blob = json.dumps(settings, sort_keys=True, indent=1).encode()
    self.root = Path(root)
    self.folder = self.root / hashlib.sha256(blob).hexdigest()[:16]
    self.read_only = False
    self.memory: dict[str, tuple[MediaStatus, tuple[np.ndarray, ...]]] = {}  # new entries of a read-only store
    try:
      self.folder.mkdir(parents=True, exist_ok=True)
      if not (self.folder / "space.json").exists():
        atomic_write(self.folder / "space.json", blob)
    except OSError as e:
      _denied(e, self.folder)
      self.read_only = True
    self.fields = [(name, tuple(shape), np.dtype(jnp.dtype(dtype))) for name, shape, dtype in settings["fields"]]
    self.sizes = [math.prod(shape) * dtype.itemsize for _, shape, dtype in self.fields]
    self.nbytes = sum(self.sizes)
    self.writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    self.shards = 0
    self.entries: dict[str, list[Entry]] = {}  # key -> candidates, the newest first
    self._indexes: set[str] = set()
    self._files: dict[str, int] = {}
    self.refresh()

  def refresh(self) -> None:
    """Adds the entries of indexes written since the last call (by any writer). An unreadable index is ignored:
    its entries count as missing."""
    for path in sorted(self.folder.glob("*.json")):
      if path.name == "space.json" or path.name in self._indexes:
        continue
      self._indexes.add(path.name)
      try:
        index = json.loads(path.read_bytes())
        found = [(key, Entry(index["shard"], int(offset), int(crc), MediaStatus(bool(v), bool(a), tuple(errors))))
                 for key, (offset, crc, v, a, errors) in index["entries"].items()]
      except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("feature store: %s is unreadable (%s); its entries are recomputed", path, e)
        continue
      for key, entry in found:
        self.entries.setdefault(key, []).append(entry)

  def _pread(self, shard: str, offset: int) -> bytes:
    if shard not in self._files:
      self._files[shard] = os.open(self.folder / shard, os.O_RDONLY)
    return os.pread(self._files[shard], self.nbytes, offset)

  def read(self, key: str) -> tuple[MediaStatus, tuple[np.ndarray, ...]] | None:
    """The entry's decoder status and per-item arrays, or None when it is missing or every copy fails its crc32
    (logged; such copies are forgotten)."""
    if key in self.memory:
      return self.memory[key]
    for entry in list(self.entries.get(key, ())):
      try:
        data = self._pread(entry.shard, entry.offset)
      except OSError:
        data = b""
      if len(data) == self.nbytes and _checksum(key, entry.status, data) == entry.crc32:
        offsets = np.cumsum([0, *self.sizes])
        return entry.status, tuple(np.frombuffer(data[a:b], dtype).reshape(shape) for (_, shape, dtype), a, b
                                   in zip(self.fields, offsets[:-1], offsets[1:]))
      log.warning("feature store: entry %s in %s/%s fails its checksum; recomputed", key[:16], self.folder.name,
                  entry.shard)
      self.entries[key].remove(entry)
    return None

  def write(self, items: Sequence[tuple[str, MediaStatus, Sequence[np.ndarray]]]) -> None:
    """One shard of `items` (key, status, per-item arrays), then its index; the entries are read first from now.
    A read-only store keeps them in memory."""
    if self.read_only:
      self.memory.update((key, (status, tuple(arrays))) for key, status, arrays in items)
      return
    name = f"{self.writer}-{self.shards:06d}"
    self.shards += 1
    blob, index = bytearray(), {}
    for key, status, arrays in items:
      data = b"".join(np.ascontiguousarray(x, dtype).tobytes() for x, (_, _, dtype) in zip(arrays, self.fields,
                                                                                            strict=True))
      assert len(data) == self.nbytes, (len(data), self.nbytes)
      index[key] = [len(blob), _checksum(key, status, data), status.has_video, status.has_audio, list(status.errors)]
      blob += data
    try:
      atomic_write(self.folder / f"{name}.bin", bytes(blob))
      atomic_write(self.folder / f"{name}.json", json.dumps({"shard": f"{name}.bin", "entries": index}).encode())
    except OSError as e:
      _denied(e, self.folder)
      self.read_only = True
      self.write(items)  # into memory
      return
    self._indexes.add(f"{name}.json")
    for key, (offset, crc, *_), (_, status, _) in zip(index, index.values(), items):
      self.entries.setdefault(key, []).insert(0, Entry(f"{name}.bin", offset, crc, status))

  def close(self) -> None:
    for fd in self._files.values():
      os.close(fd)
    self._files.clear()


@nnx.jit
def _towers(model: NanoEmoX, frames: jax.Array, faces: jax.Array, audio: jax.Array) -> TowerFeatures:
  return model.tower_features(frames, faces, audio)


def compute(model: NanoEmoX, keys: Sequence[MediaKey], batch_size: int = 8, workers: int = 0
            ) -> Iterator[tuple[MediaKey, MediaStatus, tuple[np.ndarray, ...]]]:
  """Decodes `keys` (in `workers` processes) and runs the towers in batches padded to `batch_size` (one program
  serves them all): (key, status, per-item arrays) in order. A decoding error masks its modality exactly as in
  the pipeline (the tower runs on zeros, the model masks the slots)."""
  if workers and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain's multiprocessing reads absl flags: outside an absl app, the defaults
  face_input = model.config.face_input
  decoded = grain.MapDataset.source(list(keys)).map(lambda k: media.decode_sample(*k, face_input))
  decoded = decoded.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  pending: list = []

  def flush():
    n = len(pending)
    arrays = [np.stack([getattr(d, f) for _, d in pending]) for f in ("frames", "faces", "audio")]
    padded = [np.concatenate([a, np.zeros((batch_size - n,) + a.shape[1:], a.dtype)]) for a in arrays]
    out = [np.asarray(x)[:n] for x in _towers(model, *padded)]
    for i, (key, d) in enumerate(pending):
      yield key, MediaStatus(bool(d.video_mask), bool(d.audio_mask), d.errors), tuple(x[i] for x in out)
    pending.clear()

  for key, d in zip(keys, decoded, strict=True):
    pending.append((key, d))
    if len(pending) == batch_size:
      yield from flush()
  if pending:
    yield from flush()


@dataclasses.dataclass
class FeatureCache:
  """What the pipeline reads: a store's entries for a set of media pairs. `status` by media key (for the
  workers), `index` media key -> entry key, `gather` the [B, ...] features (an entry that fails its checksum
  is recomputed with `model`). `computed` / `read`: entries the towers produced / the store gave when built."""
  store: FeatureStore
  model: NanoEmoX
  index: dict[MediaKey, str]
  status: dict[MediaKey, MediaStatus]
  batch_size: int = 8
  computed: int = 0
  read: int = 0

  def gather(self, keys: Sequence[MediaKey]) -> TowerFeatures:
    """[B, ...] features of `keys` (numpy)."""
    rows = []
    for key in keys:
      found = self.store.read(self.index[key])
      if found is None:
        (_, status, arrays), = compute(self.model, [key], self.batch_size)
        self.store.write([(self.index[key], status, arrays)])
        self.computed += 1
        found = status, arrays
      rows.append(found[1])
    return TowerFeatures(*(np.stack(column) for column in zip(*rows)))


def build_cache(store: str | Path, model: NanoEmoX, records: Sequence[Record], batch_size: int = 8,
                workers: int = 0, part: tuple[int, int] = (0, 1), progress: bool = False,
                shard_entries: int = SHARD_ENTRIES) -> FeatureCache:
  """The store's entries for the distinct media pairs of `records`, computing those missing or corrupt: of
  part `part` = (i, n) only the entries whose key is i mod n (several processes build a store together).

  Every present entry is read and checked first; missing ones are decoded (`workers` processes), run through the
  towers in batches of `batch_size`, and written in shards of `shard_entries` as they come (a killed build keeps
  its finished shards). `progress`: tqdm bars on stderr.
  """
  keys = list(dict.fromkeys(media_key(r) for r in records))  # (None, None): both masked, zeros in
  if not keys:
    raise ValueError("build_cache: no records")
  index_of, count = part
  began = time.perf_counter()
  space = FeatureStore(store, space_settings(model))
  digest = FileDigests(Path(store) / "files", space.writer)
  bar = lambda it, what, total=None: tqdm(it, what, total, disable=not progress, unit="item", file=sys.stderr)
  index = {k: entry_key(digest(k[0]), digest(k[1])) for k in bar(keys, "hashing media")}
  first = {}  # entry key -> the first media key with that content
  for k in keys:
    if int(index[k][:8], 16) % count == index_of:
      first.setdefault(index[k], k)
  status, todo = {}, []
  for entry, k in bar(first.items(), "checking stored entries"):
    found = space.read(entry)
    if found is None:
      todo.append(k)
    else:
      status[entry] = found[0]
  done: list = []
  for k, s, arrays in bar(compute(model, todo, batch_size, workers), f"towers ({space.folder})", len(todo)):
    status[index[k]] = s
    done.append((index[k], s, arrays))
    if len(done) == shard_entries:
      space.write(done)
      done = []
  if done:
    space.write(done)
  log.info("feature store %s: %d media items of part %d/%d, %d read, %d computed (%.1f MB each), %.0f s",
           space.folder, len(first), index_of, count, len(first) - len(todo), len(todo), space.nbytes / 1e6,
           time.perf_counter() - began)
  return FeatureCache(space, model, {k: index[k] for k in keys if index[k] in status},
                      {k: status[index[k]] for k in keys if index[k] in status}, batch_size, len(todo),
                      len(first) - len(todo))


def main(argv: Sequence[str] | None = None) -> int:
  """`build`: fill a store for the media of some manifests (see the module docstring). A user error is one line
  on stderr and exit status 2."""
  parser = argparse.ArgumentParser(prog="python -m nanoemox_jax.data.features", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser("build", help="compute the missing or corrupt entries of the media of --manifests")
  b.add_argument("--manifests", nargs="+", required=True, help="JSONL manifests (nanoemox_jax.data.prepare)")
  b.add_argument("--parts", required=True, help="a model folder (checkpoints.parts): its towers are run")
  b.add_argument("--out", required=True, help="the store's folder (created; training's paths.features)")
  b.add_argument("--tower-dtype", default="bfloat16", choices=("float32", "bfloat16"),
                 help="as the run's precision.tower_dtype (default bfloat16)")
  b.add_argument("--compute-dtype", default="bfloat16", choices=("float32", "bfloat16"),
                 help="as the run's precision.compute_dtype (default bfloat16)")
  b.add_argument("--batch-size", type=int, default=8, help="items per tower call")
  b.add_argument("--workers", type=int, default=2, help="decoding processes")
  b.add_argument("--shard-entries", type=int, default=SHARD_ENTRIES, help="entries per shard file")
  b.add_argument("--part", default="0/1", help="I/N: this process builds the entries whose key is I mod N")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  try:
    i, n = (int(x) for x in args.part.split("/"))
    if not 0 <= i < n:
      raise ValueError
  except ValueError:
    print(f"--part: {args.part!r} is not I/N with 0 <= I < N", file=sys.stderr)
    return 2
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  try:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not os.access(args.out, os.W_OK):  # EROFS for root too
      raise ValueError(f"--out {args.out}: not writable (a read-only store is for reading: training and inference "
                       "use it as it is)")
    records = [r for path in args.manifests for r in read_jsonl(path)]
    model = parts.load(args.parts, dtype=dtypes[args.compute_dtype], tower_dtype=dtypes[args.tower_dtype])
  except (OSError, ValueError) as e:
    print(str(e).splitlines()[0], file=sys.stderr)
    return 2
  try:
    cache = build_cache(args.out, model, records, args.batch_size, args.workers, (i, n), True, args.shard_entries)
  except OSError as e:  # the machine's: a full disk (ENOSPC); finished shards are kept, the same command goes on
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{cache.store.folder}: {cache.read + cache.computed} entries of part {i}/{n}, {cache.computed} computed")
  cache.store.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
