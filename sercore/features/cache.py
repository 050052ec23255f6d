"""Disk cache of frozen features, one file per (encoder, settings, input content).

Key: sha256 of a canonical JSON of the encoder's name, its settings, a fingerprint of its weights/code and
the sha256 of the input (the audio file's bytes, or the transcript's UTF-8 text). So a changed setting, a
changed model or an edited wav gives a new key, and renaming or moving a wav does not. `sha256_file`
remembers each file's digest for the life of the process, keyed by (resolved path, size, mtime_ns), so a
file is hashed once per process unless it changes. Across processes, a HashIndex (<cache_dir>/file-sha256.json,
passed as sha256_file(path, index=...)) keeps the same (path, size, mtime_ns) -> sha256 table on disk, so a
run over a 27 GB corpus stats its files instead of reading them again; a file whose size or mtime changed is
hashed again. The index file carries a sha256 of its entries and is rewritten atomically; one that fails
that check (or is not an index) is reported with a CacheWarning and rebuilt. An entry is not persisted while
the file's mtime is within RACY_SECONDS of the hashing (a write in the same clock tick could keep size and
mtime: the "racy git" problem), so such files are hashed again by the next process.

Where: `default_cache_dir()` is the one default folder of the whole library: $SERCORE_CACHE when set, else
$XDG_CACHE_HOME/sercore, else ~/.cache/sercore. Nothing is ever written inside a corpus.

File format (<cache_dir>/<encoder>/<key[:2]>/<key>.feat): the 8-byte magic b"SERCFEA2", the 32-byte key
itself, the 32-byte sha256 of the payload, then the payload, an array in .npy format. A file that is short,
has the wrong magic (entries of the earlier key-less format b"SERCFEAT" included), carries another key
(e.g. two entries swapped), fails its checksum, or holds NaN/Inf values is reported with a CacheWarning
naming the file (old-format entries: one warning per FeatureCache, i.e. per `extract` call) and treated
as a miss, so the caller recomputes and overwrites it. Writes are atomic (temp file + rename). A folder
that cannot be written (read-only, no permission) still serves its hits; the first failed write gives one
CacheWarning naming the folder (once per process), and later misses are kept in memory only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np

from sercore.provenance import atomic_write_bytes

MAGIC = b"SERCFEA2"
OLD_MAGIC = b"SERCFEAT"  # the format before entries carried their key
_DIGEST_BYTES = 32
_HEADER = len(MAGIC) + 2 * _DIGEST_BYTES
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}
_WARNED_UNWRITABLE: set[str] = set()
HASH_INDEX_FILE = "file-sha256.json"
HASH_INDEX_FORMAT = "sercore-file-sha256-1"
RACY_SECONDS = 2.0


class CacheWarning(UserWarning):
    """A cache entry was unreadable and will be recomputed, or the cache folder cannot be written."""


class OldFormatError(ValueError):
    """A cache file in the earlier key-less format."""


def default_cache_dir() -> Path:
    """$SERCORE_CACHE, else $XDG_CACHE_HOME/sercore, else ~/.cache/sercore (not created here)."""
    if os.environ.get("SERCORE_CACHE"):
        return Path(os.environ["SERCORE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "sercore"


def cache_dir_or_default(*choices) -> Path:
    """The first non-empty folder among `choices` (e.g. a setting, then a profile entry), else the default."""
    for choice in choices:
        if choice:
            return Path(choice).expanduser()
    return default_cache_dir()


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20, index: "HashIndex | None" = None) -> str:
    """Hex sha256 of the file's bytes, memoised per (resolved path, size, mtime_ns) within this process and,
    with `index`, across processes (call index.save() to keep what was hashed). OSError when unreadable."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    memo = (str(resolved), status.st_size, status.st_mtime_ns)
    if memo not in _FILE_DIGESTS and index is not None and index.lookup(*memo):
        _FILE_DIGESTS[memo] = index.lookup(*memo)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
        _FILE_DIGESTS[memo] = digest.hexdigest()
        if index is not None:
            index.hashed += 1  # files whose bytes were read (tests and reports count them)
    if index is not None and index.lookup(*memo) is None:
        index.record(*memo, _FILE_DIGESTS[memo], status.st_mtime)
    return _FILE_DIGESTS[memo]


class HashIndex:
    """(resolved path, size, mtime_ns) -> sha256 of audio files, kept in <cache_dir>/file-sha256.json."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.path = Path(cache_dir) / HASH_INDEX_FILE
        self.entries: dict[str, list] = {}  # path -> [size, mtime_ns, sha256]
        self.dirty, self.hashed = False, 0
        try:
            blob = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            warnings.warn(f"file hash index {self.path} is unreadable ({error}); rebuilding it", CacheWarning,
                          stacklevel=2)
            return
        entries = blob.get("entries") if isinstance(blob, dict) else None
        if not isinstance(entries, dict) or blob.get("format") != HASH_INDEX_FORMAT or \
                blob.get("checksum") != self._checksum(entries):
            warnings.warn(f"file hash index {self.path} fails its checksum or is not a sercore index; rebuilding "
                          "it (every file is hashed again once)", CacheWarning, stacklevel=2)
            return
        self.entries = entries

    @staticmethod
    def _checksum(entries: dict) -> str:
        return sha256_text(json.dumps(entries, sort_keys=True, separators=(",", ":")))

    def lookup(self, path: str, size: int, mtime_ns: int) -> str | None:
        entry = self.entries.get(path)
        return entry[2] if entry and entry[0] == size and entry[1] == mtime_ns else None

    def record(self, path: str, size: int, mtime_ns: int, digest: str, mtime: float) -> None:
        if time.time() - mtime < RACY_SECONDS:
            return  # see the module docstring: the next process hashes this file again
        self.entries[path] = [size, mtime_ns, digest]
        self.dirty = True

    def sha256(self, path: str | os.PathLike) -> str:
        return sha256_file(path, index=self)

    def save(self) -> None:
        """Write the index atomically when it changed; an unwritable folder gives one CacheWarning."""
        if not self.dirty:
            return
        try:
            atomic_write_bytes(self.path, json.dumps({"format": HASH_INDEX_FORMAT, "entries": self.entries,
                                                      "checksum": self._checksum(self.entries)}).encode())
            self.dirty = False
        except OSError as error:
            if str(self.path) not in _WARNED_UNWRITABLE:
                _WARNED_UNWRITABLE.add(str(self.path))
                warnings.warn(f"file hash index {self.path} cannot be written ({error.strerror or error}); files "
                              "are hashed again by the next run", CacheWarning, stacklevel=2)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(encoder: str, settings: dict, fingerprint: str, content_sha256: str) -> str:
    """Hex key of one feature array; settings must be JSON-serialisable (numbers, strings, None, lists)."""
    canonical = json.dumps({"encoder": encoder, "settings": settings, "fingerprint": fingerprint,
                            "content": content_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_array(array: np.ndarray, key: str) -> bytes:
    """A cache file's bytes for `array` under the hex `key`; ValueError when the array holds NaN/Inf."""
    if not np.isfinite(array).all():
        raise ValueError("refusing to cache an array with NaN or Inf values")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    payload = buffer.getvalue()
    return MAGIC + bytes.fromhex(key) + hashlib.sha256(payload).digest() + payload


def decode_array(blob: bytes, key: str) -> np.ndarray:
    """The array in a cache file's bytes; ValueError saying what is wrong when they are not intact, were
    written under another key, or hold NaN/Inf."""
    if len(blob) >= len(OLD_MAGIC) and blob[:len(OLD_MAGIC)] == OLD_MAGIC:
        raise OldFormatError("old cache format without the key in its header")
    if len(blob) < _HEADER:
        raise ValueError(f"file is {len(blob)} bytes, shorter than the {_HEADER}-byte header (truncated)")
    if blob[:len(MAGIC)] != MAGIC:
        raise ValueError("wrong magic bytes (not a sercore feature file)")
    stored_key = blob[len(MAGIC):len(MAGIC) + _DIGEST_BYTES].hex()
    if stored_key != key:
        raise ValueError(f"entry holds key {stored_key[:12]}..., not {key[:12]}... (moved or swapped file)")
    payload = blob[_HEADER:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC) + _DIGEST_BYTES:_HEADER]:
        raise ValueError("payload checksum mismatch (truncated or corrupted)")
    array = np.load(io.BytesIO(payload), allow_pickle=False)
    if not np.isfinite(array).all():
        raise ValueError("array holds NaN or Inf values")
    return array


class FeatureCache:
    """Feature arrays on disk under `root`, grouped in one folder per encoder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.writable = True  # False after the first failed write: later misses stay in memory
        self._warned_old = False  # an upgraded cache holds many old entries: one warning, not one per file

    def path(self, encoder: str, key: str) -> Path:
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder).strip("_") or "encoder"
        return self.root / folder / key[:2] / f"{key}.feat"

    def load(self, encoder: str, key: str) -> np.ndarray | None:
        """The cached array, or None when absent or unusable (the latter with a CacheWarning)."""
        path = self.path(encoder, key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            warnings.warn(f"unreadable feature cache entry {path}: {error}; recomputing it", CacheWarning,
                          stacklevel=2)
            return None
        try:
            return decode_array(blob, key)
        except OldFormatError as error:
            if not self._warned_old:
                self._warned_old = True
                warnings.warn(f"feature cache {self.root}: {error} (e.g. {path}); such entries are recomputed and "
                              "rewritten, without a warning for each", CacheWarning, stacklevel=2)
            return None
        except ValueError as error:
            warnings.warn(f"corrupt feature cache entry {path}: {error}; recomputing it", CacheWarning,
                          stacklevel=2)
            return None

    def save(self, encoder: str, key: str, array: np.ndarray) -> Path | None:
        """Write the entry; None (and one CacheWarning per folder and process) when the folder is unwritable."""
        blob = encode_array(array, key)
        if not self.writable:
            return None
        try:
            return atomic_write_bytes(self.path(encoder, key), blob)
        except OSError as error:
            self.writable = False
            if str(self.root) not in _WARNED_UNWRITABLE:
                _WARNED_UNWRITABLE.add(str(self.root))
                warnings.warn(f"feature cache {self.root} cannot be written ({error.strerror or error}): its "
                              "entries are still read, new features are computed in memory and not kept; pass "
                              "another cache folder or set SERCORE_CACHE", CacheWarning, stacklevel=2)
            return None
