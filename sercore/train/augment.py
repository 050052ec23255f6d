"""VTLP copies for the area-attention study: more training data by warping the vocal tract length.

Each Train utterance is added `copies` more times with a factor drawn uniformly from [0.8, 1.2], as the
paper augmented whole utterances with nlpaug's VtlpAug (zone (0, 1), coverage 1: the whole wave). The factor
is drawn from (seed, copy, utterance id), so a copy is the same in every run with that seed and its features
come from the cache the second time. How a copy is warped is the `warp` setting (train setting vtlp_warp;
sercore.features.vtlp describes both):

- "nlpaug" (the code's): the wave goes through nlpaug's VTLP (its 0..sr frequency spread, n_fft 2048, no
  phase correction, output cut to a multiple of 512 samples), then the study's log-Mel is computed on the
  warped wave, as the public code wrote warped wav files (vtlpAug.py) and read them back for features.
- "textbook": Jaitly & Hinton's warp over 0..Nyquist applied to the power spectrum of the log-Mel's own STFT
  (log_mel's vtlp_factor), with no trip through the waveform.

A copy whose features cannot be computed (nlpaug leaves no samples of a wave under 512 samples) is left out
and counted in one warning; the original row stays.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd

from sercore.features.vtlp import FACTOR_RANGE, check_warp, vtlp_wave

NLPAUG_VERSION = "vtlp-nlpaug-v1"


def vtlp_factor(seed: int, copy: int, utt_id: str) -> float:
    rng = np.random.default_rng([seed, copy, zlib.crc32(utt_id.encode())])
    return float(rng.uniform(*FACTOR_RANGE))


class NlpaugVtlpLogMel:
    """Encoder: wave -> nlpaug's VTLP with one factor -> the given log-Mel encoder. Its settings (and so its
    cache key) are the log-Mel's plus the warp and the factor."""

    modality = "audio"

    def __init__(self, logmel, factor: float, f_hi: float = 4800.0):
        self.logmel, self.factor, self.f_hi = logmel, float(factor), float(f_hi)
        self.name = logmel.name
        self.sample_rate = logmel.sample_rate
        self.fingerprint = f"{logmel.fingerprint}+{NLPAUG_VERSION}"
        self.settings = {**logmel.settings, "vtlp_wave": {"warp": "nlpaug", "factor": self.factor,
                                                           "f_hi": self.f_hi}}

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        from sercore.features.extraction import FeatureError

        warped = vtlp_wave(wave, self.factor, self.sample_rate, self.f_hi, warp="nlpaug")
        if warped.size == 0:
            raise FeatureError(f"nlpaug's VTLP leaves no samples of a wave of {len(wave)} samples (< 512)",
                               "VTLP copy: wave shorter than 512 samples")
        return self.logmel(warped)


def copy_encoder(encoder, factor: float, warp: str):
    """The encoder of one warped copy: the log-Mel `encoder` with `factor` applied the `warp` way."""
    from sercore.features import make_encoder

    if check_warp(warp) == "nlpaug":
        return NlpaugVtlpLogMel(encoder, factor, encoder.settings.get("vtlp_f_hi", 4800.0))
    return make_encoder("logmel", **{**encoder.settings, "vtlp_factor": factor})


def add_vtlp_copies(table: pd.DataFrame, speech: list, text: list | None, encoder, copies: int, seed: int,
                    cache_dir, progress: bool = True, warp: str = "nlpaug"):
    """(table, speech, text) with `copies` warped copies of every Train row appended (utt_id '<id>#vtlp<k>';
    text features, which VTLP does not change, are shared with the original row)."""
    from tqdm.auto import tqdm

    from sercore.features import extract
    from sercore.progress import bar_disabled

    if copies < 0:
        raise ValueError(f"vtlp_copies must be 0 or more, got {copies}")
    check_warp(warp)
    if copies == 0:
        return table, speech, text
    if getattr(encoder, "name", None) != "logmel":
        raise ValueError(f"VTLP copies are computed on log-Mel features; this model reads {encoder.name!r}")
    train = [i for i, split in enumerate(table["split"]) if split == "Train"]
    new_rows, new_speech, new_text, left_out = [], [], [], []
    jobs = [(copy, i) for copy in range(1, copies + 1) for i in train]
    for copy, i in tqdm(jobs, desc="VTLP copies", unit="utt", disable=bar_disabled(progress)):
        row = table.iloc[i]
        warped = copy_encoder(encoder, vtlp_factor(seed, copy, str(row["utt_id"])), warp)
        try:
            features = extract(table.iloc[[i]], warped, cache_dir, progress=False)
        except ValueError as error:
            if not str(error).startswith("no row could be encoded"):
                raise  # not a failed row: a bug or a bad setting, which must not pass as a skipped copy
            left_out.append(str(error))  # this copy only, counted in the warning below
            continue
        new_speech.append(features[0])
        new_rows.append({**row.to_dict(), "utt_id": f"{row['utt_id']}#vtlp{copy}"})
        if text is not None:
            new_text.append(text[i])
    if left_out:
        warnings.warn(f"{len(left_out)} of {len(jobs)} VTLP copies left out (their originals are kept); "
                      f"e.g. {left_out[0]}", stacklevel=2)
    table = pd.concat([table, pd.DataFrame(new_rows, columns=table.columns)], ignore_index=True)
    return table, list(speech) + new_speech, (list(text) + new_text) if text is not None else None
