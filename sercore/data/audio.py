"""Reading audio the same way everywhere: float32 mono at one sample rate, with repairs that are documented.

Repairs on read: a file at another sample rate is resampled with a polyphase filter
(scipy.signal.resample_poly, exact rational ratio); a file with several channels is averaged to mono.
What cannot be repaired (missing, unreadable, or empty audio, or samples that are NaN or infinite) raises
AudioError naming the file. Float files (float WAV/FLAC) may hold samples beyond [-1, 1]: `read_audio`
keeps them unscaled (scaling would change the features of an otherwise valid file) and, when given a
`flags` set, adds FLOAT_PEAK to it so callers can count such files.
Loaders check headers only (`inspect_audio`), so a corpus of 100k files loads in seconds.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that cannot be used: missing, unreadable, empty or non-finite. The message names the file;
    `reason` is the short cause loaders count in their report."""

    def __init__(self, path, reason: str, detail: str = ""):
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.path, self.reason = str(path), reason


MISSING, UNREADABLE, EMPTY = "audio file missing", "unreadable audio", "empty audio (0 samples)"
NON_FINITE = "non-finite samples (NaN or Inf)"
FLOAT_PEAK = "float samples above 1 (kept unscaled)"


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def inspect_audio(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file without decoding it; AudioError when it is missing, unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, MISSING)
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises its own error types, all meaning "not audio we can read"
        raise AudioError(path, UNREADABLE, str(error)) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, EMPTY)
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling by the exact ratio to_rate / from_rate (e.g. 22050 -> 16000 is 320/441)."""
    if from_rate == to_rate:
        return wave
    common = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(wave, to_rate // common, from_rate // common).astype(np.float32)


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, flags: set | None = None) -> np.ndarray:
    """The file as float32 mono samples at `sample_rate` (in [-1, 1] for integer PCM; float files unscaled).

    Other sample rates are resampled and several channels are averaged; AudioError (naming the file) when
    the file is missing, unreadable (including a body that fails to decode), holds no samples, or holds
    NaN/Inf samples. `flags`, when given, receives FLOAT_PEAK if a decoded sample's magnitude exceeds 1.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, MISSING)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioError(path, UNREADABLE, str(error)) from error
    if data.shape[0] == 0:
        raise AudioError(path, EMPTY)
    # Checked on the decoded samples, before resampling spreads a NaN over its neighbours.
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(np.argmin(finite.all(axis=1)))
        raise AudioError(path, NON_FINITE, f"first at sample {bad}; re-export the file or drop it")
    if flags is not None and float(np.abs(data).max()) > 1.0:
        flags.add(FLOAT_PEAK)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(resample(wave, rate, sample_rate), dtype=np.float32)


def wav_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of a float wave (clipped to [-1, 1]); the header has no timestamp, so equal
    samples give equal bytes."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
