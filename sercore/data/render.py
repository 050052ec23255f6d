"""Turning one planned utterance into a wav file: synthesise its pieces, join them with pauses, resample,
add noise, write atomically. Runs in worker processes, each with its own espeak-ng synthesiser. A
localized utterance is fitted to a fixed length instead (_fit): the emotional phrase whole, neutral speech
cut to fill the room before and after it.

Everything random here comes from seeds derived from (corpus seed, utterance index): the Test2 noise, and
espeak's breath noise (voices f2, f3, f5; see sercore.data.espeak), reseeded before each piece with
(corpus seed, utterance index, piece number) since espeak would otherwise seed it from the clock.
espeak-ng also keeps hidden state from one synthesis to the next (pitch flutter phase and other static
variables that no API resets: the same text comes out slightly different the second time), so
`render_isolated` renders each file in a forked child of a worker that has initialised espeak but never
synthesised: every file starts from the same state and the bytes do not depend on which worker renders
which file, or in what order. Without os.fork (Windows) files are rendered in place and are not
byte-reproducible.
"""

from __future__ import annotations

import os
import pickle
import traceback
from dataclasses import dataclass, field

import numpy as np

from sercore.data.audio import SAMPLE_RATE, resample, wav_bytes
from sercore.data.espeak import Prosody, Synthesizer
from sercore.provenance import atomic_write_bytes

# espeak leaves near-silent samples around each sentence; we cut them and insert pauses we control, so
# segment boundaries (localized variant) are where the speech is.
SILENCE_THRESHOLD = 100 / 32768
FADE_SECONDS = 0.01


class RenderError(RuntimeError):
    """One file could not be rendered: a one-line message that starts with the file's path."""


@dataclass(frozen=True)
class Piece:
    """One stretch of speech: text spoken with one voice and one prosody, then a pause."""

    text: str
    voice: str
    prosody: Prosody
    pause_after: float


@dataclass(frozen=True)
class Job:
    index: int
    path: str
    pieces: tuple[Piece, ...]
    lead_silence: float
    seed: int
    segment_piece: int | None = None  # which piece carries the emotion (localized variant)
    target_seconds: float | None = None  # long-form: stop speaking and cut at exactly this length
    fit_seconds: float | None = None  # localized: a file of exactly this length (see _fit)
    segment_position: float | None = None  # localized: share of the room beside the phrase before it
    snr_db: float | None = None  # add white noise at this SNR (Test2)


@dataclass
class Rendered:
    index: int
    duration: float
    pieces_used: int
    segment: tuple[float, float] | None = field(default=None)
    heard: tuple[int, ...] | None = None  # pieces of which some part is in the file, when not a prefix


def _trim(wave: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > SILENCE_THRESHOLD)
    return wave[loud[0]:loud[-1] + 1] if loud.size else wave[:0]


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at `snr_db`, the signal power measured over the whole file (pauses included)."""
    power = float(np.mean(wave.astype(np.float64) ** 2))
    noise = rng.standard_normal(wave.shape[0]) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def _noise_seed(job: Job, piece_number: int) -> int:
    """espeak's breath-noise seed for one piece: fixed by the corpus seed and the piece's place, < 2**31 so
    it fits a C long everywhere."""
    state = np.random.SeedSequence([job.seed, job.index, piece_number]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def _fade(wave: np.ndarray, rate: int, start: bool) -> np.ndarray:
    """A 10 ms linear fade at the start (fade in) or the end (fade out): no click where a cut falls."""
    n = min(wave.size, round(FADE_SECONDS * rate))
    wave = wave.copy()
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    if start:
        wave[:n] *= ramp
    else:
        wave[wave.size - n:] *= ramp[::-1]
    return wave


def _fit(job: Job, speech: list[np.ndarray], rate: int) -> tuple[np.ndarray, tuple[float, float], tuple[int, ...]]:
    """Localized variant: pieces (neutral, phrase, neutral) in a file of exactly job.fit_seconds.

    lead silence | end of neutral sentence 0 | its pause | phrase, whole | its pause | start of neutral
    sentence 1. The room left beside the phrase is split at job.segment_position (0: the phrase comes
    first, 1: last); a neutral sentence shorter than its part is padded with silence on the outer side. A
    phrase too long for its silences shrinks them (all by one factor) and leaves no neutral speech."""
    total = round(job.fit_seconds * rate)
    lead = round(job.lead_silence * rate)
    phrase = speech[1]
    pause_before, pause_after = (round(job.pieces[i].pause_after * rate) for i in (0, 1))
    if phrase.size > total:
        raise RenderError(f"{job.path}: emotional phrase {job.pieces[1].text!r} lasts {phrase.size / rate:.2f} s, "
                          f"too long for a {job.fit_seconds} s localized file")
    silence = lead + pause_before + pause_after
    if phrase.size + silence > total:  # a long, slow phrase: its silences shrink alike, no neutral speech
        scale = (total - phrase.size) / silence
        lead, pause_before = int(lead * scale), int(pause_before * scale)
        pause_after = total - phrase.size - lead - pause_before
    room = total - lead - pause_before - phrase.size - pause_after
    n_before = round(job.segment_position * room)
    n_after = room - n_before
    before, after = speech[0][speech[0].size - n_before:] if n_before else speech[0][:0], speech[2][:n_after]
    if 0 < before.size < speech[0].size:
        before = _fade(before, rate, start=True)
    if 0 < after.size < speech[2].size:
        after = _fade(after, rate, start=False)
    start = lead + n_before + pause_before
    wave = np.concatenate([np.zeros(lead + n_before - before.size, np.float32), before,
                           np.zeros(pause_before, np.float32), phrase, np.zeros(pause_after, np.float32), after,
                           np.zeros(n_after - after.size, np.float32)])
    heard = tuple(i for i, part in ((0, before), (1, phrase), (2, after)) if part.size)
    return wave, (start / rate, (start + phrase.size) / rate), heard


def render_job(job: Job) -> Rendered:
    synth = Synthesizer()
    rate = synth.sample_rate
    if job.fit_seconds is not None:
        speech = []
        for number, piece in enumerate(job.pieces):
            samples = synth.synthesize(piece.text, piece.voice, piece.prosody, noise_seed=_noise_seed(job, number))
            speech.append(_trim(samples.astype(np.float32) / 32768))
            if speech[-1].size == 0:
                raise RenderError(f"{job.path}: espeak-ng produced silence for {piece.text!r} with voice "
                                  f"{piece.voice}")
        wave, segment, heard = _fit(job, speech, rate)
        wave = resample(wave, rate, SAMPLE_RATE)
        n = round(job.fit_seconds * SAMPLE_RATE)  # resampling may be a sample off
        wave = np.pad(wave[:n], (0, max(0, n - wave.size)))
        if job.snr_db is not None:
            wave = add_noise(wave, job.snr_db, np.random.default_rng([job.seed, job.index]))
        atomic_write_bytes(job.path, wav_bytes(wave))
        return Rendered(index=job.index, duration=wave.size / SAMPLE_RATE, pieces_used=len(job.pieces),
                        segment=segment, heard=heard)
    parts = [np.zeros(round(job.lead_silence * rate), np.float32)]
    length = parts[0].size
    segment = None
    used = 0
    for number, piece in enumerate(job.pieces):
        samples = synth.synthesize(piece.text, piece.voice, piece.prosody, noise_seed=_noise_seed(job, number))
        speech = _trim(samples.astype(np.float32) / 32768)
        if speech.size == 0:
            raise RenderError(f"{job.path}: espeak-ng produced silence for {piece.text!r} with voice {piece.voice}")
        if number == job.segment_piece:
            segment = (length / rate, (length + speech.size) / rate)
        pause = np.zeros(round(piece.pause_after * rate), np.float32)
        parts += [speech, pause]
        length += speech.size + pause.size
        used += 1
        if job.target_seconds is not None and length >= job.target_seconds * rate:
            break
    wave = resample(np.concatenate(parts), rate, SAMPLE_RATE)
    if job.target_seconds is not None:
        n = round(job.target_seconds * SAMPLE_RATE)
        if wave.size < n:
            raise RenderError(f"{job.path}: planned text too short for {job.target_seconds} s")
        wave = wave[:n].copy()
        fade = round(FADE_SECONDS * SAMPLE_RATE)
        wave[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)  # no click where the cut falls
    if job.snr_db is not None:
        wave = add_noise(wave, job.snr_db, np.random.default_rng([job.seed, job.index]))
    atomic_write_bytes(job.path, wav_bytes(wave))
    return Rendered(index=job.index, duration=wave.size / SAMPLE_RATE, pieces_used=used, segment=segment)


def prepare_worker() -> None:
    """Initialise espeak and load the English voice data once, before any fork. Selecting a voice does not
    touch the state that makes syntheses differ (checked: same bytes with and without it), but it saves
    every child from reloading the dictionary."""
    Synthesizer().select_voice("en")


def render_isolated(job: Job) -> Rendered:
    """render_job in a forked child, so espeak's hidden state is the same for every file (see above)."""
    if not hasattr(os, "fork"):
        return render_job(job)
    Synthesizer()  # initialise here once: children inherit the library in its never-used state
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: render, send the result (or the error) back, exit without cleanup handlers
        code = 0
        try:
            os.close(read_end)
            try:
                payload = pickle.dumps(render_job(job))
            except RenderError as error:
                payload, code = pickle.dumps(error), 1
            except BaseException as error:  # unexpected: the traceback goes to stderr, the message stays one line
                traceback.print_exc()
                message = f"{job.path}: rendering failed: {type(error).__name__}: {error}".replace("\n", " ")
                payload, code = pickle.dumps(RenderError(message)), 1
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise RenderError(f"{job.path}: rendering process died (status {status})")
    result = pickle.loads(payload)
    if isinstance(result, BaseException):
        raise result
    return result
