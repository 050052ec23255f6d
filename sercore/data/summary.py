"""A listening check in numbers: per class, how high is the pitch and how slow is the speech?

`prosody_summary(table)` tracks F0 with a plain normalised-autocorrelation pitch tracker and measures a
speaking-rate proxy (seconds per transcript word), so one can see whether a corpus's classes differ the
way their prosody profiles say (sercore.data.prosody): anger and happiness above sadness in pitch,
sadness slower than happiness, and so on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from sercore.data.audio import SAMPLE_RATE, AudioError, read_audio


def track_f0(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, fmin: float = 70.0, fmax: float = 450.0,
             frame_s: float = 0.04, hop_s: float = 0.01, voicing: float = 0.5) -> np.ndarray:
    """F0 in Hz of each voiced frame (unvoiced frames left out).

    A frame is voiced when it is loud enough (RMS above 10 % of the file's 95th-percentile frame RMS) and
    its normalised autocorrelation peaks above `voicing` at a lag between 1/fmax and 1/fmin.
    """
    size, hop = int(frame_s * sample_rate), int(hop_s * sample_rate)
    if wave.size < size:
        return np.empty(0)
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), size)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    loud = rms > 0.1 * np.percentile(rms, 95)
    frames = frames[loud] * np.hanning(size)
    if frames.shape[0] == 0:
        return np.empty(0)
    spectrum = np.fft.rfft(frames, n=2 * size, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :size]
    autocorr /= np.maximum(autocorr[:, :1], 1e-12)
    low, high = int(sample_rate / fmax), int(sample_rate / fmin)
    lags = low + np.argmax(autocorr[:, low:high], axis=1)
    strength = autocorr[np.arange(len(lags)), lags]
    return sample_rate / lags[strength > voicing]


def prosody_summary(table: pd.DataFrame, max_per_class: int | None = None) -> pd.DataFrame:
    """Per class: utterances measured, median F0 in Hz, median F0 relative to the speaker in semitones,
    median seconds per word (duration / transcript words) and median duration in seconds.

    Medians are over utterances, each utterance summarised by the median F0 of its voiced frames. Raw Hz
    mix female and male voices, so a class with more male speakers looks lower; the semitone column
    compares each utterance with its own speaker's median and is the fairer view.
    `max_per_class` measures only the first utterances of each class (by utt_id) to save time.
    An utterance whose audio cannot be read (sercore.data.audio.AudioError: unreadable, NaN/Inf samples) is
    left out of the medians; the summary's `attrs["skipped"]` lists them ("path: reason") and one warning
    says how many.
    """
    chosen = table.sort_values("utt_id")
    if max_per_class is not None:
        chosen = chosen.groupby("label", sort=True).head(max_per_class)
    measures, skipped = [], []
    for row in chosen.itertuples(index=False):
        try:
            wave = read_audio(row.path)
        except AudioError as error:
            skipped.append(f"{error.path}: {error.reason}")
            continue
        f0 = track_f0(wave)
        words = len(str(row.transcript or "").split())
        duration = wave.size / SAMPLE_RATE
        measures.append({"label": row.label, "speaker": row.speaker,
                         "f0": float(np.median(f0)) if f0.size else np.nan,
                         "seconds_per_word": duration / words if words else np.nan, "duration": duration})
    measures = pd.DataFrame(measures)
    speaker_f0 = measures.groupby("speaker")["f0"].transform("median")
    measures["f0_vs_speaker_st"] = 12 * np.log2(measures["f0"] / speaker_f0)
    summary = measures.groupby("label", sort=True).agg(
        utterances=("f0", "size"), median_f0_hz=("f0", "median"),
        f0_vs_speaker_st=("f0_vs_speaker_st", "median"), seconds_per_word=("seconds_per_word", "median"),
        median_duration_s=("duration", "median"))
    summary.attrs["skipped"] = skipped
    if skipped:
        warnings.warn(f"prosody_summary: {len(skipped)} utterance(s) left out, audio unreadable "
                      f"(e.g. {skipped[0]})", stacklevel=2)
    return summary
