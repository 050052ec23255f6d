"""sercore.metrics against values worked out by hand, CCC against its formula, the bootstrap's guarantees."""

import numpy as np
import pytest

from sercore import metrics as M

# Six utterances, three classes:
#   true  0 0 0 1 1 2
#   pred  0 0 1 1 2 2
# confusion (rows true, cols pred):  [[2,1,0],[0,1,1],[0,0,1]]
# class 0: TP 2, FP 0, FN 1 -> P 1,   R 2/3, F1 = 2*2/(2*2+0+1) = 4/5
# class 1: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 = 2/(2+1+1)     = 1/2
# class 2: TP 1, FP 1, FN 0 -> P 1/2, R 1,   F1 = 2/(2+1+0)     = 2/3
# macro-F1 = (4/5 + 1/2 + 2/3) / 3 = 59/90;  WA = 4/6;  UA = (2/3 + 1/2 + 1) / 3 = 13/18
TRUE = [0, 0, 0, 1, 1, 2]
PRED = [0, 0, 1, 1, 2, 2]


def test_classification_metrics_match_hand_computation():
    assert M.macro_f1(TRUE, PRED) == pytest.approx(59 / 90)
    assert M.accuracy(TRUE, PRED) == pytest.approx(4 / 6)
    assert M.balanced_accuracy(TRUE, PRED) == pytest.approx(13 / 18)
    assert M.confusion(TRUE, PRED, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_confusion_keeps_absent_classes_and_report_shape():
    report = M.classification_report(TRUE, PRED, ["a", "b", "c", "d"], n_boot=50, seed=0)
    assert report["confusion"][3] == [0, 0, 0, 0] and len(report["confusion"]) == 4
    assert report["macro_f1"]["value"] == pytest.approx(59 / 90)  # class d never seen nor predicted: not counted
    assert report["n"] == 6 and report["classes"] == ["a", "b", "c", "d"]


def _ccc_by_formula(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
    sx2 = sum((a - mx) ** 2 for a in x) / n
    sy2 = sum((b - my) ** 2 for b in y) / n
    return 2 * sxy / (sx2 + sy2 + (mx - my) ** 2)


def test_ccc_formula_and_known_cases():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = 0.7 * x + rng.normal(scale=0.5, size=50) + 0.3
    assert M.ccc(x, y) == pytest.approx(_ccc_by_formula(x, y), rel=1e-12)
    assert M.ccc(x, x) == pytest.approx(1.0)
    # A constant offset keeps Pearson r = 1 but CCC drops: 2 s^2 / (2 s^2 + d^2).
    s2 = x.var()
    assert M.ccc(x, x + 1.0) == pytest.approx(2 * s2 / (2 * s2 + 1.0))
    assert M.ccc(x, x + 1.0) < 1.0
    centred = x - x.mean()
    assert M.ccc(centred, -centred) == pytest.approx(-1.0)
    assert M.ccc(x, -x) < -0.9
    assert np.isnan(M.ccc([2.0, 2.0], [2.0, 2.0]))


def test_regression_report_has_every_dimension_and_mean():
    rng = np.random.default_rng(2)
    gold = rng.uniform(size=(40, 3))
    pred = gold + rng.normal(scale=0.1, size=(40, 3))
    report = M.regression_report(gold, pred, n_boot=50)
    per_dim = [report[f"ccc_{n}"]["value"] for n in ("arousal", "valence", "dominance")]
    assert report["ccc_mean"]["value"] == pytest.approx(np.mean(per_dim))
    assert per_dim[1] == pytest.approx(M.ccc(gold[:, 1], pred[:, 1]))


def test_bootstrap_ci_contains_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.uniform(size=300) < 0.6, y, rng.integers(0, 4, 300))
    point = M.macro_f1(y, p)
    low, high = M.bootstrap_ci(M.macro_f1, y, p, n_boot=300, seed=7)
    assert low < point < high
    assert high - low < 0.2  # 300 utterances: a few points either side, not the whole range
    assert (low, high) == M.bootstrap_ci(M.macro_f1, y, p, n_boot=300, seed=7)
    assert (low, high) != M.bootstrap_ci(M.macro_f1, y, p, n_boot=300, seed=8)


def test_bootstrap_resamples_rows_jointly():
    # Perfect predictions stay perfect in every resample only if y and p are resampled with the same rows.
    y = np.arange(100) % 5
    assert M.bootstrap_ci(M.accuracy, y, y.copy(), n_boot=100) == (1.0, 1.0)


@pytest.mark.parametrize("n, k_true, k_pred, seed", [(1, 3, 3, 0), (7, 8, 5, 1), (60, 4, 4, 2), (301, 8, 8, 3),
                                                     (250, 2, 6, 4)], ids=lambda v: str(v))
@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "balanced_accuracy"])
def test_bootstrap_from_counts_equals_the_resampling_loop(metric, n, k_true, k_pred, seed):
    """The confusion-count bootstrap (what with_ci runs for class indices) gives bootstrap_ci's interval."""
    from sercore import metrics as M

    fn = getattr(M, metric)
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, k_true, n), rng.integers(0, k_pred, n)
    y_pred[: n // 3] = y_true[: n // 3]  # some agreement, so intervals are not all zero
    loop = M.bootstrap_ci(fn, y_true, y_pred, n_boot=250, seed=seed)
    counts = M.bootstrap_ci_counts(fn, y_true, y_pred, n_boot=250, seed=seed)
    np.testing.assert_allclose(counts, loop, rtol=0, atol=1e-12)
    assert M.with_ci(fn, y_true, y_pred, n_boot=250, seed=seed)["ci95"] == list(counts)
