"""The utterance table every loader returns, and the audio check they share.

Columns, in this order (the contract between sercore.data and the rest of the library):
    utt_id (unique str), path (absolute wav path), label (class code or None), arousal, valence,
    dominance (float on the corpus's own scale, NaN when absent), speaker (str), gender ("Female",
    "Male" or None), split (str), transcript (str, "" when absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sercore.data.audio import SAMPLE_RATE, AudioError, inspect_audio
from sercore.data.report import LoadReport

COLUMNS = ("utt_id", "path", "label", "arousal", "valence", "dominance", "speaker", "gender", "split",
           "transcript")
GENDERS = {"female": "Female", "f": "Female", "male": "Male", "m": "Male"}


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
    unreadable or empty audio fails, another sample rate or several channels are counted as repaired
    (read_audio resamples / averages them when the file is read)."""
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
