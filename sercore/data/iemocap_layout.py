"""Writing a generated corpus in the IEMOCAP layout.

    Session<k>/sentences/wav/<dialog>/<utt>.wav
    Session<k>/dialog/EmoEvaluation/<dialog>.txt     "[start - end]<TAB>utt<TAB>code<TAB>[val, act, dom]"
    Session<k>/dialog/transcriptions/<dialog>.txt    "utt [start-end]: text"

Five sessions, each with one female and one male speaker. Dialogs are named like the real ones
(Ses01F_impro01, Ses01M_script02_1: the letter is the speaker who leads the dialog); in each dialog both
speakers talk and an utterance id ends with its own speaker's letter (Ses01F_impro01_M003 is the male
actor). The bracket triple is [valence, activation, dominance] on IEMOCAP's 1..5 scale (the header of
the real files reads "[V, A, D]"); our 1..7 values are mapped linearly onto 1..5.

Codes are drawn in CODE_WEIGHTS proportions, roughly IEMOCAP's mix, including codes a 4-class loader must
drop and count (fru, sur, fea, dis, oth, and xxx for "no agreement", which gets a random prosody).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from sercore.data.allocation import largest_remainder
from sercore.data.prosody import CLASSES
from sercore.data.speakers import IEMOCAP_SPEAKERS
from sercore.provenance import atomic_write_text

SPEAKERS = IEMOCAP_SPEAKERS
SESSIONS = 5
DIALOG_SIZE = 12
CODE_WEIGHTS = {"neu": 0.20, "hap": 0.08, "exc": 0.12, "ang": 0.14, "sad": 0.14, "fru": 0.14, "sur": 0.04,
                "fea": 0.03, "dis": 0.02, "oth": 0.02, "xxx": 0.07}
# The prosody class each IEMOCAP code is rendered with (xxx: a random class, see slots()).
CODE_TO_CLASS = {"neu": "N", "hap": "H", "exc": "H", "ang": "A", "sad": "S", "fru": "C", "sur": "U",
                 "fea": "F", "dis": "D", "oth": "N"}
PARAMETERS = {"code_weights": CODE_WEIGHTS, "code_to_class": CODE_TO_CLASS, "dialog_size": DIALOG_SIZE}
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


def slots(n: int, variant: str, config: dict, rng) -> list[tuple]:
    """(class, code, speaker, session, snr_db, target_seconds) per utterance; n = files per length for
    long-form."""
    slots = []
    if variant == "long-form":
        lengths, codes = config["long_form_lengths_s"], ("neu", "hap", "ang", "sad", "exc")
        for j in range(len(lengths) * n):
            session = j % SESSIONS
            speaker = SPEAKERS[2 * session + (j // SESSIONS) % 2]
            code = codes[(j + j // SESSIONS) % len(codes)]
            slots.append((CODE_TO_CLASS[code], code, speaker, str(session + 1), None, float(lengths[j // n])))
        return slots
    for session in range(SESSIONS):
        size = n // SESSIONS + (1 if session < n % SESSIONS else 0)
        codes = [code for code, count in largest_remainder(CODE_WEIGHTS, size).items() for _ in range(count)]
        rng.shuffle(codes)  # dialogs mix emotions
        for i, code in enumerate(codes):
            label = CODE_TO_CLASS.get(code) or CLASSES[int(rng.integers(len(CLASSES)))]
            slots.append((label, code, SPEAKERS[2 * session + i % 2], str(session + 1), None, None))
    return slots


def _dialog_name(session: int, number: int) -> str:
    lead = "F" if number % 2 == 0 else "M"
    kind = f"script{number // 2 + 1:02d}_1" if number % 3 == 2 else f"impro{number // 2 + 1:02d}"
    return f"Ses{session:02d}{lead}_{kind}"


def assign_paths(utterances, root: Path) -> None:
    by_session = defaultdict(list)
    for u in utterances:
        by_session[int(u.group)].append(u)
    for session, members in by_session.items():
        for start in range(0, len(members), DIALOG_SIZE):
            dialog = _dialog_name(session, start // DIALOG_SIZE)
            per_letter: Counter = Counter()
            for u in members[start:start + DIALOG_SIZE]:
                letter = u.speaker.gender[0]
                u.utt_id = f"{dialog}_{letter}{per_letter[letter]:03d}"
                per_letter[letter] += 1
                u.path = str(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{u.utt_id}.wav")


def _five_point(value: float) -> float:
    return 1.0 + (value - 1.0) * 4.0 / 6.0


def write_metadata(utterances, root: Path) -> dict:
    """EmoEvaluation and transcription files per dialog; returns counts per code, speaker and session."""
    dialogs = defaultdict(list)
    for u in utterances:
        dialogs[u.utt_id.rsplit("_", 1)[0]].append(u)
    for dialog, members in dialogs.items():
        session_dir = root / f"Session{int(dialog[3:5])}" / "dialog"
        evaluation, transcript = [HEADER, ""], []
        clock = 2.0
        for number, u in enumerate(members):
            start, end = clock, clock + u.duration
            clock = end + 0.6 + 0.1 * (number % 4)  # turn-taking gaps
            arousal, valence, dominance = (_five_point(v) for v in u.avd)
            evaluation += [f"[{start:.4f} - {end:.4f}]\t{u.utt_id}\t{u.code}\t"
                           f"[{valence:.4f}, {arousal:.4f}, {dominance:.4f}]",
                           f"C-E2:\t{u.code};\t()", f"A-E3:\tval {round(valence)}; act {round(arousal)}; "
                           f"dom  {round(dominance)};\t()", ""]
            transcript.append(f"{u.utt_id} [{start:08.4f}-{end:08.4f}]: {u.transcript}")
        atomic_write_text(session_dir / "EmoEvaluation" / f"{dialog}.txt", "\n".join(evaluation) + "\n")
        atomic_write_text(session_dir / "transcriptions" / f"{dialog}.txt", "\n".join(transcript) + "\n")
    return {"counts": {"label": dict(sorted(Counter(u.code for u in utterances).items())),
                       "speaker": dict(sorted(Counter(u.speaker.id for u in utterances).items())),
                       "session": dict(sorted(Counter(u.group for u in utterances).items()))},
            "files": {"audio": "Session*/sentences/wav/", "labels": "Session*/dialog/EmoEvaluation/",
                      "transcripts": "Session*/dialog/transcriptions/"}}
