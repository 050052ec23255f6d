"""Frozen features for the models: log-Mel, SSL hidden states, text token states; a disk cache; VTLP.

    extract(table, "logmel", cache_dir)            -> [T, 80] float32 per row (100 frames/s)
    extract(table, "ssl:/models/wavlm-large", ...)  -> [L, T, D] float16 per row (all hidden states, 50 frames/s)
    extract(table, "text", cache_dir)              -> [N, 384] float32 per row (MiniLM token states)

Models load only from local folders; nothing is downloaded. The usual cache_dir is default_cache_dir()
($SERCORE_CACHE, else $XDG_CACHE_HOME/sercore, else ~/.cache/sercore); a row whose audio or features are
unusable is None in the result and listed in its `.failed` (see sercore.features.extraction).

At corpus scale (training on SSL features) sercore.features.store.extract_to_store keeps the arrays in one
memory-mapped store per encoder setting and returns a lazy sequence instead of arrays in memory; it checks
the size first (free disk, features.max_cache_gb). cache.HashIndex keeps the audio files' sha256 across runs.
"""

from sercore.features.cache import CacheWarning, FeatureCache, cache_dir_or_default, cache_key, default_cache_dir
from sercore.features.encoders import LogMelEncoder, make_encoder
from sercore.features.extraction import ExtractStats, FeatureError, FeatureList, extract
from sercore.features.logmel import frame_count, hz_to_mel, log_mel, mel_filterbank, mel_to_hz, power_spectrogram
from sercore.features.vtlp import vtlp, vtlp_spectrogram, vtlp_wave, warp_frequencies

__all__ = [
    "CacheWarning", "ExtractStats", "FeatureCache", "FeatureError", "FeatureList", "LogMelEncoder",
    "cache_dir_or_default", "cache_key", "default_cache_dir", "extract",
    "frame_count", "hz_to_mel", "log_mel", "make_encoder", "mel_filterbank", "mel_to_hz", "power_spectrogram",
    "vtlp", "vtlp_spectrogram", "vtlp_wave", "warp_frequencies",
]


def __getattr__(name):
    # The transformers-backed encoders import torch/transformers only when asked for.
    if name == "SSLEncoder":
        from sercore.features.ssl import SSLEncoder

        return SSLEncoder
    if name == "TextEncoder":
        from sercore.features.text import TextEncoder

        return TextEncoder
    raise AttributeError(f"module 'sercore.features' has no attribute {name!r}")
