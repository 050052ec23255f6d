"""Memory-mappable feature stores: frozen features of a whole corpus on disk, read lazily per batch.

The per-file cache (sercore.features.cache) returns every array in memory, which is what a 200-utterance
corpus needs and what WavLM-Large on a real corpus cannot afford (~2.56 MB per second of audio for its 25
hidden states in float16: IEMOCAP's 4-class set alone ~64 GB). A store keeps them on disk instead:

    <cache_dir>/stores/<encoder>/<store key[:16]>/shard-<id>.npy          a flat 1-D array (.npy format)
    <cache_dir>/stores/<encoder>/<store key[:16]>/shard-<id>.index.json   content sha256 -> (offset, shape)

The store key hashes the encoder's name, settings and fingerprint (its weights), so runs with the same
encoder settings share one store whatever corpus or filtering they use, and a changed setting (e.g. the SSL
`layers` kept) is another store. An utterance is found by the sha256 of its audio bytes (as in the cache),
so renaming a wav does not recompute it. Shards are immutable: each extraction appends new shards of at
most `shard_bytes` (so an interrupted extraction keeps what it finished), each written to a temp file,
fsynced and renamed with the mode open() gives under the umask (like sercore.provenance.atomic_write);
its index is renamed last and is what makes a shard visible. A data file without an index (an interrupted
write) is ignored and counted in `orphans`. When a shard is opened its index is checked (format, encoder,
data file size, every entry inside the file); a shard that fails is skipped with a CacheWarning naming it
and its utterances are recomputed. Entries are finite when written; the bytes are not re-hashed on each
read (a store of 64 GB would be read once per run for that): `verify()` re-checks every entry's sha256.

`extract_to_store` returns LazyFeatures, a sequence aligned with the table whose item i is a read-only
np.memmap of row i (None for a failed row, as FeatureList): each access maps only that utterance, so a crop
reads only its frames and nothing stays resident once the batch is built. Text encoders work the same way
(rows keyed by the sha256 of the transcript; `output_bytes(transcript)` estimates their size). Before
computing anything it estimates the bytes to add (seconds of audio x the encoder's `output_bytes`) and
refuses, in one line, when that exceeds the free disk or `max_gb` (features.max_cache_gb). A folder that
cannot be written is an error when there is anything to compute (the store never falls back to holding the
corpus in memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

from sercore.features.cache import CacheWarning, HashIndex, sha256_text
from sercore.features.encoders import make_encoder
from sercore.features.extraction import NON_FINITE_FEATURES, ExtractStats, FeatureError, _transcript
from sercore.provenance import current_umask, atomic_write_json

log = logging.getLogger("sercore.features")

FORMAT = "sercore-feature-store-1"
# The .npy header is written last (the length is known only then); 128 bytes hold any 1-D shape.
HEADER_BYTES = 128
DEFAULT_SHARD_BYTES = 2 << 30


def store_key(encoder) -> str:
    canonical = json.dumps({"encoder": encoder.name, "settings": encoder.settings,
                            "fingerprint": encoder.fingerprint}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _npy_header(n_values: int, dtype: np.dtype) -> bytes:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n_values,)}
    text = repr(header).encode("latin1")
    padding = HEADER_BYTES - 10 - len(text) - 1
    if padding < 0:
        raise ValueError(f"store shard of {n_values} values does not fit the fixed .npy header")
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + text + b" " * padding + b"\n"


class _Shard:
    """One committed shard: its data file, dtype, data offset and entries content -> (offset, shape)."""

    def __init__(self, index_path: Path, encoder_name: str, key: str):
        info = json.loads(index_path.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT or info.get("store_key") != key:
            raise ValueError(f"not a shard of this store (format {info.get('format')!r})")
        self.data = index_path.with_name(info["data"])
        self.dtype = np.dtype(info["dtype"])
        size = self.data.stat().st_size
        if size != info["data_bytes"]:
            raise ValueError(f"data file {self.data.name} is {size} bytes, the index says {info['data_bytes']}")
        with open(self.data, "rb") as handle:
            if np.lib.format.read_magic(handle) != (1, 0):
                raise ValueError(f"data file {self.data.name} is not a version 1.0 .npy file")
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            self.offset = handle.tell()
        if dtype != self.dtype or len(shape) != 1 or self.offset + shape[0] * dtype.itemsize != size:
            raise ValueError(f"data file {self.data.name} header does not match its index")
        self.entries = {}
        for content, (start, item_shape, digest) in info["entries"].items():
            count = int(np.prod(item_shape))
            if start < 0 or start + count > shape[0]:
                raise ValueError(f"entry {content[:12]}... lies outside {self.data.name}")
            self.entries[content] = (int(start), tuple(int(n) for n in item_shape), digest)


class FeatureStore:
    """The shards of one encoder (name, settings, fingerprint) under `cache_dir`/stores."""

    def __init__(self, cache_dir, encoder, shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.encoder_name, self.key = encoder.name, store_key(encoder)
        self.settings, self.fingerprint = encoder.settings, encoder.fingerprint
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name).strip("_") or "encoder"
        self.folder = Path(cache_dir) / "stores" / name / self.key[:16]
        self.shard_bytes = shard_bytes
        self.refresh()

    def refresh(self) -> None:
        """(Re)read the committed shards' indexes; a damaged one is skipped with a CacheWarning."""
        self.shards, self.where, self.orphans = [], {}, 0
        if not self.folder.is_dir():
            return
        indexed = set()
        for index_path in sorted(self.folder.glob("shard-*.index.json")):
            try:
                shard = _Shard(index_path, self.encoder_name, self.key)
            except (OSError, ValueError, KeyError, TypeError) as error:
                warnings.warn(f"feature store shard {index_path} is unusable ({error}); its utterances are "
                              "recomputed", CacheWarning, stacklevel=3)
                continue
            indexed.add(shard.data.name)
            self.shards.append(shard)
            for content in shard.entries:
                self.where[content] = shard
        self.orphans = sum(1 for p in self.folder.glob("shard-*.npy") if p.name not in indexed)

    def __contains__(self, content: str) -> bool:
        return content in self.where

    def nbytes(self) -> int:
        return sum(s.data.stat().st_size for s in self.shards)

    def item(self, content: str) -> tuple[Path, int, tuple, np.dtype]:
        """(data file, byte offset, shape, dtype) of an utterance in the store."""
        shard = self.where[content]
        start, shape, _ = shard.entries[content]
        return shard.data, shard.offset + start * shard.dtype.itemsize, shape, shard.dtype

    def verify(self) -> dict[str, str]:
        """content -> problem for every entry whose bytes no longer hash to the sha256 in its index."""
        bad = {}
        for content, shard in self.where.items():
            path, offset, shape, dtype = self.item(content)
            view = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            if hashlib.sha256(view.tobytes()).hexdigest() != shard.entries[content][2]:
                bad[content] = f"{path.name}: checksum mismatch"
        return bad

    def writer(self) -> "ShardWriter":
        return ShardWriter(self)


class ShardWriter:
    """Appends arrays to a temp shard and commits it (data, then index) every shard_bytes and at close."""

    def __init__(self, store: FeatureStore):
        self.store, self.handle, self.committed = store, None, 0

    def _open(self, dtype: np.dtype) -> None:
        try:
            self.store.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=self.store.folder)
        except OSError as error:
            raise OSError(f"feature store {self.store.folder} cannot be written ({error.strerror or error}): "
                          "pass another cache folder (--set cache_dir=...) or set SERCORE_CACHE") from None
        self.tmp, self.handle = Path(tmp), os.fdopen(fd, "wb")
        self.handle.write(b"\0" * HEADER_BYTES)
        self.dtype, self.values, self.entries = dtype, 0, {}

    def add(self, content: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if self.handle is not None and array.dtype != self.dtype:
            self.commit()
        if self.handle is None:
            self._open(array.dtype)
        payload = array.tobytes()
        self.handle.write(payload)
        self.entries[content] = (self.values, list(array.shape), hashlib.sha256(payload).hexdigest())
        self.values += array.size
        if self.values * self.dtype.itemsize >= self.store.shard_bytes:
            self.commit()

    def commit(self) -> None:
        """Make the open shard visible (nothing when none is open)."""
        if self.handle is None:
            return
        handle, self.handle = self.handle, None
        try:
            handle.seek(0)
            handle.write(_npy_header(self.values, self.dtype))
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            name = f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
            data = self.store.folder / f"{name}.npy"
            os.chmod(self.tmp, 0o666 & ~current_umask())
            os.replace(self.tmp, data)
            atomic_write_json(self.store.folder / f"{name}.index.json", {
                "format": FORMAT, "store_key": self.store.key, "encoder": self.store.encoder_name,
                "settings": self.store.settings, "fingerprint": self.store.fingerprint, "data": data.name,
                "dtype": self.dtype.str, "data_bytes": data.stat().st_size, "entries": self.entries})
        finally:
            handle.close()
            if self.tmp.exists():
                self.tmp.unlink()
        self.committed += 1

    def abort(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            self.tmp.unlink(missing_ok=True)


class LazyFeatures:
    """Row i -> a read-only np.memmap of its features (None for a failed row), mapped on each access.

    `shape_of(i)` answers from the index without touching the data; `subset(rows)` keeps those rows.
    `.failed` (row -> reason) and `.stats` (ExtractStats) are those of a FeatureList."""

    def __init__(self, items: list, failed: dict | None = None, stats: ExtractStats | None = None):
        self.items, self.failed, self.stats = items, dict(failed or {}), stats or ExtractStats()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self.items))[i])
        item = self.items[i]
        if item is None:
            return None
        path, offset, shape, dtype = item
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def shape_of(self, i: int) -> tuple:
        return self.items[i][2]

    def subset(self, rows) -> "LazyFeatures":
        rows = list(rows)
        position = {old: new for new, old in enumerate(rows)}
        failed = {position[r]: why for r, why in self.failed.items() if r in position}
        return LazyFeatures([self.items[r] for r in rows], failed, self.stats)

    def nbytes(self) -> int:
        """Bytes the rows' features take on disk (what materialising them would cost in memory)."""
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for _, _, s, d in filter(None, self.items))


def _where(item: str, text: bool) -> str:
    return f"transcript {item[:40]!r}" if text else str(item)


def audio_seconds(path) -> float:
    """Duration from the file header only (0.0 when the header is unreadable: that row fails later)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - any unreadable header: the decode step reports the row
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


def check_cap(max_gb) -> None:
    """ValueError unless max_gb (features.max_cache_gb) is None or a positive number of GB."""
    if max_gb is not None and (isinstance(max_gb, bool) or not isinstance(max_gb, (int, float)) or max_gb <= 0):
        raise ValueError(f"features.max_cache_gb must be a positive number of GB (or null), got {max_gb!r}")


def check_room(store: FeatureStore, new_bytes: int, max_gb: float | None) -> None:
    """ValueError (one line) when new_bytes exceed the free disk at the store or the store would pass max_gb."""
    check_cap(max_gb)
    place = store.folder
    while not place.exists():
        place = place.parent
    free = shutil.disk_usage(place).free
    gb = 1e9
    if new_bytes > free:
        raise ValueError(f"feature store {store.folder}: the features to compute need about {new_bytes / gb:.2f} "
                         f"GB but only {free / gb:.2f} GB are free there; free space, pass another cache "
                         "folder (--set cache_dir=...), keep fewer layers (features.ssl.layers) or use online SSL")
    if max_gb is not None and store.nbytes() + new_bytes > max_gb * gb:
        raise ValueError(f"feature store {store.folder}: {store.nbytes() / gb:.2f} GB stored + about "
                         f"{new_bytes / gb:.2f} GB to compute exceed features.max_cache_gb={max_gb}; raise the "
                         "cap, keep fewer layers (features.ssl.layers) or use another cache folder")


def extract_to_store(table, encoder, cache_dir, progress: bool = True, max_gb: float | None = None,
                     shard_bytes: int = DEFAULT_SHARD_BYTES, hashes: HashIndex | None = None) -> LazyFeatures:
    """Features of every row's audio (`path` column; a text encoder: `transcript`, keyed by the sha256 of
    its UTF-8 text) in the encoder's store under cache_dir, computing only the rows the store lacks; see the
    module docstring. hashes: the persistent sha256 index of audio files (default: the one in cache_dir).
    Failed rows are counted as in `extract`; ValueError when every row fails."""
    from tqdm.auto import tqdm

    from sercore.data.audio import MISSING, UNREADABLE, AudioError, read_audio
    from sercore.progress import bar_disabled

    started = time.perf_counter()
    check_cap(max_gb)  # a bad cap is refused even when nothing is left to compute
    encoder = make_encoder(encoder)
    text = encoder.modality == "text"
    column = "transcript" if text else "path"
    if column not in table.columns:
        raise KeyError(f"the table has no {column!r} column, which encoder {encoder.name!r} reads")
    store = FeatureStore(cache_dir, encoder, shard_bytes)
    hashes = hashes if hashes is not None else HashIndex(cache_dir)
    stats, failed, contents = ExtractStats(rows=len(table)), {}, []
    paths = [_transcript(v) for v in table[column]] if text else table[column].tolist()
    for row, path in enumerate(paths):
        if text:
            contents.append(sha256_text(path))
            continue
        try:
            contents.append(hashes.sha256(path))
        except OSError as error:
            contents.append(None)
            reason = MISSING if isinstance(error, FileNotFoundError) else UNREADABLE
            failed[row] = reason
            stats.fail(reason, str(path))
    hashes.save()
    todo = {}  # content -> first row with it: identical files are computed once
    for row, content in enumerate(contents):
        if content is not None and content not in store and content not in todo:
            todo[content] = row
    stats.hits = sum(1 for c in contents if c is not None and c in store)
    if todo:
        sizes = [paths[row] if text else audio_seconds(paths[row]) for row in todo.values()]
        check_room(store, sum(encoder.output_bytes(s) for s in sizes), max_gb)
        writer = store.writer()
        try:
            for content, row in tqdm(todo.items(), desc=f"{encoder.name} -> store", unit="utt",
                                     disable=bar_disabled(progress)):
                try:
                    if text:
                        array = encoder(paths[row])
                    else:
                        flags = set()
                        array = encoder(read_audio(paths[row], sample_rate=encoder.sample_rate, flags=flags))
                        stats.float_peaks += bool(flags)
                    if not np.isfinite(array).all():
                        raise FeatureError(f"{_where(paths[row], text)}: {encoder.name} gave NaN or Inf values",
                                           NON_FINITE_FEATURES)
                except (AudioError, FeatureError) as error:
                    failed[row] = error.reason
                    stats.fail(error.reason, _where(paths[row], text))
                    continue
                writer.add(content, array)
            writer.commit()
        finally:
            writer.abort()
        store.refresh()
    items = []
    for row, content in enumerate(contents):
        if row in failed or content not in store:
            if row not in failed:  # an identical file that failed above
                failed[row] = failed[todo[content]]
                stats.fail(failed[row], _where(paths[row], text))
            items.append(None)
        else:
            items.append(store.item(content))
    stats.misses = len(todo)
    stats.seconds = time.perf_counter() - started
    log.info("%s (store %s)", stats, store.folder)
    if len(failed) == len(table):
        raise ValueError(f"every row failed feature extraction with {encoder.name}: {stats}")
    return LazyFeatures(items, failed, stats)
