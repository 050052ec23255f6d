"""MSP-Podcast loader (also reads the generated corpus, which uses the same layout).

    <root>/Audios/<FileName>
    <root>/Labels/labels_consensus.csv   FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
    <root>/Transcripts/<stem>.txt        (optional; "" when missing, counted)

Rows are kept for the requested classes (default the eight of the Odyssey 2024 challenge: N H A S C U D F);
O (other) and X (no agreement) are dropped and counted, as is any code the corpus does not define.
Split_Set must be one of Train, Development, Test1, Test2, Test3. A/V/D stay on MSP-Podcast's 1..7
scale; an empty A/V/D cell becomes NaN. SpkrID "Unknown" stays the string "Unknown".
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.prosody import CLASSES
from sercore.data.report import LoadReport
from sercore.data.table import audio_usable, make_table, normalise_gender, require_root

LABELS = Path("Labels") / "labels_consensus.csv"
REQUIRED = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
SPLITS = ("Train", "Development", "Test1", "Test2", "Test3")
ALL_CODES = CLASSES + ("O", "X")
DROPPED_NAMES = {"O": "other", "X": "no agreement"}


def _number(text: str) -> float:
    """A/V/D cell -> float; empty -> NaN; anything else raises ValueError (a malformed row)."""
    text = text.strip()
    if not text:
        return math.nan
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def load_msp_podcast(root, classes=CLASSES, check_audio: bool = True,
                     sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table of an MSP-Podcast-layout corpus and the report of what was kept or left out.

    classes: class codes to keep (others are skipped and counted). check_audio: read every file's header
    (sample rate, channels, length) rather than only checking that it exists.
    """
    root = require_root(root, f"an MSP-Podcast folder with {LABELS}, Audios/ and Transcripts/")
    labels_path = root / LABELS
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found: an MSP-Podcast corpus needs {LABELS} under {root}")
    report = LoadReport("msp-podcast", str(root))
    classes = tuple(classes)
    rows, seen = [], set()
    with open(labels_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ValueError(f"{labels_path}: header lacks {', '.join(missing)} "
                             f"(expected {','.join(REQUIRED)}; found {','.join(header) or 'nothing'})")
        where = {name: header.index(name) for name in REQUIRED}
        for line_number, cells in enumerate(reader, start=2):
            if not cells or all(not cell.strip() for cell in cells):
                continue  # blank line
            item = f"line {line_number}"
            if len(cells) != len(header):
                report.skip(f"malformed row ({len(cells)} fields, header has {len(header)})", item)
                continue
            row = {name: cells[index].strip() for name, index in where.items()}
            name = row["FileName"]
            item = name or item
            try:
                arousal, valence, dominance = (_number(row[k]) for k in ("EmoAct", "EmoVal", "EmoDom"))
            except ValueError:
                report.skip("malformed row (A/V/D not a number)", item)
                continue
            if not name:
                report.skip("malformed row (empty FileName)", item)
                continue
            if row["Split_Set"] not in SPLITS:
                report.skip(f"malformed row (Split_Set not one of {', '.join(SPLITS)})", item)
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
            if stem in seen:
                report.skip("duplicate FileName", item)
                continue
            path = root / "Audios" / name
            if not audio_usable(path, name, report, check_audio, sample_rate):
                continue
            transcript_path = root / "Transcripts" / f"{stem}.txt"
            if transcript_path.is_file():
                transcript = transcript_path.read_text(encoding="utf-8", errors="replace").strip()
            else:
                transcript = ""
                report.repair("transcript missing (set to \"\")", name)
            seen.add(stem)
            rows.append({"utt_id": stem, "path": str(path), "label": code, "arousal": arousal,
                         "valence": valence, "dominance": dominance, "speaker": row["SpkrID"],
                         "gender": normalise_gender(row["Gender"], report, name), "split": row["Split_Set"],
                         "transcript": transcript})
    report.kept = len(rows)
    return make_table(rows), report
