"""A listening check in numbers: per class, how high is the pitch and how slow is the speech?

`prosody_summary(table)` tracks F0 with a plain normalised-autocorrelation pitch tracker and measures a
speaking-rate proxy (seconds per transcript word), so one can see whether a corpus's classes differ the
way their prosody profiles say (sercore.data.prosody): anger and happiness above sadness in pitch,
sadness slower than happiness, and so on. `listening_samples(table, corpus)` is the check by ear: audio
players for a few utterances per class, embedded in the page (generated corpus only).
"""

from __future__ import annotations

import base64
import html
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Listening:
    """Audio players for a few utterances per class (`listening_samples`); shows itself as HTML in a notebook.

    rows: the chosen utterances (label, utt_id, speaker, split, transcript, bytes); embedded_bytes: the audio
    embedded in the page (before base64, which adds a third); note: why nothing was embedded, if so."""

    rows: pd.DataFrame
    embedded_bytes: int
    note: str = ""
    _players: list = field(default_factory=list, repr=False)

    def _repr_html_(self) -> str:
        if self.note:
            return f"<p>{html.escape(self.note)}</p>"
        cells = "".join(f"<tr><td><b>{html.escape(str(r.label))}</b></td><td>{player}</td>"
                        f"<td><code>{html.escape(str(r.utt_id))}</code> · {html.escape(str(r.speaker))}</td>"
                        f"<td>{html.escape(str(r.transcript or ''))}</td></tr>"
                        for r, player in zip(self.rows.itertuples(index=False), self._players))
        return f"<table><tr><th>class</th><th>listen</th><th>utterance · speaker</th><th>transcript</th></tr>{cells}</table>"


AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}


def listening_samples(table: pd.DataFrame, corpus, per_class: int = 2, seed: int = 0,
                      split: str = "Train") -> Listening:
    """`per_class` random `split` utterances of each class (seeded), as audio players with the file's bytes
    embedded (base64 data URIs), so the page plays them offline.

    Only for the generated demonstration corpus (sercore.data.is_generated(corpus)): a licensed corpus's audio
    is not copied into a page that may be published; it gets a note instead. To keep the page small the
    draw is among the utterances no larger than their class's median file size; an unreadable file is left
    out of the draw."""
    from sercore.data.ensure import is_generated

    if not is_generated(corpus):
        return Listening(pd.DataFrame(), 0, note="Audio players are shown for the generated demonstration corpus "
                                                 "only: a licensed corpus's audio is not embedded in the page.")
    pool = table[table["split"] == split].copy()
    pool["bytes"] = [Path(p).stat().st_size if Path(p).is_file() else -1 for p in pool["path"]]
    pool = pool[(pool["bytes"] > 0) & (pool["bytes"] <= pool.groupby("label")["bytes"].transform("median"))]
    pool = pool.sort_values("utt_id")
    chosen = pd.concat([group.sample(min(per_class, len(group)), random_state=seed)
                        for _, group in pool.groupby("label", sort=True)] or [pool])
    players, total = [], 0
    for row in chosen.itertuples(index=False):
        data = Path(row.path).read_bytes()
        kind = AUDIO_TYPES.get(Path(row.path).suffix.lower(), "audio/wav")
        players.append(f'<audio controls preload="none" src="data:{kind};base64,'
                       f'{base64.b64encode(data).decode("ascii")}"></audio>')
        total += len(data)
    rows = chosen[["label", "utt_id", "speaker", "split", "transcript", "bytes"]].reset_index(drop=True)
    return Listening(rows, total, _players=players)
