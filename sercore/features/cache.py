"""Disk cache of frozen features, one file per (encoder, settings, input content).

Key: sha256 of a canonical JSON of the encoder's name, its settings, a fingerprint of its weights/code and
the sha256 of the input (the audio file's bytes, or the transcript's UTF-8 text). So a changed setting, a
changed model or an edited wav gives a new key, and renaming or moving a wav does not. `sha256_file`
remembers each file's digest for the life of the process, keyed by (resolved path, size, mtime_ns), so a
file is hashed once per process unless it changes.

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


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, memoised per (resolved path, size, mtime_ns) within this process."""
    resolved = Path(path).resolve()
    status = resolved.stat()
    memo = (str(resolved), status.st_size, status.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(chunk_bytes):
                digest.update(chunk)
        _FILE_DIGESTS[memo] = digest.hexdigest()
    return _FILE_DIGESTS[memo]


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
