"""IEMOCAP loader: the four-class, leave-one-session-out setup most SER papers use.

    <root>/Session<k>/sentences/wav/<dialog>/<utt>.wav
    <root>/Session<k>/dialog/EmoEvaluation/<dialog>.txt
        utterance lines start with "[":  "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]"
        (the header of the real files, "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", says the
        triple is valence, activation, dominance, each on 1..5; a value outside 1..5 becomes NaN, counted
        as repaired, and the class label stays); evaluator lines (C-E2:, A-E3:) and the "%" header are
        counted, not read; any other line is skipped and counted; lines are stripped first (a leading
        space does not hide an utterance line).
    <root>/Session<k>/dialog/transcriptions/<dialog>.txt   "Ses01F_impro01_F000 [006.2901-008.2357]: text"

Classes: ang, hap, neu, sad, with exc merged into hap (`happy="hap+exc"`; "exc" or "hap" alone are the
variants some papers use, e.g. the area-attention study took excited only). Every other code (fru, sur,
fea, dis, oth, xxx) is dropped and counted per code.

Accounting: report.accounts gives the EmoEvaluation lines as kept + skipped + header/evaluator + blank,
each file read one physical line at a time (a line that is not UTF-8 is skipped and counted; see
sercore.data.table.read_lines; a file that is not text at all is skipped and counted). Then every wav
under Session*/sentences/wav/ of the sessions present is kept, named by a skipped line, or counted as
audio without a label line (an EmoEvaluation file that is empty, truncated or missing). Transcript
lines that are not UTF-8 are kept with the bad bytes replaced, counted as repaired.

Speaker = session + the gender letter of the utterance id's last part (Ses01F_impro01_M003 -> Ses01_M,
Male): the dialog prefix names who leads the dialog, not who speaks.

Folds: `fold` k (1..5) makes Session k the Test split. Development is one whole other session, by
default the next one cyclically (k % 5 + 1: fold 5 -> Session 1), so that no speaker of Development or
Test is in Train; the other three sessions are Train. The report says which session is which.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.report import LoadReport
from sercore.data.table import (NOT_UTF8, account_audio, audio_files, audio_usable, make_table,
                                normal_path, read_lines, require_root)

SESSIONS = (1, 2, 3, 4, 5)
CODES = ("neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx")
HAPPY_OPTIONS = {"hap+exc": {"hap": "hap", "exc": "hap"}, "hap": {"hap": "hap"}, "exc": {"exc": "hap"}}
UTTERANCE_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+"
                            r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]\s*$")
UTTERANCE_ID = re.compile(r"^Ses0([1-5])[FM]_.+_([FM])\d+$")
EVALUATOR_LINE = re.compile(r"^[A-Z]-[A-Z]+\d*:")  # C-E2:, A-E3:, C-F1: (evaluators and self-evaluation)
TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
SCALE = (1.0, 5.0)
NO_LABEL = "audio without a label line (EmoEvaluation empty, truncated or missing)"


def _text_files(folder: Path) -> list[Path]:
    # skip the "._name" resource-fork files that copies made on macOS carry
    return sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))


def _transcripts(session_dir: Path, report: LoadReport) -> dict[str, tuple[str, bool]]:
    """utt_id -> (text, whether its line was valid UTF-8: if not, bad bytes are replaced)."""
    found = {}
    for path in _text_files(session_dir / "dialog" / "transcriptions"):
        for line in _lines(path, report):
            match = TRANSCRIPT_LINE.match(line.text.strip())
            if match:
                found[match.group(1)] = (match.group(2).strip(), line.valid)
    return found


def _lines(path: Path, report: LoadReport) -> list:
    """The lines of one text file; a file that is not text at all (mostly NUL bytes) is skipped and
    counted, so one such file does not stop the corpus (its utterances then count as unlabelled audio,
    or as missing transcripts)."""
    try:
        return read_lines(path, report)
    except ValueError as error:
        report.skip("text file unreadable (mostly NUL bytes: UTF-16 without a byte-order mark?)",
                    str(path.relative_to(path.parents[3])))
        report.note(str(error))
        return []


def _wav(session_dir: Path, utt_id: str) -> Path:
    return normal_path(session_dir / "sentences" / "wav" / utt_id.rsplit("_", 1)[0] / f"{utt_id}.wav")


def _outside(value: float) -> bool:
    return not SCALE[0] <= value <= SCALE[1]


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
    kept_files, named_files, wavs = set(), set(), []
    n_lines, counts = 0, {"kept": 0, "skipped": 0, "header/evaluator": 0, "blank": 0}
    for session in present:
        session_dir = root / f"Session{session}"
        wavs += audio_files(session_dir / "sentences" / "wav", report, f"Session{session}/sentences/wav/",
                            "*.wav")
        transcripts = _transcripts(session_dir, report)
        for evaluation in _text_files(session_dir / "dialog" / "EmoEvaluation"):
            for line in _lines(evaluation, report):
                n_lines += 1
                text = line.text.strip()  # real files carry stray leading spaces on some lines
                if not text:
                    counts["blank"] += 1
                    continue
                if line.valid and (text.startswith("%") or EVALUATOR_LINE.match(text)):
                    counts["header/evaluator"] += 1
                    continue
                # every utterance id on the line, so that its wav is not counted again as unlabelled
                named_files.update(_wav(session_dir, token) for token in text.split() if UTTERANCE_ID.match(token))
                item = f"{evaluation.name}:{line.number}"
                skipped_before = report.n_skipped
                row = _row(text, line.valid, item, session_dir, mapping, improvised_only, seen, report,
                           check_audio, sample_rate)
                counts["skipped"] += report.n_skipped - skipped_before
                if row is None:
                    continue
                transcript, valid = transcripts.get(row["utt_id"], ("", True))
                if row["utt_id"] not in transcripts:
                    report.repair("transcript missing (set to \"\")", row["utt_id"])
                elif not valid:
                    report.repair("transcript not valid UTF-8 (bad bytes replaced)", row["utt_id"])
                seen.add(row["utt_id"])
                kept_files.add(Path(row["path"]))
                counts["kept"] += 1
                rows.append({**row, "split": split_of[session], "transcript": transcript})
    report.account("EmoEvaluation files", "lines", n_lines, counts)
    account_audio(wavs, kept_files, named_files, report, NO_LABEL, "Session*/sentences/wav/", root)
    report.kept = len(rows)
    table = make_table(rows)
    return table.sort_values("utt_id", kind="stable").reset_index(drop=True), report


def _row(text: str, valid: bool, item: str, session_dir: Path, mapping: dict, improvised_only: bool,
         seen: set, report: LoadReport, check_audio: bool, sample_rate: int) -> dict | None:
    """The table row of one utterance line (without split and transcript), or None after counting why not."""
    if not valid:
        report.skip(NOT_UTF8, item)
        return None
    match = UTTERANCE_LINE.match(text) if text.startswith("[") else None
    utt_match = UTTERANCE_ID.match(match.group(3)) if match else None
    if not match or not utt_match:
        report.skip("malformed row" if text.startswith("[") else
                    "malformed row (not an utterance, evaluator or header line)", item)
        return None
    utt_id, code = match.group(3), match.group(4)
    try:
        valence, arousal, dominance = (float(match.group(i)) for i in (5, 6, 7))
    except ValueError:
        report.skip("malformed row", item)
        return None
    if code not in mapping:
        if code in CODES:
            report.skip(f"class {code} not in the 4-class set", utt_id)
        else:
            report.skip("unknown class code", f"{utt_id} ({code!r})")
        return None
    if improvised_only and "_impro" not in utt_id.rsplit("_", 1)[0]:
        report.skip("scripted dialog (improvised_only)", utt_id)
        return None
    if utt_id in seen:
        report.skip("duplicate utterance id", utt_id)
        return None
    path = _wav(session_dir, utt_id)
    if not audio_usable(path, utt_id, report, check_audio, sample_rate):
        return None
    avd = [valence, arousal, dominance]
    if any(_outside(value) for value in avd):
        report.repair("A/V/D outside 1..5 (set to NaN)", f"{utt_id} (V, A, D = {valence}, {arousal}, {dominance})")
        valence, arousal, dominance = (math.nan if _outside(value) else value for value in avd)
    letter = utt_match.group(2)
    return {"utt_id": utt_id, "path": str(path), "label": mapping[code], "arousal": arousal, "valence": valence,
            "dominance": dominance, "speaker": f"Ses0{utt_match.group(1)}_{letter}",
            "gender": "Female" if letter == "F" else "Male"}
