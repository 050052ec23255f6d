"""Emotion classes as prosody profiles: how the generated corpus makes the eight MSP-Podcast classes audible.

The acted-emotion literature agrees on a few broad vocal patterns (Murray & Arnott 1993, "Toward the
simulation of emotion in synthetic speech"; Scherer 2003, "Vocal communication of emotion"; Juslin &
Laukka 2003, a meta-analysis of 104 studies). High-arousal emotions raise mean pitch, widen the pitch
range, speed up and get louder; low-arousal ones do the opposite. Valence is far weaker in prosody, so
classes that share arousal (anger/happiness, sadness/contempt/disgust) overlap, as they do for real
listeners and real classifiers. The table, in espeak-ng units (pitch and range 0..100, rate in words per
minute, volume 100 = normal, wordgap in 10 ms units):

    class            pitch range rate volume gap   why
    N neutral          50    50   170   100   1    the voice's own settings: the reference point
    H happiness        66    78   190   112   0    high pitch, much wider range, faster, louder
    A anger (hot)      64    74   195   140   0    much higher pitch, wide range, fast, the loudest class
    S sadness          38    22   130    75   4    lower pitch, narrow (flat) range, slow, soft, pauses
    C contempt         43    40   150    95   3    low-ish pitch, slightly narrow range, slowish
    U surprise         72    86   180   112   1    the highest pitch and widest range
    D disgust          40    56   138    92   3    low pitch, slow ("very much slower" in M&A), normal range
    F fear             70    58   210   100   1    very high pitch, fastest, range not as wide as surprise

Each utterance draws its parameters around its class profile with Gaussian jitter (standard deviations in
JITTER), and each speaker shifts pitch and rate (sercore.data.speakers), so neighbouring classes overlap:
a classifier cannot reach 100 %. Arousal/valence/dominance on MSP-Podcast's 1..7 scale follow each class
prototype (AVD_PROTOTYPES, the usual circumplex positions) plus noise of AVD_NOISE, clipped to [1, 7].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sercore.data.espeak import Prosody

CLASSES = ("N", "H", "A", "S", "C", "U", "D", "F")
CLASS_NAMES = {"N": "neutral", "H": "happiness", "A": "anger", "S": "sadness", "C": "contempt",
               "U": "surprise", "D": "disgust", "F": "fear"}


@dataclass(frozen=True)
class ClassProfile:
    pitch: float
    range: float
    rate: float
    volume: float
    wordgap: float


PROFILES = {
    "N": ClassProfile(pitch=50, range=50, rate=170, volume=100, wordgap=1),
    "H": ClassProfile(pitch=66, range=78, rate=190, volume=112, wordgap=0),
    "A": ClassProfile(pitch=64, range=74, rate=195, volume=140, wordgap=0),
    "S": ClassProfile(pitch=38, range=22, rate=130, volume=75, wordgap=4),
    "C": ClassProfile(pitch=43, range=40, rate=150, volume=95, wordgap=3),
    "U": ClassProfile(pitch=72, range=86, rate=180, volume=112, wordgap=1),
    "D": ClassProfile(pitch=40, range=56, rate=138, volume=92, wordgap=3),
    "F": ClassProfile(pitch=70, range=58, rate=210, volume=100, wordgap=1),
}

# Per-utterance standard deviations: about half the gap between neighbouring classes, so they overlap.
JITTER = ClassProfile(pitch=6, range=10, rate=14, volume=12, wordgap=1)

# (arousal, valence, dominance) on the 1..7 scale of MSP-Podcast.
AVD_PROTOTYPES = {
    "N": (3.8, 4.0, 4.0),
    "H": (5.0, 5.8, 4.7),
    "A": (5.8, 2.2, 5.5),
    "S": (2.8, 2.4, 3.0),
    "C": (4.0, 2.8, 4.9),
    "U": (5.4, 4.6, 4.2),
    "D": (4.3, 2.4, 4.5),
    "F": (5.2, 2.4, 3.0),
}
AVD_NOISE = 0.6


def draw_prosody(label: str, rng: np.random.Generator, pitch_offset: float = 0.0,
                 rate_factor: float = 1.0) -> Prosody:
    """espeak parameters for one utterance of class `label` by a speaker with the given offsets."""
    base, sd = PROFILES[label], JITTER
    noise = rng.standard_normal(5)
    return Prosody(
        pitch=round(base.pitch + pitch_offset + sd.pitch * noise[0]),
        range=round(base.range + sd.range * noise[1]),
        rate=round((base.rate + sd.rate * noise[2]) * rate_factor),
        volume=round(base.volume + sd.volume * noise[3]),
        wordgap=max(0, round(base.wordgap + sd.wordgap * noise[4])),
    ).clipped()


def draw_avd(label: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """(arousal, valence, dominance) on 1..7 around the class prototype, rounded like MSP-Podcast's."""
    values = np.asarray(AVD_PROTOTYPES[label]) + AVD_NOISE * rng.standard_normal(3)
    return tuple(float(round(v, 1)) for v in np.clip(values, 1.0, 7.0))
