"""MSP-Podcast loader (also reads the generated corpus, which uses the same layout).

    <root>/Audios/<FileName>
    <root>/Labels/labels_consensus.csv   FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    <root>/Transcripts/<stem>.txt        (optional; "" when missing, counted)

Rows are kept for the requested classes (default the eight of the Odyssey 2024 challenge: N H A S C U D F);
O (other) and X (no agreement) are dropped and counted, as is any code the corpus does not define.
Split_Set must be one of Train, Development, Test1, Test2, Test3. A/V/D stay on MSP-Podcast's 1..7
scale; an empty A/V/D cell becomes NaN, and so does a value outside 1..7 (counted as repaired; the
class label stays). SpkrID "Unknown" stays the string "Unknown". A FileName that leaves Audios/
("../x.wav", "/abs/x.wav") is skipped. The utt_id is the FileName's stem, so a second row with the
same stem (X.wav again, or X.flac after X.wav) is skipped, saying which file was kept.

Releases before 1.11 name the labels file Labels/labels_concensus.csv (sic) and the development split
"Validation": that file is read when labels_consensus.csv is absent (noted), and "Validation" becomes
Development (counted as repaired).

The report accounts for every line and every audio file: the labels file is read one physical line at
a time (sercore.data.table.read_lines: a line that is not UTF-8 or has an unbalanced quote costs that
line only), and report.accounts (also printed as a note) gives data lines = kept + skipped + blank.
Every file under Audios/ is kept, named by a skipped row, or counted as audio without a labels row: the
usual cause is Test3, whose audio is released without labels for challenge submissions. Transcripts
that are not valid UTF-8 are read with the bad bytes replaced, counted as repaired.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.prosody import CLASSES
from sercore.data.report import LoadReport
from sercore.data.table import (account_audio, audio_files, audio_usable, csv_cells, is_blank,
                                make_table, normal_path, normalise_gender, read_lines, require_root)

LABELS = Path("Labels") / "labels_consensus.csv"
LABELS_BEFORE_1_11 = Path("Labels") / "labels_concensus.csv"  # sic: the name releases before 1.11 use
REQUIRED = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
ALL_CODES = CLASSES + ("O", "X")
DROPPED_NAMES = {"O": "other", "X": "no agreement"}
SCALE = (1.0, 7.0)
NO_ROW = "audio without a labels row (usually Test3 / challenge submission audio, released unlabelled)"


def _number(text: str) -> float:
    """A/V/D cell -> float; empty -> NaN; anything else raises ValueError (a malformed row)."""
    text = text.strip()
    if not text:
        return math.nan
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _outside(value: float) -> bool:
    return not math.isnan(value) and not SCALE[0] <= value <= SCALE[1]


def labels_path(root: Path) -> Path | None:
    """The labels file of the corpus at root (the current name, else the pre-1.11 one), or None."""
    for relative in (LABELS, LABELS_BEFORE_1_11):
        if (root / relative).is_file():
            return root / relative
    return None


def _transcript(path: Path, name: str, report: LoadReport) -> str:
    if not path.is_file():
        report.repair("transcript missing (set to \"\")", name)
        return ""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        report.repair("transcript not valid UTF-8 (bad bytes replaced)", name)
        return raw.decode("utf-8-sig", errors="replace").strip()


def load_msp_podcast(root, classes=CLASSES, check_audio: bool = True,
                     sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table of an MSP-Podcast-layout corpus and the report of what was kept or left out.

    classes: class codes to keep (others are skipped and counted). check_audio: read every file's header
    (sample rate, channels, length) rather than only checking that it exists.
    """
    root = require_root(root, f"an MSP-Podcast folder with {LABELS}, Audios/ and Transcripts/")
    path = labels_path(root)
    if path is None:
        raise FileNotFoundError(f"{root / LABELS} not found: an MSP-Podcast corpus needs {LABELS} under {root}")
    report = LoadReport("msp-podcast", str(root))
    if path.name != LABELS.name:
        report.note(f"labels read from {path.relative_to(root)} (the name releases before 1.11 use)")
    lines = read_lines(path, report)
    header = [name.strip() for name in next(csv.reader([lines[0].text]))] if lines else []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"{path}:1: header lacks {', '.join(missing)} "
                         f"(expected {','.join(REQUIRED)}; found {','.join(header) or 'nothing'})")
    where = {name: header.index(name) for name in REQUIRED}
    audios = root / "Audios"
    classes = tuple(classes)
    rows, first = [], {}  # first: stem -> (FileName, line) of the row kept under that utt_id
    kept_files, named_files = set(), set()
    blank, skipped_before = 0, report.n_skipped
    for line in lines[1:]:
        if is_blank(line):
            blank += 1
            continue
        item = f"line {line.number}"
        cells = csv_cells(line, report, item)
        if cells is None or len(cells) != len(header):
            if cells is not None:
                report.skip(f"malformed row ({len(cells)} fields, header has {len(header)})", item)
            # the file this broken line most likely names is accounted for by its skip, not counted again
            guess = line.text.split(",")
            if len(guess) > where["FileName"]:
                named_files.add(normal_path(audios / guess[where["FileName"]].strip().strip('"')))
            continue
        row = {name: cells[index].strip() for name, index in where.items()}
        name = row["FileName"]
        if not name:
            report.skip("malformed row (empty FileName)", item)
            continue
        relative = os.path.normpath(name)
        if os.path.isabs(relative) or relative.split(os.sep)[0] == os.pardir:
            report.skip("FileName outside Audios/", f"{item} ({name!r})")
            continue
        item, audio = name, normal_path(audios / relative)
        named_files.add(audio)
        try:
            avd = [_number(row[k]) for k in ("EmoAct", "EmoVal", "EmoDom")]
        except ValueError:
            report.skip("malformed row (A/V/D not a number)", item)
            continue
        split = row["Split_Set"]
        if split not in SPLITS and split != "Validation":
            report.skip(f"malformed row (Split_Set not one of {', '.join(SPLITS)})", f"{item} ({split!r})")
            continue
        code = row["EmoClass"]
        if code not in classes:
            if code in DROPPED_NAMES:
                report.skip(f"class {code} ({DROPPED_NAMES[code]}) not in the class set", item)
            elif code in ALL_CODES:
                report.skip(f"class {code} not in the class set", item)
            elif not code:
                report.skip("no class label", item)
            else:
                report.skip("unknown class code", f"{item} ({code!r})")
            continue
        stem = Path(name).stem
        if stem in first:
            kept_name, kept_line = first[stem]
            if kept_name == name:
                report.skip("duplicate FileName", f"{item} (line {line.number}; line {kept_line} kept)")
            else:
                report.skip("two FileNames share a stem (the utt_id; the first row is kept)",
                            f"{item} (stem {stem}: {kept_name} kept, {name} skipped)")
            continue
        if not audio_usable(audio, name, report, check_audio, sample_rate):
            continue
        if any(_outside(value) for value in avd):
            report.repair("A/V/D outside 1..7 (set to NaN)", f"{item} ({row['EmoAct']}, {row['EmoVal']}, "
                                                              f"{row['EmoDom']})")
            avd = [math.nan if _outside(value) else value for value in avd]
        if split == "Validation":
            report.repair("Split_Set Validation (the pre-1.11 name; set to Development)", item)
            split = "Development"
        transcript = _transcript(root / "Transcripts" / f"{stem}.txt", name, report)
        first[stem] = (name, line.number)
        kept_files.add(audio)
        rows.append({"utt_id": stem, "path": str(audio), "label": code, "arousal": avd[0], "valence": avd[1],
                     "dominance": avd[2], "speaker": row["SpkrID"],
                     "gender": normalise_gender(row["Gender"], report, name), "split": split,
                     "transcript": transcript})
    report.kept = len(rows)
    report.account(str(path.relative_to(root)), "data lines after the header", len(lines) - 1,
                   {"kept": len(rows), "skipped": report.n_skipped - skipped_before, "blank": blank})
    account_audio(audio_files(audios, report, "Audios/"), kept_files, named_files, report, NO_ROW, "Audios/",
                  root)
    return make_table(rows), report
