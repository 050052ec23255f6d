"""Manifests, the way in for any corpus that is neither MSP-Podcast nor IEMOCAP: a CSV file, or JSON lines.

Columns: path, label (required); arousal, valence, dominance, speaker, gender, split, transcript, utt_id
(optional, any order). Relative paths are resolved against the CSV's folder (or audio_root, below).
Defaults when a column is absent: utt_id = the path relative to that folder without its extension;
speaker = "unknown"; split = "Train" (said in the report); A/V/D = NaN; transcript = "". An empty label
cell keeps the row with label None (for corpora with dimensional labels only), counted in the report;
with `classes` given, a label outside it is skipped as an unknown class code. A/V/D are kept as given (a
manifest declares no scale).

Split values: Train, Development, and Test or any name starting with Test (Test1, Test2, TestB, ...);
any other value (Validation, train, Bogus) is skipped and counted, so that no row lands in a split the
trainer would misread; an empty split cell is set to Train, counted as repaired.

Rows are read one physical line each (sercore.data.table.read_lines): no field may span lines (quote a
comma, not a line break), a line that is not UTF-8 or has an unbalanced quote is skipped and counted,
and report.accounts gives data lines = kept + skipped + blank. Two rows with one utt_id: the first is
kept, and the report says which path was kept (x.wav and x.flac share the default utt_id x).

JSON lines (a .jsonl file, EmoBox's metadata format, data/<corpus>/fold_<k>/<corpus>_train_fold_<k>.jsonl):
one JSON object per line, {"key": ..., "wav": ..., "emo": ..., "length": ...}; key is the utt_id (default
as for a CSV), wav the audio path, emo the class label (absent, null or "": label None, counted), length
the duration in seconds (optional; a value that is not a number > 0 is a malformed row; the audio's own
header decides the duration read). The CSV's optional columns are optional keys here (split, speaker,
gender, arousal, valence, dominance, transcript; numbers may be JSON numbers). EmoBox's other keys are
known and not read (dataset, sample_rate, num_frame, task, channel), except: a row with type other than
"raw" (a feature file, not audio) and a row with start_time/end_time (a segment of a longer file, which
sercore does not cut) are skipped and counted; any other key is noted as ignored. EmoBox's files hold one
split each and no split key: every row is then Train (said in the report). Each line goes through the same
checks and accounting as a CSV row: a line that is not UTF-8, not JSON or not an object is skipped and
counted, and report.accounts gives lines = kept + skipped + blank.

audio_root: the folder relative paths are resolved against (default: the manifest's folder); EmoBox's
wav paths are relative to the EmoBox checkout (downloads/iemocap/Session1/...).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.report import LoadReport
from sercore.data.table import (NOT_UTF8, audio_usable, csv_cells, is_blank, make_table, normalise_gender,
                                read_lines)

REQUIRED = ("path", "label")
OPTIONAL = ("arousal", "valence", "dominance", "speaker", "gender", "split", "transcript", "utt_id")
JSONL_NAMES = {"key": "utt_id", "wav": "path", "emo": "label"}  # EmoBox's key -> the CSV column
JSONL_KNOWN = ("length", "type", "start_time", "end_time", "dataset", "sample_rate", "num_frame", "task", "channel")
SUFFIXES = (".csv", ".jsonl")


def _split(value: str | None, report: LoadReport, item: str) -> str | None:
    """The row's split (absent column or empty cell: Train), or None after counting an unknown value as
    skipped."""
    if not value:
        return "Train"
    if value in ("Train", "Development") or value.startswith("Test"):
        return value
    report.skip("unknown split value (expected Train, Development, Test or Test<name>)", f"{item} ({value!r})")
    return None


def load_manifest(path, classes=None, check_audio: bool = True, sample_rate: int = SAMPLE_RATE,
                  audio_root=None) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table described by a CSV or JSON-lines manifest, and the report of what was kept or
    left out. audio_root: where relative audio paths start (default: the manifest's folder)."""
    path = Path(path).expanduser().resolve()
    jsonl = path.suffix.lower() == ".jsonl"
    if not path.is_file():
        expected = ("a JSON-lines file with one {\"key\", \"wav\", \"emo\", \"length\"} object a line" if jsonl else
                    f"a CSV file with columns {', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")
        raise FileNotFoundError(f"manifest {path} not found: expected {expected}")
    base = path.parent if audio_root is None else Path(audio_root).expanduser().resolve()
    if not base.is_dir():
        raise FileNotFoundError(f"audio_root {base} is not a folder (relative audio paths of {path} start there)")
    report = LoadReport("manifest", str(path))
    if audio_root is not None:
        report.note(f"relative audio paths resolved against {base}")
    lines = read_lines(path, report)
    records = _jsonl_records(path, lines, report) if jsonl else _csv_records(path, lines, report)
    state = _Rows(base, None if classes is None else set(classes), check_audio, sample_rate)
    blank, skipped_before = 0, report.n_skipped
    for line, row in records:
        if row is _BLANK:
            blank += 1
        elif row is not None:
            state.add(row, line, report)
    report.kept = len(state.rows)
    unit = "lines" if jsonl else "data lines after the header"
    report.account(path.name, unit, len(lines) - (0 if jsonl else 1),
                   {"kept": len(state.rows), "skipped": report.n_skipped - skipped_before, "blank": blank})
    return make_table(state.rows), report


_BLANK = object()  # a record that is a blank line (counted, not a row)


def _csv_records(path: Path, lines: list, report: LoadReport):
    """(line, row dict | _BLANK | None after counting a skip) per data line of a CSV manifest."""
    header = [name.strip() for name in next(csv.reader([lines[0].text]))] if lines else []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"{path}:1: header lacks {', '.join(missing)} (required: {', '.join(REQUIRED)}; "
                         f"found {','.join(header) or 'nothing'})")
    unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
    if unknown:
        report.note(f"columns ignored: {', '.join(unknown)}")
    if "split" not in header:
        report.note("no split column: every row is in split 'Train'")
    for line in lines[1:]:
        if is_blank(line):
            yield line, _BLANK
            continue
        item = f"line {line.number}"
        cells = csv_cells(line, report, item)
        if cells is None:
            yield line, None
        elif len(cells) != len(header):
            report.skip(f"malformed row ({len(cells)} fields, header has {len(header)})", item)
            yield line, None
        else:
            yield line, {name: cell.strip() for name, cell in zip(header, cells)}


def _jsonl_records(path: Path, lines: list, report: LoadReport):
    """(line, row dict in the CSV's column names | _BLANK | None after counting a skip) per line of a
    JSON-lines manifest; the keys it ignores are noted once at the end."""
    ignored, any_split = set(), False
    for line in lines:
        if line.valid and not line.text.strip():
            yield line, _BLANK
            continue
        item = f"line {line.number}"
        if not line.valid:
            report.skip(NOT_UTF8, item)
            yield line, None
            continue
        try:
            record = json.loads(line.text)
        except json.JSONDecodeError as error:
            report.skip("malformed row (not valid JSON)", f"{item} ({error.msg})")
            yield line, None
            continue
        if not isinstance(record, dict):
            report.skip("malformed row (not a JSON object)", item)
            yield line, None
            continue
        ignored |= set(record) - set(JSONL_NAMES) - set(JSONL_KNOWN) - set(OPTIONAL)
        row = {JSONL_NAMES.get(k, k): _cell(v) for k, v in record.items() if k in JSONL_NAMES or k in OPTIONAL}
        row.setdefault("label", "")
        any_split = any_split or "split" in row
        item = row.get("path") or item
        if not row.get("path"):
            report.skip("malformed row (no wav path)", f"line {line.number}")
            yield line, None
        elif record.get("type", "raw") != "raw":
            report.skip("type is not raw (a feature file, not audio)", f"{item} ({record['type']!r})")
            yield line, None
        elif "start_time" in record or "end_time" in record:
            report.skip("segment of a longer file (start_time/end_time): not cut by sercore", item)
            yield line, None
        elif "length" in record and not _positive(record["length"]):
            report.skip("malformed row (length not a number > 0)", f"{item} ({record['length']!r})")
            yield line, None
        else:
            yield line, row
    if ignored:
        report.note(f"keys ignored: {', '.join(sorted(ignored))}")
    if not any_split:
        report.note("no split key: every row is in split 'Train'")


def _cell(value) -> str:
    """A JSON value as the text a CSV cell would hold (null -> "")."""
    return "" if value is None else str(value).strip()


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


class _Rows:
    """The rows kept so far and the checks every manifest row goes through, whatever the file format."""

    def __init__(self, base: Path, classes: set | None, check_audio: bool, sample_rate: int):
        self.base, self.classes, self.check_audio, self.sample_rate = base, classes, check_audio, sample_rate
        self.rows, self.first = [], {}  # first: utt_id -> (path cell, line) of the row kept

    def add(self, row: dict, line, report: LoadReport) -> None:
        """Keep the row, or count why not (see the module docstring)."""
        if not row["path"]:
            report.skip("malformed row (empty path)", f"line {line.number}")
            return
        item = row["path"]
        try:
            avd = {k: float(row[k]) if row.get(k) else math.nan for k in ("arousal", "valence", "dominance")}
        except ValueError:
            report.skip("malformed row (A/V/D not a number)", item)
            return
        split = _split(row.get("split"), report, item)
        if split is None:
            return
        label = row["label"] or None
        if label is not None and self.classes is not None and label not in self.classes:
            report.skip("unknown class code", f"{item} ({label!r})")
            return
        path = Path(row["path"]).expanduser()
        path = (path if path.is_absolute() else self.base / path).resolve()
        try:
            default_id = str(path.relative_to(self.base).with_suffix(""))
        except ValueError:  # outside the base folder
            default_id = path.stem
        utt_id = row.get("utt_id") or default_id
        if utt_id in self.first:
            kept_path, kept_line = self.first[utt_id]
            if kept_path == row["path"]:
                report.skip("duplicate utt_id", f"{utt_id} (line {line.number}; line {kept_line} kept)")
            else:
                report.skip("two paths share an utt_id (the first row is kept)",
                            f"{utt_id}: {kept_path} kept, {row['path']} skipped")
            return
        if not audio_usable(path, item, report, self.check_audio, self.sample_rate):
            return
        if label is None:
            report.repair("no class label (kept with label None)", item)
        if row.get("split") == "":
            report.repair("empty split cell (set to Train)", item)
        self.first[utt_id] = (row["path"], line.number)
        self.rows.append({"utt_id": utt_id, "path": str(path), "label": label, **avd,
                          "speaker": row.get("speaker") or "unknown",
                          "gender": normalise_gender(row.get("gender"), report, item),
                          "split": split, "transcript": row.get("transcript", "")})
