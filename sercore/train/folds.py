"""Leave-one-session-out IEMOCAP: one training run per fold, then the mean and spread across folds.

    train_folds("fusion", "/data/IEMOCAP", "runs/fusion-folds", folds=[1, 2, 3, 4, 5], profile="default")
    python -m sercore train --study fusion --corpus /data/IEMOCAP --out runs/fusion-folds --folds 1-5

Each fold is an ordinary sercore.train.run.train_run into out_dir/fold<k> (reused when finished, resumed when
interrupted); out_dir/folds.json holds per split and metric the mean, std, min and max over the folds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sercore.provenance import atomic_write_json
from sercore.train import distributed
from sercore.train.run import _normalise, train_run


PER_FOLD_KEYS = ("fold", "test_session", "train_sessions", "dev_session")


def parse_folds(text: str) -> list[int]:
    """"1-5" -> [1, 2, 3, 4, 5]; "1,3" -> [1, 3]; ValueError for anything outside IEMOCAP's folds 1..5."""
    folds = []
    for part in str(text).split(","):
        first, dash, last = part.strip().partition("-")
        try:
            folds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        except ValueError:
            raise ValueError(f"--folds {text!r}: expected a range or list of folds such as 1-5 or 1,3") from None
    if not folds or len(set(folds)) != len(folds) or not set(folds) <= {1, 2, 3, 4, 5}:
        raise ValueError(f"--folds {text!r}: expected distinct IEMOCAP folds among 1..5 (e.g. 1-5)")
    return folds


def train_folds(study: str, corpus, out_dir, folds=(1, 2, 3, 4, 5), **kwargs) -> dict:
    """train_run once per IEMOCAP fold, into out_dir/fold<k>, then out_dir/folds.json: per split and metric
    the mean, std (sample standard deviation, ddof=1; 0 for one fold), min and max of the fold values, and
    each fold's value and metrics.json. kwargs go to train_run; a corpus.fold override is refused."""
    from sercore.data.corpus import detect_layout

    if "corpus.fold" in kwargs:
        raise ValueError("--folds runs the folds itself: drop corpus.fold")
    corpus, out_dir = Path(corpus).resolve(), Path(out_dir)
    if detect_layout(corpus) != "iemocap":
        raise ValueError(f"{corpus}: folds are IEMOCAP's sessions; this corpus is not in the IEMOCAP layout")
    runs = {}
    for fold in folds:
        runs[fold] = train_run(study, corpus, out_dir / f"fold{fold}", **{**kwargs, "corpus.fold": fold})
    values: dict = {}
    for fold, metrics in runs.items():
        for split, report in metrics["splits"].items():
            for name, entry in report.items():
                if isinstance(entry, dict) and isinstance(entry.get("value"), (int, float)):
                    values.setdefault(split, {}).setdefault(name, {})[fold] = float(entry["value"])
    summary = {split: {name: _spread(per_fold) for name, per_fold in by_name.items()}
               for split, by_name in values.items()}
    first = next(iter(runs.values()))
    out = _normalise({"study": study, "corpus": str(corpus), "folds": list(folds),
                      # what the folds share (dev, like, dev_fraction, ...): the sessions differ per fold
                      "protocol": {k: v for k, v in first.get("protocol", {}).items() if k not in PER_FOLD_KEYS},
                      "selection_split": first["selection"]["split"], "splits": summary,
                      "runs": {f"fold{fold}": str(out_dir / f"fold{fold}" / "metrics.json") for fold in runs}})
    if distributed.world_from_env().is_main:  # under torchrun, rank 0 alone writes files
        atomic_write_json(out_dir / "folds.json", out)
    return out


def _spread(per_fold: dict) -> dict:
    """mean, std (ddof=1; 0 for one value), min, max of the per-fold values, and the values by fold."""
    array = np.array(list(per_fold.values()), dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()), "max": float(array.max()), "n": len(array),
            "by_fold": {f"fold{fold}": value for fold, value in per_fold.items()}}
