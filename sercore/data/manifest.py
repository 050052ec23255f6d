"""Plain CSV manifest: the way in for any corpus that is neither MSP-Podcast nor IEMOCAP.

Columns: path, label (required); arousal, valence, dominance, speaker, gender, split, transcript, utt_id
(optional, any order). Relative paths are resolved against the CSV's folder. Defaults when a column is
absent: utt_id = the path relative to the CSV folder without its extension; speaker = "unknown";
split = "Train" (said in the report); A/V/D = NaN; transcript = "". An empty label cell keeps the row
with label None (for corpora with dimensional labels only), counted in the report; with `classes`
given, a label outside it is skipped as an unknown class code. A/V/D are kept as given (a manifest
declares no scale).

Split values: Train, Development, and Test or any name starting with Test (Test1, Test2, TestB, ...);
any other value (Validation, train, Bogus) is skipped and counted, so that no row lands in a split the
trainer would misread; an empty split cell is set to Train, counted as repaired.

Rows are read one physical line each (sercore.data.table.read_lines): no field may span lines (quote a
comma, not a line break), a line that is not UTF-8 or has an unbalanced quote is skipped and counted,
and report.accounts gives data lines = kept + skipped + blank. Two rows with one utt_id: the first is
kept, and the report says which path was kept (x.wav and x.flac share the default utt_id x).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.report import LoadReport
from sercore.data.table import (audio_usable, csv_cells, is_blank, make_table, normalise_gender,
                                read_lines)

REQUIRED = ("path", "label")
OPTIONAL = ("arousal", "valence", "dominance", "speaker", "gender", "split", "transcript", "utt_id")


def _split(value: str | None, report: LoadReport, item: str) -> str | None:
    """The row's split (absent column or empty cell: Train), or None after counting an unknown value as
    skipped."""
    if not value:
        return "Train"
    if value in ("Train", "Development") or value.startswith("Test"):
        return value
    report.skip("unknown split value (expected Train, Development, Test or Test<name>)", f"{item} ({value!r})")
    return None


def load_manifest(csv_path, classes=None, check_audio: bool = True,
                  sample_rate: int = SAMPLE_RATE) -> tuple[pd.DataFrame, LoadReport]:
    """The utterance table described by a CSV manifest, and the report of what was kept or left out."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest {csv_path} not found: expected a CSV file with columns "
                                f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")
    base = csv_path.parent
    report = LoadReport("manifest", str(csv_path))
    classes = None if classes is None else set(classes)
    lines = read_lines(csv_path, report)
    header = [name.strip() for name in next(csv.reader([lines[0].text]))] if lines else []
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"{csv_path}:1: header lacks {', '.join(missing)} (required: {', '.join(REQUIRED)}; "
                         f"found {','.join(header) or 'nothing'})")
    unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
    if unknown:
        report.note(f"columns ignored: {', '.join(unknown)}")
    if "split" not in header:
        report.note("no split column: every row is in split 'Train'")
    rows, first = [], {}  # first: utt_id -> (path cell, line) of the row kept
    blank, skipped_before = 0, report.n_skipped
    for line in lines[1:]:
        if is_blank(line):
            blank += 1
            continue
        item = f"line {line.number}"
        cells = csv_cells(line, report, item)
        if cells is None:
            continue
        if len(cells) != len(header):
            report.skip(f"malformed row ({len(cells)} fields, header has {len(header)})", item)
            continue
        row = {name: cell.strip() for name, cell in zip(header, cells)}
        if not row["path"]:
            report.skip("malformed row (empty path)", item)
            continue
        item = row["path"]
        try:
            avd = {k: float(row[k]) if row.get(k) else math.nan for k in ("arousal", "valence", "dominance")}
        except ValueError:
            report.skip("malformed row (A/V/D not a number)", item)
            continue
        split = _split(row.get("split"), report, item)
        if split is None:
            continue
        label = row["label"] or None
        if label is not None and classes is not None and label not in classes:
            report.skip("unknown class code", f"{item} ({label!r})")
            continue
        path = Path(row["path"]).expanduser()
        path = path if path.is_absolute() else base / path
        path = path.resolve()
        try:
            default_id = str(path.relative_to(base).with_suffix(""))
        except ValueError:  # outside the CSV folder
            default_id = path.stem
        utt_id = row.get("utt_id") or default_id
        if utt_id in first:
            kept_path, kept_line = first[utt_id]
            if kept_path == row["path"]:
                report.skip("duplicate utt_id", f"{utt_id} (line {line.number}; line {kept_line} kept)")
            else:
                report.skip("two paths share an utt_id (the first row is kept)",
                            f"{utt_id}: {kept_path} kept, {row['path']} skipped")
            continue
        if not audio_usable(path, item, report, check_audio, sample_rate):
            continue
        if label is None:
            report.repair("no class label (kept with label None)", item)
        if row.get("split") == "":
            report.repair("empty split cell (set to Train)", item)
        first[utt_id] = (row["path"], line.number)
        rows.append({"utt_id": utt_id, "path": str(path), "label": label, **avd,
                     "speaker": row.get("speaker") or "unknown",
                     "gender": normalise_gender(row.get("gender"), report, item),
                     "split": split, "transcript": row.get("transcript", "")})
    report.kept = len(rows)
    report.account(csv_path.name, "data lines after the header", len(lines) - 1,
                   {"kept": len(rows), "skipped": report.n_skipped - skipped_before, "blank": blank})
    return make_table(rows), report
