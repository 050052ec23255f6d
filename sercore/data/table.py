"""The utterance table every loader returns, and the input checks the loaders share.

Columns, in this order (the contract between sercore.data and the rest of the library):
    utt_id (unique str), path (absolute wav path), label (class code or None), arousal, valence,
    dominance (float on the corpus's own scale, NaN when absent), speaker (str), gender ("Female",
    "Male" or None), split (str), transcript (str, "" when absent).

Text files (labels, manifests, transcripts) are decoded one physical line at a time, so one bad byte
costs one line, not the file: a file starting with a UTF-16 byte-order mark is read as UTF-16 (noted);
otherwise each line must be UTF-8, and a line that is not is handed on marked invalid (decoded with
U+FFFD replacements) for the loader to skip or repair and count. CSV records are parsed one line each:
no field of an MSP-Podcast labels file or a manifest may span lines, so a stray quote cannot swallow the
lines after it (a line with an unbalanced quote is skipped and counted).
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sercore.data.audio import SAMPLE_RATE, AudioError, inspect_audio
from sercore.data.report import LoadReport

COLUMNS = ("utt_id", "path", "label", "arousal", "valence", "dominance", "speaker", "gender", "split",
           "transcript")
GENDERS = {"female": "Female", "f": "Female", "male": "Male", "m": "Male"}
# Shorter audio cannot fill one 25 ms analysis window (400 samples at 16 kHz): skipped when headers are read.
MIN_AUDIO_SECONDS = 0.025
NOT_UTF8 = "line not valid UTF-8 (encoding problem: re-save the file as UTF-8)"
LINE_BREAK = re.compile(r"\r\n|\r|\n")
LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Line:
    number: int  # 1-based physical line number
    text: str  # without the line break; bad bytes replaced by U+FFFD when not valid
    valid: bool  # False: the line was not valid UTF-8


def read_lines(path: Path, report: LoadReport) -> list[Line]:
    """The physical lines of a text file (breaks: \\n, \\r\\n or \\r), each decoded on its own (see the
    module docstring). ValueError naming the file when its start is mostly NUL bytes without a byte-order
    mark: UTF-16 saved without one, which cannot be read as UTF-8 at all."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: starts with a UTF-16 byte-order mark but does not decode as UTF-16 "
                             f"({error.reason} at byte {error.start}); re-save it as UTF-8") from None
        report.note(f"{path.name}: read as UTF-16 (it starts with a UTF-16 byte-order mark)")
        parts = LINE_BREAK.split(text)
        if parts and parts[-1] == "":
            parts.pop()
        return [Line(number, part, True) for number, part in enumerate(parts, start=1)]
    if raw[:4096].count(0) * 4 > len(raw[:4096]):  # ASCII text in UTF-16: every other byte is NUL
        raise ValueError(f"{path}: mostly NUL bytes, as UTF-16 text without a byte-order mark is; "
                         "re-save it as UTF-8")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    parts = LINE_BREAK_BYTES.split(raw)
    if parts and parts[-1] == b"":
        parts.pop()  # the break after the last line does not start another line
    lines = []
    for number, part in enumerate(parts, start=1):
        try:
            lines.append(Line(number, part.decode("utf-8"), True))
        except UnicodeDecodeError:
            lines.append(Line(number, part.decode("utf-8", errors="replace"), False))
    return lines


def csv_cells(line: Line, report: LoadReport, item: str) -> list[str] | None:
    """The fields of one CSV line, or None after counting it as skipped (not UTF-8, unbalanced quote)."""
    if not line.valid:
        report.skip(NOT_UTF8, item)
        return None
    if line.text.count('"') % 2:  # quoted fields double their inner quotes, so a balanced line has an even count
        report.skip("malformed row (unbalanced quote; a field cannot span lines)", item)
        return None
    return next(csv.reader([line.text]))


def is_blank(line: Line) -> bool:
    return line.valid and not line.text.replace(",", "").strip()


def audio_files(folder: Path, report: LoadReport, where: str, pattern: str = "*") -> list[Path]:
    """Files under folder (any depth) matching pattern. Names starting with "." (the "._name" copies
    macOS leaves, editor files) are not audio: left out, and their number noted."""
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.rglob(pattern) if p.is_file())
    hidden = sum(p.name.startswith(".") for p in found)
    if hidden:
        report.note(f"{where}: {hidden} file{'s' if hidden > 1 else ''} with a name starting with \".\" "
                    "(not audio: macOS ._ copies, editor files) left out")
    return [p for p in found if not p.name.startswith(".")]


def account_audio(files: list[Path], kept: set[Path], named: set[Path], report: LoadReport, reason: str,
                  where: str, base: Path) -> None:
    """Count every audio file: kept, named by a row that was skipped (already counted there), or named by
    no row at all (skipped here under `reason`); report.account records the three counts."""
    unlisted = [p for p in files if p not in kept and p not in named]
    for path in unlisted:
        report.skip(reason, str(path.relative_to(base)))
    n_kept = sum(p in kept for p in files)
    report.account(where, "audio files", len(files), {"kept": n_kept, "named by a skipped row": sum(
        p not in kept and p in named for p in files), "named by no row (skipped)": len(unlisted)})


def normal_path(path: Path) -> Path:
    """The path with "." and ".." folded away, without following links (to compare with listed files)."""
    return Path(os.path.normpath(path))


def make_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("arousal", "valence", "dominance"):
        table[column] = pd.to_numeric(table[column]).astype(float)
    table["transcript"] = table["transcript"].fillna("").astype(str)
    table = table.astype({"utt_id": str, "path": str, "speaker": str, "split": str})
    table["label"] = table["label"].astype(object).where(table["label"].notna(), None)
    table["gender"] = table["gender"].astype(object).where(table["gender"].notna(), None)
    return table.reset_index(drop=True)


def normalise_gender(value, report: LoadReport | None = None, item: str = "") -> str | None:
    """"Female"/"Male" from the spellings corpora use (F, female, Male, ...). Empty or "Unknown" gives
    None; any other spelling gives None too and is counted in the report."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in GENDERS:
        return GENDERS[text]
    if text not in ("", "unknown") and report is not None:
        report.repair("unknown gender value (set to None)", f"{item} ({value!r})")
    return None


def audio_usable(path: Path, item: str, report: LoadReport, check_audio: bool,
                 sample_rate: int = SAMPLE_RATE) -> bool:
    """Whether the row can stay. Missing files always fail; with check_audio, the header is read too:
    unreadable or empty audio, or audio shorter than MIN_AUDIO_SECONDS, fails; another sample rate or
    several channels are counted as repaired (read_audio resamples / averages them when the file is read),
    and so is a truncated WAV (read as the frames it holds)."""
    if not check_audio:
        if path.is_file():
            return True
        report.skip("audio file missing", item)
        return False
    try:
        info = inspect_audio(path)
    except AudioError as error:
        report.skip(error.reason, item)
        return False
    if info.frames < MIN_AUDIO_SECONDS * info.sample_rate:
        report.skip(f"audio shorter than {MIN_AUDIO_SECONDS * 1000:g} ms (one analysis window)",
                    f"{item} ({info.frames} samples)")
        return False
    if info.truncated:
        report.repair("truncated file (header says more frames than the file holds; read as what it holds)",
                      f"{item} (header says {info.header_frames} frames, file holds about {info.frames})")
    if info.sample_rate != sample_rate:
        report.repair(f"sample rate {info.sample_rate} Hz (resampled to {sample_rate} Hz on read)", item)
    if info.channels != 1:
        report.repair(f"{info.channels} channels (averaged to mono on read)", item)
    return True


def require_root(root: Path, expected: str) -> Path:
    """The corpus folder, or a FileNotFoundError saying what should be there."""
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"corpus root {root} does not exist: expected {expected}")
    return root
