"""Splitting a whole number of utterances among classes or splits in given proportions."""

from __future__ import annotations

import numpy as np


def largest_remainder(weights: dict[str, float], total: int, minimum: int = 0) -> dict[str, int]:
    """Integer counts proportional to `weights` summing to `total`: floors first, then one more each for
    the largest fractional parts. Each key gets at least `minimum` when total allows it."""
    keys = list(weights)
    norm = sum(weights.values())
    raw = np.array([weights[k] / norm * total for k in keys])
    counts = np.floor(raw).astype(int)
    if total >= minimum * len(keys):
        counts = np.maximum(counts, minimum)
    for i in np.argsort(-(raw - np.floor(raw)), kind="stable"):
        if counts.sum() >= total:
            break
        counts[i] += 1
    while counts.sum() > total:  # the minimum may have overshot: take back from the largest
        counts[np.argmax(counts)] -= 1
    return dict(zip(keys, counts.tolist()))
