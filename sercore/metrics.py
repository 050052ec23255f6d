"""Evaluation metrics for the five studies, with percentile-bootstrap confidence intervals.

Classification (class indices): macro-F1, accuracy (WA, weighted accuracy = plain accuracy),
balanced accuracy (UA, unweighted accuracy = mean per-class recall) and the confusion matrix, all from
scikit-learn. Macro-F1 averages over the classes that occur in y_true or y_pred (scikit-learn's default,
which is what the MSP-Podcast challenge scripts report); a class never seen nor predicted does not count.

Regression: Lin's concordance correlation coefficient (CCC), per dimension and averaged.

Confidence intervals: the percentile bootstrap over utterances. Draw n_boot resamples of the rows with
replacement (numpy Generator seeded by `seed`), recompute the metric on each, and take the 2.5 and
97.5 percentiles of those values (for level 0.95). Resamples on which a metric is undefined (NaN, e.g. a
CCC of a constant column) are left out of the percentiles.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

AVD = ("arousal", "valence", "dominance")


def macro_f1(y_true, y_pred) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def accuracy(y_true, y_pred) -> float:
    """WA: the fraction of utterances classified correctly."""
    return float(accuracy_score(y_true, y_pred))


def balanced_accuracy(y_true, y_pred) -> float:
    """UA: the mean over the classes in y_true of each class's recall (a predicted class absent from y_true
    has no recall and does not count; scikit-learn's warning about it is expected here and silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] counts; row = true class, column = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def ccc(x, y) -> float:
    """Lin's concordance correlation coefficient between x (e.g. gold) and y (e.g. predictions):

        CCC = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)

    with population (1/n) variances s_x^2, s_y^2 and covariance s_xy. It is 1 only for y == x, drops
    below the Pearson correlation for any shift or scale difference, and is -1 for y == -x around a
    common mean of 0. NaN when the denominator is 0 (both inputs the same constant)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"ccc needs two 1-D arrays of equal length, got shapes {x.shape} and {y.shape}")
    mean_x, mean_y = x.mean(), y.mean()
    covariance = np.mean((x - mean_x) * (y - mean_y))
    denominator = x.var() + y.var() + (mean_x - mean_y) ** 2
    if denominator == 0:
        return float("nan")
    return float(2.0 * covariance / denominator)


def bootstrap_ci(metric: Callable[..., float], *columns, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of metric(*columns) over rows (utterances); see the module docstring.

    All columns are resampled with the same row indices. Deterministic for a given seed."""
    arrays = [np.asarray(c) for c in columns]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci: all columns must have the same number of rows")
    if n == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n, size=n)
        values[b] = metric(*(a[rows] for a in arrays))
    return percentile_interval(values, level)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of the finite resampled values (nan, nan when none is finite)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def bootstrap_rows(n: int, n_boot: int, seed: int = 0):
    """The resampled rows bootstrap_ci draws, in its order: blocks of [<= 100 resamples, n] indices (blocks keep
    the memory at 100 x n whatever n_boot is)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, 100):
        yield np.stack([rng.integers(0, n, size=n) for _ in range(min(100, n_boot - start))])


def confusion_counts(y_true, y_pred, rows, n_classes: int) -> np.ndarray:
    """[R, K, K] confusion counts (row true, column predicted) of R resamples rows [R, n] at once."""
    r = rows.shape[0]
    cells = (np.arange(r)[:, None] * n_classes + y_true[rows]) * n_classes + y_pred[rows]
    return np.bincount(cells.ravel(), minlength=r * n_classes * n_classes).reshape(r, n_classes, n_classes)


def _macro_f1_counts(c: np.ndarray) -> np.ndarray:
    """macro_f1 per resample: F1 = 2 TP / (2 TP + FP + FN) averaged over the classes in y_true or y_pred."""
    tp = np.einsum("rkk->rk", c).astype(np.float64)
    true, pred = c.sum(2), c.sum(1)
    present = (true + pred) > 0
    f1 = np.divide(2 * tp, true + pred, out=np.zeros_like(tp), where=present)
    return f1.sum(1) / present.sum(1)


def _accuracy_counts(c: np.ndarray) -> np.ndarray:
    return np.einsum("rkk->r", c) / c.sum((1, 2))


def _balanced_accuracy_counts(c: np.ndarray) -> np.ndarray:
    """balanced_accuracy per resample: mean recall over the classes in y_true."""
    tp, support = np.einsum("rkk->rk", c).astype(np.float64), c.sum(2)
    seen = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=seen)
    return recall.sum(1) / seen.sum(1)


# The classification metrics computed from confusion counts, all resamples at once: the same numbers as
# bootstrap_ci's loop (tests compare them) without 1000 scikit-learn calls per metric and split, which were
# 5 s per split of a default-profile run (benchmarks/cpu_speedups.py).
FROM_COUNTS = {macro_f1: _macro_f1_counts, accuracy: _accuracy_counts, balanced_accuracy: _balanced_accuracy_counts}


def bootstrap_ci_counts(metric: Callable[..., float], y_true, y_pred, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """bootstrap_ci(metric, y_true, y_pred) for a metric of FROM_COUNTS on class indices >= 0: the same
    resamples (bootstrap_rows), each metric from its confusion counts."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n = len(y_true)
    if n == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    k = int(max(y_true.max(), y_pred.max())) + 1
    values = np.concatenate([FROM_COUNTS[metric](confusion_counts(y_true, y_pred, rows, k))
                             for rows in bootstrap_rows(n, n_boot, seed)])
    return percentile_interval(values, level)


def bootstrap_seed_means(metric: Callable[..., float], seeds: Sequence[Sequence], n: int, n_boot: int = 1000,
                         seed: int = 0) -> np.ndarray:
    """The mean over seeds of metric(*columns) on each of n_boot resamples of n shared rows: `seeds` holds one
    list of columns per seed (the same utterances in the same order), every seed resampled with the same rows
    (bootstrap_rows). For the interval of a seed mean: percentile_interval of the result. A classification
    metric of FROM_COUNTS on (gold, predicted) labels of any type is computed from confusion counts, all
    resamples at once (the same numbers as calling it per resample)."""
    if n_boot <= 0:
        return np.empty(0)
    if metric in FROM_COUNTS and all(len(columns) == 2 for columns in seeds):
        names = sorted({str(x) for columns in seeds for column in columns for x in column})
        code = {name: i for i, name in enumerate(names)}
        coded = [[np.array([code[str(x)] for x in column], dtype=np.int64) for column in columns]
                 for columns in seeds]
        return np.concatenate([np.mean([FROM_COUNTS[metric](confusion_counts(gold, pred, rows, len(names)))
                                        for gold, pred in coded], axis=0) for rows in bootstrap_rows(n, n_boot, seed)])
    arrays = [[np.asarray(column) for column in columns] for columns in seeds]
    return np.concatenate([[np.mean([metric(*(c[pick] for c in columns)) for columns in arrays]) for pick in rows]
                           for rows in bootstrap_rows(n, n_boot, seed)])


def with_ci(metric: Callable[..., float], *columns, n_boot: int = 1000, seed: int = 0) -> dict:
    """{"value": metric(*columns), "ci95": [low, high]} with the bootstrap interval of bootstrap_ci
    (bootstrap_ci_counts for a FROM_COUNTS metric on two columns of class indices >= 0)."""
    counted = metric in FROM_COUNTS and len(columns) == 2 and all(
        np.issubdtype(np.asarray(c).dtype, np.integer) and (np.asarray(c) >= 0).all() for c in columns)
    interval = bootstrap_ci_counts if counted else bootstrap_ci
    low, high = interval(metric, *columns, n_boot=n_boot, seed=seed)
    return {"value": float(metric(*columns)), "ci95": [low, high]}


def classification_report(y_true, y_pred, classes: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """macro_f1, accuracy (WA) and balanced_accuracy (UA), each {"value", "ci95"}, plus the confusion
    matrix (rows true, columns predicted, in the order of `classes`) and n."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    report = {name: with_ci(fn, y_true, y_pred, n_boot=n_boot, seed=seed)
              for name, fn in (("macro_f1", macro_f1), ("accuracy", accuracy),
                               ("balanced_accuracy", balanced_accuracy))}
    report["confusion"] = confusion(y_true, y_pred, len(classes)).tolist()
    report["classes"] = list(classes)
    report["n"] = int(len(y_true))
    return report


def regression_report(gold, pred, names: Sequence[str] = AVD, n_boot: int = 1000, seed: int = 0) -> dict:
    """ccc_<name> per column of gold/pred [N, D] and ccc_mean (their average), each {"value", "ci95"}."""
    gold = np.asarray(gold, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gold.shape != pred.shape or gold.ndim != 2 or gold.shape[1] != len(names):
        raise ValueError(f"regression_report needs gold and pred of shape [N, {len(names)}], "
                         f"got {gold.shape} and {pred.shape}")
    report = {f"ccc_{name}": with_ci(ccc, gold[:, d], pred[:, d], n_boot=n_boot, seed=seed)
              for d, name in enumerate(names)}
    report["ccc_mean"] = with_ci(ccc_mean, gold, pred, n_boot=n_boot, seed=seed)
    report["n"] = int(len(gold))
    return report


def ccc_mean(gold, pred) -> float:
    """Mean over columns of the CCC of gold[:, d] and pred[:, d]."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    return float(np.mean([ccc(gold[:, d], pred[:, d]) for d in range(gold.shape[1])]))
