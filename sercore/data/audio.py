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
    """Header facts. frames: the frames the file really holds (what read_audio returns). header_frames:
    the frames a WAV header claims when that is more than the file holds (a truncated file), else None."""

    sample_rate: int
    channels: int
    frames: int
    header_frames: int | None = None

    @property
    def truncated(self) -> bool:
        return self.header_frames is not None

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


# bytes per sample of the WAV encodings whose data chunk size converts exactly to frames
WAV_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
                    "ULAW": 1, "ALAW": 1}


def _wav_claimed_frames(path: Path, info) -> int | None:
    """Frames the data chunk of a PCM/float WAV header claims, or None when that cannot be told (other
    formats, a malformed chunk list, or the 0 / 0xFFFFFFFF size streaming writers leave open). The chunk
    list is walked rather than assuming the usual 44-byte header, since fact, PEAK or LIST chunks may
    come before the data."""
    sample_bytes = WAV_SAMPLE_BYTES.get(info.subtype)
    if info.format not in ("WAV", "WAVEX") or sample_bytes is None or info.channels <= 0:
        return None
    with open(path, "rb") as handle:
        head = handle.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        for _ in range(64):  # real files have a handful of chunks before the data
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return None if size in (0, 0xFFFFFFFF) else size // (sample_bytes * info.channels)
            handle.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to an even length
    return None


def inspect_audio(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file without decoding it; AudioError when it is missing, unreadable or empty.

    libsndfile already counts only the frames a truncated file holds; for PCM/float WAV the header's own
    claim is read too, so a truncated file is told apart (AudioInfo.header_frames) instead of passing as a
    shorter recording.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, MISSING)
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises its own error types, all meaning "not audio we can read"
        raise AudioError(path, UNREADABLE, str(error)) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, EMPTY)
    claimed = _wav_claimed_frames(path, info)
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames),
                     header_frames=claimed if claimed is not None and claimed > info.frames else None)


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
