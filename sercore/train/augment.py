"""VTLP copies for the area-attention study: more training data by warping the vocal tract length.

Each Train utterance is added `copies` more times, its log-Mel computed from the power spectrum warped by a
factor drawn uniformly from [0.8, 1.2] (sercore.features.vtlp), as the paper augmented whole utterances with
nlpaug's VtlpAug. The factor is drawn from (seed, copy, utterance id), so a copy is the same in every run with
that seed and its features come from the cache the second time.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

FACTOR_RANGE = (0.8, 1.2)


def vtlp_factor(seed: int, copy: int, utt_id: str) -> float:
    rng = np.random.default_rng([seed, copy, zlib.crc32(utt_id.encode())])
    return float(rng.uniform(*FACTOR_RANGE))


def add_vtlp_copies(table: pd.DataFrame, speech: list, text: list | None, encoder, copies: int, seed: int,
                    cache_dir, progress: bool = True):
    """(table, speech, text) with `copies` warped copies of every Train row appended (utt_id '<id>#vtlp<k>';
    text features, which VTLP does not change, are shared with the original row)."""
    from tqdm.auto import tqdm

    from sercore.features import extract, make_encoder
    from sercore.progress import bar_disabled

    if copies < 0:
        raise ValueError(f"vtlp_copies must be 0 or more, got {copies}")
    if copies == 0:
        return table, speech, text
    if getattr(encoder, "name", None) != "logmel":
        raise ValueError(f"VTLP copies are computed on log-Mel features; this model reads {encoder.name!r}")
    train = [i for i, split in enumerate(table["split"]) if split == "Train"]
    new_rows, new_speech, new_text = [], [], []
    jobs = [(copy, i) for copy in range(1, copies + 1) for i in train]
    for copy, i in tqdm(jobs, desc="VTLP copies", unit="utt", disable=bar_disabled(progress)):
        row = table.iloc[i]
        factor = vtlp_factor(seed, copy, str(row["utt_id"]))
        warped = make_encoder("logmel", **{**encoder.settings, "vtlp_factor": factor})
        new_speech.append(extract(table.iloc[[i]], warped, cache_dir, progress=False)[0])
        new_rows.append({**row.to_dict(), "utt_id": f"{row['utt_id']}#vtlp{copy}"})
        if text is not None:
            new_text.append(text[i])
    table = pd.concat([table, pd.DataFrame(new_rows, columns=table.columns)], ignore_index=True)
    return table, list(speech) + new_speech, (list(text) + new_text) if text is not None else None
