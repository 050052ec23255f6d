"""Features for every row of an utterance table, served from the disk cache when already computed.

One bad file never stops a run: a row whose audio cannot be decoded (sercore.data.AudioError: missing,
unreadable body, empty, NaN/Inf samples), whose encoder refuses it (FeatureError, e.g. audio too short for
an SSL model) or whose features come out NaN/Inf is left as None in the returned list, recorded in its
`.failed` (row position -> reason) and counted by reason in its `.stats`; nothing non-finite is cached or
returned. Only when every row fails does `extract` raise. Float audio with samples beyond [-1, 1] is kept
unscaled and counted (`float_peaks`, on the rows decoded, i.e. the misses).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sercore.features.cache import FeatureCache, cache_key, sha256_file, sha256_text
from sercore.features.encoders import make_encoder
from sercore.progress import bar_disabled

log = logging.getLogger("sercore.features")

NON_FINITE_FEATURES = "non-finite features (NaN or Inf)"
EXAMPLES_PER_REASON = 3


class FeatureError(ValueError):
    """One row's features came out unusable; the message names the file (or transcript), `reason` is the count key."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class ExtractStats:
    rows: int = 0
    hits: int = 0  # read from the cache
    misses: int = 0  # computed (absent, corrupt, or no cache), failed rows included
    corrupt: int = 0  # of the misses: entries that were unusable (damaged, other key, old format) and replaced
    unsaved: int = 0  # of the misses: computed but not written, the cache folder being unwritable
    float_peaks: int = 0  # decoded float files with samples beyond [-1, 1], kept unscaled
    failed: Counter = field(default_factory=Counter)  # reason -> rows left without features
    examples: dict = field(default_factory=dict)  # reason -> a few of the failed files (or transcripts)
    seconds: float = 0.0

    def fail(self, reason: str, item: str) -> None:
        self.failed[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(item)

    def __str__(self) -> str:
        text = (f"{self.rows} rows: {self.hits} from cache, {self.misses} computed "
                f"({self.corrupt} corrupt entries replaced) in {self.seconds:.2f} s")
        if self.unsaved:
            text += f"; {self.unsaved} not saved (cache folder not writable)"
        if self.float_peaks:
            text += f"; {self.float_peaks} float files with samples above 1 (kept unscaled)"
        for reason, count in sorted(self.failed.items(), key=lambda item: (-item[1], item[0])):
            text += f"; failed {count}: {reason} (e.g. {', '.join(self.examples[reason])})"
        return text


class FeatureList(list):
    """A list aligned with the table rows: an array per row, None for a row that failed. `.failed` maps the
    row position to its reason; `.stats` (ExtractStats) describes the run that made it."""

    stats: ExtractStats
    failed: dict


def _transcript(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def extract(table: pd.DataFrame, encoder, cache_dir, progress: bool = True, **settings) -> FeatureList:
    """Encode each row of `table` (audio from its `path`, or its `transcript` for text encoders).

    encoder: a name ("logmel", "ssl:<dir>", "text", "text:<dir>") built with **settings, or an encoder
    object. cache_dir: folder of the disk cache (sercore.features.cache.default_cache_dir() is the usual
    one), or None to compute everything without caching. The cache key hashes the audio file's bytes (or
    the transcript), so a hit never decodes the audio.
    Returns a FeatureList (failed rows are None, see the module docstring); its `.stats` counts hits,
    misses and failures, also logged on the "sercore.features" logger. ValueError when every row fails.
    """
    from tqdm.auto import tqdm

    encoder = make_encoder(encoder, **settings)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    column = "transcript" if encoder.modality == "text" else "path"
    if column not in table.columns:
        raise KeyError(f"the table has no {column!r} column, which encoder {encoder.name!r} reads")
    if encoder.modality == "text":
        row_errors = (FeatureError,)
    else:
        from sercore.data.audio import AudioError  # imported late: sercore.data is optional for text-only use

        row_errors = (AudioError, FeatureError)
    stats = ExtractStats(rows=len(table))
    features, errors = FeatureList(), {}
    features.failed = {}
    start = time.perf_counter()
    for position, value in enumerate(tqdm(table[column].tolist(), desc=f"features {encoder.name}",
                                          disable=bar_disabled(progress), unit="utt")):
        text = _transcript(value) if encoder.modality == "text" else None
        item = repr(text[:40]) if text is not None else str(value)
        try:
            array, hit = _one(encoder, cache, text, value, stats)
        except row_errors as error:
            reason = error.reason
            features.failed[position] = reason
            errors.setdefault(reason, str(error) if item in str(error) else f"{item}: {error}")
            stats.fail(reason, item)
            array, hit = None, False
        stats.hits += hit
        stats.misses += not hit
        features.append(array)
    stats.seconds = time.perf_counter() - start
    features.stats = stats
    log.info("features %s: %s", encoder.name, stats)
    if stats.rows and len(features.failed) == stats.rows:
        message = next(iter(errors.values()))
        raise ValueError(f"no row could be encoded with {encoder.name}: {stats.rows} failed "
                         f"({', '.join(f'{r}: {n}' for r, n in stats.failed.items())}); e.g. {message}")
    return features


def _one(encoder, cache, text, path, stats) -> tuple[np.ndarray, bool]:
    """(features of one row, whether they came from the cache); ValueError naming the file when they fail."""
    from sercore.data.audio import MISSING, UNREADABLE, AudioError, read_audio

    if text is not None:
        content = sha256_text(text)
    else:
        try:
            content = sha256_file(path)
        except OSError as error:
            raise AudioError(path, MISSING if isinstance(error, FileNotFoundError) else UNREADABLE,
                             error.strerror or str(error)) from error
    key = cache_key(encoder.name, encoder.settings, encoder.fingerprint, content)
    array = cache.load(encoder.name, key) if cache else None
    if array is not None:
        return array, True
    if cache and cache.path(encoder.name, key).exists():
        stats.corrupt += 1
    if text is not None:
        array = encoder(text)
    else:
        flags = set()
        array = encoder(read_audio(path, sample_rate=encoder.sample_rate, flags=flags))
        stats.float_peaks += bool(flags)
    if not np.isfinite(array).all():
        where = path if text is None else f"transcript {text[:40]!r}"
        raise FeatureError(f"{where}: {encoder.name} gave NaN or Inf values; the row is left out",
                           NON_FINITE_FEATURES)
    if cache and cache.save(encoder.name, key, array) is None:
        stats.unsaved += 1
    return array, False
