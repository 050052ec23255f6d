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

Folds: `fold` k (1..5) makes Session k the Test split. `dev` chooses where Development comes from, one of
the protocols the public toolkits use (see protocol(); the report's first note and metrics.json
"protocol" say which was used):
    "random"   (default; s3prl's emotion recipe) Train = the four other sessions, minus a random
               dev_fraction (0.2) of their utterances, drawn with numpy's default_rng(dev_seed), which are
               Development: n - int(0.8 n) of the n utterances, the sizes of s3prl's
               downstream/emotion/expert.py (random_split into int((1 - valid_ratio) n) and the rest, after
               torch.manual_seed(0), over its meta_data order: the same sizes, not the same utterances).
               Development then shares speakers with Train.
    "speaker"  (SpeechBrain's recipes/IEMOCAP/emotion_recognition/iemocap_prepare.py,
               split_different_speakers) Train = the four other sessions; of the test session, the utterances
               of the `test_gender` speaker (default Female, SpeechBrain's odd test_spk_id 2k-1) are Test
               and the other speaker's are Development.
    "none"     (EmoBox's data/iemocap/fold_k files: train and test only) Train = the four other sessions,
               no Development: a training run cannot select on Development and refuses unless its
               dev_split setting names another split (sercore.train.run).
    "session"  Development = one whole other session, dev_session (default the next one cyclically,
               k % 5 + 1: fold 5 -> Session 1), Train = the other three: no speaker of Development or Test
               is in Train. Giving dev_session implies this protocol.

Checks: with happy="hap+exc", all five sessions and every dialog, the full release has 5,531 four-class
utterances (SpeechBrain's NUMBER_UTT, EmoBox's table); another count is said in a note (the copy may
lack files, or the loader skipped some: the report says which). strip_nonspeech=True removes bracketed
non-speech tokens ([LAUGHTER], [BREATHING], [GARBAGE], ...) from transcripts for the text encoder, each
changed transcript counted as repaired. A root that holds no Session* folder but exactly one folder that
does (the parent of IEMOCAP_full_release) is read from that folder, with a note.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
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
CLASSES = ("ang", "hap", "neu", "sad")  # the four-class set the loader maps the codes onto (see _label_map)
NO_LABEL = "audio without a label line (EmoEvaluation empty, truncated or missing)"
DEV_PROTOCOLS = {"random": "s3prl", "speaker": "SpeechBrain", "none": "EmoBox", "session": "sercore"}
PROTOCOL_OPTIONS = ("fold", "dev", "dev_session", "dev_fraction", "dev_seed", "test_gender")
FULL_RELEASE_4CLASS = 5531
NONSPEECH = re.compile(r"\[[A-Z][A-Z_ ]*\]")  # [LAUGHTER], [BREATHING], [GARBAGE]: capitals in brackets
GENDER_LETTER = {"Female": "F", "Male": "M"}


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


def protocol(fold: int = 1, dev: str | None = None, dev_session: int | None = None, dev_fraction: float = 0.2,
             dev_seed: int = 0, test_gender: str = "Female") -> dict:
    """The resolved protocol of a fold (see the module docstring): what metrics.json records as "protocol".
    ValueError naming the option for a bad value."""
    if fold not in SESSIONS:
        raise ValueError(f"fold must be one of 1..5 (the Test session), got {fold!r}")
    dev = ("session" if dev_session is not None else "random") if dev is None else dev
    if dev not in DEV_PROTOCOLS:
        raise ValueError(f"dev must be one of {', '.join(DEV_PROTOCOLS)} (IEMOCAP Development protocol), got {dev!r}")
    if dev_session is not None and dev != "session":
        raise ValueError(f"dev_session={dev_session} applies to dev='session' only, not dev={dev!r}")
    out = {"fold": fold, "dev": dev, "like": DEV_PROTOCOLS[dev], "test_session": fold}
    others = [k for k in SESSIONS if k != fold]
    if dev == "session":
        dev_session = fold % 5 + 1 if dev_session is None else dev_session
        if dev_session not in others:
            raise ValueError(f"dev_session must be a session 1..5 other than the test fold {fold}, got {dev_session}")
        return {**out, "dev_session": dev_session, "train_sessions": [k for k in others if k != dev_session]}
    out["train_sessions"] = others
    if dev == "random":
        if isinstance(dev_fraction, bool) or not isinstance(dev_fraction, (int, float)) or not 0 < dev_fraction < 1:
            raise ValueError(f"dev_fraction must be a number in (0, 1), got {dev_fraction!r}")
        if isinstance(dev_seed, bool) or not isinstance(dev_seed, int):
            raise ValueError(f"dev_seed must be an integer, got {dev_seed!r}")
        return {**out, "dev_fraction": float(dev_fraction), "dev_seed": dev_seed}
    if dev == "speaker":
        if test_gender not in GENDER_LETTER:
            raise ValueError(f"test_gender must be Female or Male, got {test_gender!r}")
        return {**out, "test_gender": test_gender}
    return out


def describe(spec: dict) -> str:
    """One line saying which utterances are Train, Development and Test."""
    train = "Train = Sessions " + ", ".join(map(str, spec["train_sessions"]))
    head = f"fold {spec['fold']} (dev={spec['dev']}, {spec['like']}-like): Test = Session{spec['fold']}"
    if spec["dev"] == "session":
        return f"{head}, Development = Session{spec['dev_session']}, {train}"
    if spec["dev"] == "random":
        return (f"{head}, {train} minus a random {spec['dev_fraction']:g} of their utterances (seed "
                f"{spec['dev_seed']}), which are Development")
    if spec["dev"] == "speaker":
        other = "Male" if spec["test_gender"] == "Female" else "Female"
        return (f"fold {spec['fold']} (dev=speaker, SpeechBrain-like): Test = Session{spec['fold']} "
                f"{spec['test_gender']}, Development = Session{spec['fold']} {other}, {train}")
    return f"{head}, {train}, no Development"


def find_root(root: Path, report: LoadReport | None = None) -> Path:
    """root, or its one subfolder holding Session* folders (the parent of IEMOCAP_full_release), noted."""
    if any(p.is_dir() for p in root.glob("Session*")):
        return root
    inner = sorted(p for p in root.iterdir() if p.is_dir() and any(q.is_dir() for q in p.glob("Session*"))) \
        if root.is_dir() else []
    if len(inner) > 1:
        raise FileNotFoundError(f"{root} holds no Session* folder but several folders that do "
                                f"({', '.join(p.name for p in inner)}): pass one of them")
    if inner and report is not None:
        report.note(f"{root} holds no Session* folder: read {inner[0].name}/ inside it")
    return inner[0] if inner else root


def load_iemocap(root, fold: int = 1, dev: str | None = None, dev_session: int | None = None,
                 dev_fraction: float = 0.2, dev_seed: int = 0, test_gender: str = "Female", happy: str = "hap+exc",
                 improvised_only: bool = False, strip_nonspeech: bool = False, check_audio: bool = True,
                 sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The IEMOCAP utterance table for leave-one-session-out fold `fold` (Session `fold` = Test), and the
    report. dev: the Development protocol, "random" (default, s3prl), "speaker" (SpeechBrain), "none"
    (EmoBox) or "session" (dev_session: the Development session, default fold % 5 + 1; giving it implies
    dev="session"); see the module docstring. improvised_only: keep only the improvised dialogs (the
    area-attention study's subset). strip_nonspeech: remove [LAUGHTER]-like tokens from transcripts."""
    spec = protocol(fold, dev, dev_session, dev_fraction, dev_seed, test_gender)
    root = require_root(root, "an IEMOCAP folder with Session1..Session5, each holding sentences/wav/ "
                              "and dialog/EmoEvaluation/")
    if happy not in HAPPY_OPTIONS:
        raise ValueError(f"happy must be one of {', '.join(HAPPY_OPTIONS)}, got {happy!r}")
    report = LoadReport("iemocap", str(root))
    root = find_root(root, report)
    present = [k for k in SESSIONS if (root / f"Session{k}" / "dialog" / "EmoEvaluation").is_dir()]
    if not present:
        raise FileNotFoundError(f"no IEMOCAP sessions under {root}: expected Session1..Session5 with "
                                "dialog/EmoEvaluation/*.txt")
    needed = [(fold, "Test")] + ([(spec["dev_session"], "Development")] if spec["dev"] == "session" else [])
    for session, role in needed:
        if session not in present:
            raise FileNotFoundError(f"{root / f'Session{session}'} (the {role} session of fold {fold}) has no "
                                    "dialog/EmoEvaluation folder")
    report.notes.insert(0, describe(spec))
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
                if strip_nonspeech:
                    transcript = _strip_nonspeech(transcript, row["utt_id"], report)
                seen.add(row["utt_id"])
                kept_files.add(Path(row["path"]))
                counts["kept"] += 1
                rows.append({**row, "split": _session_split(spec, session, row["gender"]),
                             "transcript": transcript})
    report.account("EmoEvaluation files", "lines", n_lines, counts)
    account_audio(wavs, kept_files, named_files, report, NO_LABEL, "Session*/sentences/wav/", root)
    report.kept = len(rows)
    if happy == "hap+exc" and not improvised_only and len(present) == 5 and len(rows) != FULL_RELEASE_4CLASS:
        report.note(f"{len(rows)} four-class utterances (hap+exc, all five sessions), not the "
                    f"{FULL_RELEASE_4CLASS:,} of the full release: the copy lacks files or some were skipped "
                    "(see above); results are not comparable with the toolkits' as they stand")
    table = make_table(rows).sort_values("utt_id", kind="stable").reset_index(drop=True)
    if spec["dev"] == "random":
        _random_development(table, spec)
    return table, report


def _session_split(spec: dict, session: int, gender: str) -> str:
    """The split of an utterance of `session` before the random protocol draws Development from Train."""
    if session == spec["fold"]:
        if spec["dev"] == "speaker":
            return "Test" if gender == spec["test_gender"] else "Development"
        return "Test"
    return "Development" if spec["dev"] == "session" and session == spec["dev_session"] else "Train"


def _random_development(table: pd.DataFrame, spec: dict) -> None:
    """Move a seeded random dev_fraction of the Train rows (in utt_id order) to Development, in place:
    n - int((1 - dev_fraction) n) of n rows, as s3prl's random_split sizes them."""
    train = np.flatnonzero((table["split"] == "Train").to_numpy())
    n_dev = len(train) - int((1 - spec["dev_fraction"]) * len(train))
    chosen = np.random.default_rng(spec["dev_seed"]).permutation(train)[:n_dev]
    table.loc[chosen, "split"] = "Development"


def _strip_nonspeech(text: str, utt_id: str, report: LoadReport) -> str:
    """text without bracketed non-speech tokens, spaces collapsed; a change is counted as repaired."""
    stripped = " ".join(NONSPEECH.sub(" ", text).split())
    if stripped != text:
        report.repair("non-speech tokens ([LAUGHTER], [BREATHING], ...) stripped from transcript", utt_id)
    return stripped


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
