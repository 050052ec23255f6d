"""Writing a generated corpus in the MSP-Podcast layout: Audios/<stem>.wav, Labels/labels_consensus.csv,
Transcripts/<stem>.txt. File stems look like the real ones (SERDEMO_<speaker>_<number>).

Splits: Test2 holds TEST2_FRACTION of the utterances, spoken only by the UNSEEN_SPEAKERS, mixed with white
noise at TEST2_SNR_DB (signal power over the whole file, pauses included) and with classes drawn in the
imbalanced proportions TEST2_CLASS_WEIGHTS (neutral most frequent, as in real MSP-Podcast). Train,
Development and Test1 (70/15/15 of the rest) have balanced classes and share the SEEN_SPEAKERS, each
speaker with every class. The long-form variant puts every file in Test1.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sercore.data.allocation import largest_remainder
from sercore.data.prosody import CLASSES
from sercore.data.speakers import SEEN_SPEAKERS, UNSEEN_SPEAKERS
from sercore.provenance import atomic_write_text

SPEAKERS = SEEN_SPEAKERS + UNSEEN_SPEAKERS
LABELS_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
TEST2_FRACTION = 0.15
TEST2_SNR_DB = 10.0
TEST2_CLASS_WEIGHTS = {"N": 0.30, "H": 0.16, "A": 0.12, "S": 0.11, "C": 0.10, "U": 0.08, "D": 0.07,
                       "F": 0.06}
SEEN_SPLITS = {"Train": 0.70, "Development": 0.15, "Test1": 0.15}
PARAMETERS = {"test2_class_weights": TEST2_CLASS_WEIGHTS, "seen_splits": SEEN_SPLITS,
              "test2_noise": "white Gaussian"}


def slots(n: int, variant: str, config: dict, rng=None) -> list[tuple]:
    """(class, code, speaker, split, snr_db, target_seconds) per utterance; n = files per length for
    long-form. Deterministic without randomness: rng is unused."""
    slots = []
    if variant == "long-form":
        lengths = config["long_form_lengths_s"]
        for j in range(len(lengths) * n):
            label = CLASSES[j % len(CLASSES)]
            speaker = SEEN_SPEAKERS[(3 * j) % len(SEEN_SPEAKERS)]  # 3 is coprime with 8: no class-speaker lock
            slots.append((label, label, speaker, "Test1", None, float(lengths[j // n])))
        return slots
    n_test2 = round(config["test2_fraction"] * n)
    for split, size in largest_remainder(SEEN_SPLITS, n - n_test2).items():
        for i in range(size):
            # consecutive blocks of 8 hold every class once, each block shifted by one speaker
            speaker = SEEN_SPEAKERS[(i + i // len(CLASSES)) % len(SEEN_SPEAKERS)]
            slots.append((CLASSES[i % len(CLASSES)], CLASSES[i % len(CLASSES)], speaker, split, None, None))
    i = 0
    for label, count in largest_remainder(TEST2_CLASS_WEIGHTS, n_test2, minimum=1).items():
        for _ in range(count):
            slots.append((label, label, UNSEEN_SPEAKERS[i % len(UNSEEN_SPEAKERS)], "Test2",
                          float(config["test2_snr_db"]), None))
            i += 1
    return slots


def assign_paths(utterances, root: Path) -> None:
    per_speaker: Counter = Counter()
    for u in utterances:
        per_speaker[u.speaker.id] += 1
        u.utt_id = f"SERDEMO_{int(u.speaker.id):04d}_{per_speaker[u.speaker.id]:04d}"
        u.path = str(root / "Audios" / f"{u.utt_id}.wav")


def write_metadata(utterances, root: Path) -> dict:
    """Labels CSV and transcripts; returns what was written (counts per class, speaker and split)."""
    rows = [LABELS_HEADER]
    for u in sorted(utterances, key=lambda u: u.utt_id):
        arousal, valence, dominance = u.avd
        rows.append(f"{u.utt_id}.wav,{u.code},{arousal:.1f},{valence:.1f},{dominance:.1f},"
                    f"{u.speaker.id},{u.speaker.gender},{u.group}")
        atomic_write_text(root / "Transcripts" / f"{u.utt_id}.txt", u.transcript + "\n")
    atomic_write_text(root / "Labels" / "labels_consensus.csv", "\n".join(rows) + "\n")
    return {"counts": {"label": dict(sorted(Counter(u.code for u in utterances).items())),
                       "speaker": dict(sorted(Counter(u.speaker.id for u in utterances).items())),
                       "split": dict(sorted(Counter(u.group for u in utterances).items()))},
            "files": {"audio": "Audios/", "labels": "Labels/labels_consensus.csv",
                      "transcripts": "Transcripts/"}}
