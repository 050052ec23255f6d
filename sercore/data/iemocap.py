"""IEMOCAP loader: the four-class, leave-one-session-out setup most SER papers use.

    <root>/Session<k>/sentences/wav/<dialog>/<utt>.wav
    <root>/Session<k>/dialog/EmoEvaluation/<dialog>.txt
        utterance lines start with "[":  "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]"
        (the header of the real files, "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", says the
        triple is valence, activation, dominance, each on 1..5); evaluator lines (C-E2:, A-E3:) are ignored.
    <root>/Session<k>/dialog/transcriptions/<dialog>.txt   "Ses01F_impro01_F000 [006.2901-008.2357]: text"

Classes: ang, hap, neu, sad, with exc merged into hap (`happy="hap+exc"`; "exc" or "hap" alone are the
variants some papers use, e.g. the area-attention study took excited only). Every other code (fru, sur,
fea, dis, oth, xxx) is dropped and counted per code.

Speaker = session + the gender letter of the utterance id's last part (Ses01F_impro01_M003 -> Ses01_M,
Male): the dialog prefix names who leads the dialog, not who speaks.

Folds: `fold` k (1..5) makes Session k the Test split. Development is one whole other session, by
default the next one cyclically (k % 5 + 1: fold 5 -> Session 1), so that no speaker of Development or
Test is in Train; the other three sessions are Train. The report says which session is which.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.report import LoadReport
from sercore.data.table import audio_usable, make_table, require_root

SESSIONS = (1, 2, 3, 4, 5)
CODES = ("neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx")
HAPPY_OPTIONS = {"hap+exc": {"hap": "hap", "exc": "hap"}, "hap": {"hap": "hap"}, "exc": {"exc": "hap"}}
UTTERANCE_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+"
                            r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]\s*$")
UTTERANCE_ID = re.compile(r"^Ses0([1-5])[FM]_.+_([FM])\d+$")
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")


def _text_files(folder: Path) -> list[Path]:
    # skip the "._name" resource-fork files that copies made on macOS carry
    return sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))


def _transcripts(session_dir: Path) -> dict[str, str]:
    found = {}
    for path in _text_files(session_dir / "dialog" / "transcriptions"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                found[match.group(1)] = match.group(2).strip()
    return found


def load_iemocap(root, fold: int = 1, dev_session: int | None = None, happy: str = "hap+exc",
                 improvised_only: bool = False, check_audio: bool = True,
                 sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The IEMOCAP utterance table for leave-one-session-out fold `fold` (Session `fold` = Test), and the
    report. dev_session: the Development session (default fold % 5 + 1). improvised_only: keep only the
    improvised dialogs (the area-attention study's subset)."""
    root = require_root(root, "an IEMOCAP folder with Session1..Session5, each holding sentences/wav/ "
                              "and dialog/EmoEvaluation/")
    if fold not in SESSIONS:
        raise ValueError(f"fold must be one of 1..5 (the Test session), got {fold!r}")
    dev_session = fold % 5 + 1 if dev_session is None else dev_session
    if dev_session not in SESSIONS or dev_session == fold:
        raise ValueError(f"dev_session must be a session 1..5 other than the test fold {fold}, got {dev_session}")
    if happy not in HAPPY_OPTIONS:
        raise ValueError(f"happy must be one of {', '.join(HAPPY_OPTIONS)}, got {happy!r}")
    present = [k for k in SESSIONS if (root / f"Session{k}" / "dialog" / "EmoEvaluation").is_dir()]
    if not present:
        raise FileNotFoundError(f"no IEMOCAP sessions under {root}: expected Session1..Session5 with "
                                "dialog/EmoEvaluation/*.txt")
    for needed, role in ((fold, "Test"), (dev_session, "Development")):
        if needed not in present:
            raise FileNotFoundError(f"{root / f'Session{needed}'} (the {role} session of fold {fold}) has no "
                                    "dialog/EmoEvaluation folder")
    report = LoadReport("iemocap", str(root))
    split_of = {k: "Test" if k == fold else "Development" if k == dev_session else "Train" for k in SESSIONS}
    report.note(f"fold {fold}: Test = Session{fold}, Development = Session{dev_session}, Train = Sessions "
                + ", ".join(str(k) for k in SESSIONS if split_of[k] == "Train" and k in present))
    missing = [k for k in SESSIONS if k not in present]
    if missing:
        report.note("sessions absent: " + ", ".join(f"Session{k}" for k in missing))
    mapping = {"neu": "neu", "ang": "ang", "sad": "sad", **HAPPY_OPTIONS[happy]}
    report.note(f"classes ang, hap, neu, sad; hap = {happy}")

    rows, seen = [], set()
    for session in present:
        session_dir = root / f"Session{session}"
        transcripts = _transcripts(session_dir)
        for evaluation in _text_files(session_dir / "dialog" / "EmoEvaluation"):
            for line_number, line in enumerate(evaluation.read_text(encoding="utf-8", errors="replace")
                                               .splitlines(), start=1):
                if not line.startswith("["):
                    continue  # header, blank lines and evaluator lines
                item = f"{evaluation.name}:{line_number}"
                match = UTTERANCE_LINE.match(line.strip())
                utt_match = UTTERANCE_ID.match(match.group(3)) if match else None
                if not match or not utt_match:
                    report.skip("malformed row", item)
                    continue
                utt_id, code = match.group(3), match.group(4)
                try:
                    valence, arousal, dominance = (float(match.group(i)) for i in (5, 6, 7))
                except ValueError:
                    report.skip("malformed row", item)
                    continue
                if code not in mapping:
                    if code in CODES:
                        report.skip(f"class {code} not in the 4-class set", utt_id)
                    else:
                        report.skip("unknown class code", f"{utt_id} ({code!r})")
                    continue
                dialog = utt_id.rsplit("_", 1)[0]
                if improvised_only and "_impro" not in dialog:
                    report.skip("scripted dialog (improvised_only)", utt_id)
                    continue
                if utt_id in seen:
                    report.skip("duplicate utterance id", utt_id)
                    continue
                path = session_dir / "sentences" / "wav" / dialog / f"{utt_id}.wav"
                if not audio_usable(path, utt_id, report, check_audio, sample_rate):
                    continue
                transcript = transcripts.get(utt_id)
                if transcript is None:
                    transcript = ""
                    report.repair("transcript missing (set to \"\")", utt_id)
                letter = utt_match.group(2)
                seen.add(utt_id)
                rows.append({"utt_id": utt_id, "path": str(path), "label": mapping[code], "arousal": arousal,
                             "valence": valence, "dominance": dominance,
                             "speaker": f"Ses0{utt_match.group(1)}_{letter}",
                             "gender": "Female" if letter == "F" else "Male",
                             "split": split_of[session], "transcript": transcript})
    report.kept = len(rows)
    table = make_table(rows)
    return table.sort_values("utt_id", kind="stable").reset_index(drop=True), report
