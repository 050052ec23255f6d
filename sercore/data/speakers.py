"""The voices of the generated corpus: espeak language + voice variant, gender, and a personal pitch
and tempo, so that speakers differ beyond their voice quality."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: str  # espeak language + voice variant
    gender: str  # "Female" / "Male"
    pitch_offset: float  # added to espeak's 0..100 pitch: speakers differ in base pitch
    rate_factor: float  # multiplies the words-per-minute rate: speakers differ in tempo


# MSP-Podcast layout: speakers 1-8 speak Train/Development/Test1, speakers 9-12 only Test2
# (other voice variants than 1-8, so Test2 voices are unseen in training).
SEEN_SPEAKERS = (
    Speaker("1", "en-us+f1", "Female", 0, 1.00), Speaker("2", "en-us+f2", "Female", -4, 0.95),
    Speaker("3", "en+f3", "Female", 3, 1.05), Speaker("4", "en+f4", "Female", -2, 1.00),
    Speaker("5", "en-us+m1", "Male", 0, 1.00), Speaker("6", "en-us+m2", "Male", 4, 0.95),
    Speaker("7", "en+m3", "Male", -3, 1.05), Speaker("8", "en+m4", "Male", 2, 1.00),
)
UNSEEN_SPEAKERS = (
    Speaker("9", "en+f5", "Female", 2, 0.97), Speaker("10", "en-us+Annie", "Female", -3, 1.04),
    Speaker("11", "en+m6", "Male", -2, 1.03), Speaker("12", "en-us+m7", "Male", 3, 0.96),
)

# IEMOCAP layout: five sessions, each with one female (F) and one male (M) actor, like the real corpus.
IEMOCAP_SPEAKERS = (
    Speaker("Ses01_F", "en-us+f1", "Female", 0, 1.00), Speaker("Ses01_M", "en-us+m1", "Male", 0, 1.00),
    Speaker("Ses02_F", "en+f2", "Female", -3, 0.96), Speaker("Ses02_M", "en+m2", "Male", 3, 1.03),
    Speaker("Ses03_F", "en-us+f3", "Female", 2, 1.04), Speaker("Ses03_M", "en-us+m3", "Male", -2, 0.97),
    Speaker("Ses04_F", "en+f4", "Female", -2, 1.00), Speaker("Ses04_M", "en+m4", "Male", 2, 1.00),
    Speaker("Ses05_F", "en-us+f5", "Female", 3, 0.98), Speaker("Ses05_M", "en-us+m6", "Male", -3, 1.02),
)
