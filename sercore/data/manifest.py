"""Plain CSV manifest: the way in for any corpus that is neither MSP-Podcast nor IEMOCAP.

Columns: path, label (required); arousal, valence, dominance, speaker, gender, split, transcript, utt_id
(optional, any order). Relative paths are resolved against the CSV's folder. Defaults when a column is
absent: utt_id = the path relative to the CSV folder without its extension; speaker = "unknown";
split = "Train" (said in the report); A/V/D = NaN; transcript = "". An empty label cell keeps the row
with label None (for corpora with dimensional labels only), counted in the report; with `classes`
given, a label outside it is skipped as an unknown class code.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from sercore.data.audio import SAMPLE_RATE
from sercore.data.report import LoadReport
from sercore.data.table import audio_usable, make_table, normalise_gender

REQUIRED = ("path", "label")
OPTIONAL = ("arousal", "valence", "dominance", "speaker", "gender", "split", "transcript", "utt_id")


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
    rows, seen = [], set()
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ValueError(f"{csv_path}: header lacks {', '.join(missing)} (required: {', '.join(REQUIRED)}; "
                             f"found {','.join(header) or 'nothing'})")
        unknown = [name for name in header if name not in REQUIRED + OPTIONAL]
        if unknown:
            report.note(f"columns ignored: {', '.join(unknown)}")
        if "split" not in header:
            report.note("no split column: every row is in split 'Train'")
        for line_number, cells in enumerate(reader, start=2):
            if not cells or all(not cell.strip() for cell in cells):
                continue
            item = f"line {line_number}"
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
            label = row["label"] or None
            if label is None:
                report.repair("no class label (kept with label None)", item)
            elif classes is not None and label not in classes:
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
            if utt_id in seen:
                report.skip("duplicate utt_id", utt_id)
                continue
            if not audio_usable(path, item, report, check_audio, sample_rate):
                continue
            seen.add(utt_id)
            rows.append({"utt_id": utt_id, "path": str(path), "label": label, **avd,
                         "speaker": row.get("speaker") or "unknown",
                         "gender": normalise_gender(row.get("gender"), report, item),
                         "split": row.get("split") or "Train", "transcript": row.get("transcript", "")})
    report.kept = len(rows)
    return make_table(rows), report
