"""Features for every row of an utterance table, served from the disk cache when already computed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sercore.features.cache import FeatureCache, cache_key, sha256_file, sha256_text
from sercore.features.encoders import make_encoder
from sercore.progress import bar_disabled

log = logging.getLogger("sercore.features")


@dataclass
class ExtractStats:
    rows: int = 0
    hits: int = 0  # read from the cache
    misses: int = 0  # computed (absent, corrupt, or no cache)
    corrupt: int = 0  # of the misses: entries that failed their checksum and were overwritten
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.rows} rows: {self.hits} from cache, {self.misses} computed "
                f"({self.corrupt} corrupt entries replaced) in {self.seconds:.2f} s")


class FeatureList(list):
    """A list of arrays aligned with the table rows, with `.stats` (ExtractStats) of the run that made it."""

    stats: ExtractStats


def _read_audio(path: str, sample_rate: int) -> np.ndarray:
    from sercore.data import read_audio  # imported late: sercore.data is optional for text-only use

    return read_audio(path, sample_rate=sample_rate)


def _transcript(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def extract(table: pd.DataFrame, encoder, cache_dir, progress: bool = True, **settings) -> FeatureList:
    """Encode each row of `table` (audio from its `path`, or its `transcript` for text encoders).

    encoder: a name ("logmel", "ssl:<dir>", "text", "text:<dir>") built with **settings, or an encoder
    object. cache_dir: folder of the disk cache, or None to compute everything without caching. The cache
    key hashes the audio file's bytes (or the transcript), so a hit never decodes the audio.
    Returns a FeatureList; its `.stats` counts hits and misses, also logged on the "sercore.features" logger.
    """
    from tqdm.auto import tqdm

    encoder = make_encoder(encoder, **settings)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    column = "transcript" if encoder.modality == "text" else "path"
    if column not in table.columns:
        raise KeyError(f"the table has no {column!r} column, which encoder {encoder.name!r} reads")
    stats = ExtractStats(rows=len(table))
    features = FeatureList()
    start = time.perf_counter()
    for value in tqdm(table[column].tolist(), desc=f"features {encoder.name}", disable=bar_disabled(progress),
                      unit="utt"):
        text = _transcript(value) if encoder.modality == "text" else None
        content = sha256_text(text) if text is not None else sha256_file(value)
        key = cache_key(encoder.name, encoder.settings, encoder.fingerprint, content)
        array = cache.load(encoder.name, key) if cache else None
        if array is not None:
            stats.hits += 1
        else:
            if cache and cache.path(encoder.name, key).exists():
                stats.corrupt += 1
            array = encoder(text) if text is not None else encoder(_read_audio(value, encoder.sample_rate))
            if cache:
                cache.save(encoder.name, key, array)
            stats.misses += 1
        features.append(array)
    stats.seconds = time.perf_counter() - start
    features.stats = stats
    log.info("features %s: %s", encoder.name, stats)
    return features
