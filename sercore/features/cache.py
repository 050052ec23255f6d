"""Disk cache of frozen features, one file per (encoder, settings, input content).

Key: sha256 of a canonical JSON of the encoder's name, its settings, a fingerprint of its weights/code and
the sha256 of the input (the audio file's bytes, or the transcript's UTF-8 text). So a changed setting, a
changed model or an edited wav gives a new key, and renaming or moving a wav does not.

File format (<cache_dir>/<encoder>/<key[:2]>/<key>.feat): the 8-byte magic b"SERCFEAT", the 32-byte sha256
of the payload, then the payload, an array in .npy format. A file that is short, has the wrong magic, or
whose payload does not match its checksum is reported with a CacheWarning naming the file and treated as a
miss, so the caller recomputes and overwrites it. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np

from sercore.provenance import atomic_write_bytes

MAGIC = b"SERCFEAT"
_DIGEST_BYTES = 32


class CacheWarning(UserWarning):
    """A cache entry was unreadable and will be recomputed."""


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(encoder: str, settings: dict, fingerprint: str, content_sha256: str) -> str:
    """Hex key of one feature array; settings must be JSON-serialisable (numbers, strings, None, lists)."""
    canonical = json.dumps({"encoder": encoder, "settings": settings, "fingerprint": fingerprint,
                            "content": content_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_array(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode_array(blob: bytes) -> np.ndarray:
    """The array in a cache file's bytes; ValueError saying what is wrong when they are not intact."""
    header = len(MAGIC) + _DIGEST_BYTES
    if len(blob) < header:
        raise ValueError(f"file is {len(blob)} bytes, shorter than the {header}-byte header (truncated)")
    if blob[:len(MAGIC)] != MAGIC:
        raise ValueError("wrong magic bytes (not a sercore feature file)")
    payload = blob[header:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC):header]:
        raise ValueError("payload checksum mismatch (truncated or corrupted)")
    return np.load(io.BytesIO(payload), allow_pickle=False)


class FeatureCache:
    """Feature arrays on disk under `root`, grouped in one folder per encoder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, encoder: str, key: str) -> Path:
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder).strip("_") or "encoder"
        return self.root / folder / key[:2] / f"{key}.feat"

    def load(self, encoder: str, key: str) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (the latter with a CacheWarning)."""
        path = self.path(encoder, key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode_array(blob)
        except ValueError as error:
            warnings.warn(f"corrupt feature cache entry {path}: {error}; recomputing it", CacheWarning,
                          stacklevel=2)
            return None

    def save(self, encoder: str, key: str, array: np.ndarray) -> Path:
        return atomic_write_bytes(self.path(encoder, key), encode_array(array))
