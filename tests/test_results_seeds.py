"""results.seed_summary: mean and spread over seeds, bootstrap interval of the seed mean, shared utterances."""

import numpy as np
import pandas as pd
import pytest

from sercore import results


def _run(tmp_path, name, seed, labels, preds, split="Test1", ids=None):
    out = tmp_path / f"{name}-seed{seed}"
    out.mkdir()
    ids = ids or [f"u{i:03d}" for i in range(len(labels))]
    pd.DataFrame({"utt_id": ids, "split": split, "label": labels, "pred": preds}).to_csv(out / "predictions.csv",
                                                                                         index=False)
    return {"variant": name, "out_dir": str(out), "provenance": {"seed": seed}}


def test_mean_spread_and_interval(tmp_path):
    rng = np.random.default_rng(0)
    labels = list(rng.choice(list("ABCD"), size=200))
    runs = []
    for seed, noise in enumerate((0.2, 0.4, 0.6)):  # three seeds of decreasing quality
        preds = [y if rng.random() > noise else rng.choice(list("ABCD")) for y in labels]
        runs.append(_run(tmp_path, "m", seed, labels, preds))
    table = results.seed_summary(runs, "balanced_accuracy", n_boot=200)
    row = table.iloc[0]
    assert row["n_seeds"] == 3 and row["n"] == 200
    per_seed = [results._metric_fn("balanced_accuracy")[0](np.array(labels), pd.read_csv(r["out_dir"] + "/predictions.csv")["pred"].to_numpy()) for r in runs]
    assert row["mean"] == pytest.approx(np.mean(per_seed))
    assert row["sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["min"] < row["mean"] < row["max"]
    assert row["ci95_low"] < row["mean"] < row["ci95_high"]


def test_perfect_and_chance_variants_separate(tmp_path):
    labels = list("ABCD" * 50)
    good = [_run(tmp_path, "good", s, labels, labels) for s in range(3)]
    bad = [_run(tmp_path, "bad", s, labels, ["A"] * 200) for s in range(3)]
    table = results.seed_summary(good + bad, "balanced_accuracy", n_boot=100).set_index("variant")
    assert table.loc["good", "mean"] == 1.0 and table.loc["good", "ci95_low"] == 1.0
    assert table.loc["bad", "mean"] == pytest.approx(0.25)


def test_seeds_on_other_utterances_refused(tmp_path):
    a = _run(tmp_path, "m", 0, list("AB"), list("AB"))
    b = _run(tmp_path, "m", 1, list("AB"), list("AB"), ids=["x", "y"])
    with pytest.raises(ValueError, match="other Test1 utterances"):
        results.seed_summary([a, b], "macro_f1", n_boot=10)


def test_regression_metric_and_unknown(tmp_path):
    out = tmp_path / "d-seed0"
    out.mkdir()
    gold = np.linspace(0, 1, 50)
    frame = {"utt_id": [f"u{i}" for i in range(50)], "split": "Test1"}
    for name in ("arousal", "valence", "dominance"):
        frame[name], frame[f"pred_{name}"] = gold, gold
    pd.DataFrame(frame).to_csv(out / "predictions.csv", index=False)
    run = {"variant": "d", "out_dir": str(out)}
    assert results.seed_summary([run], "ccc_mean", n_boot=20).iloc[0]["mean"] == pytest.approx(1.0)
    assert results.seed_summary([run], "ccc_valence", n_boot=20).iloc[0]["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        results.seed_summary([run], "rmse")


@pytest.mark.parametrize("metric", ["macro_f1", "balanced_accuracy", "accuracy"])
def test_interval_from_counts_equals_the_per_resample_loop(tmp_path, metric):
    """The interval computed from confusion counts is the one the metric gives resample by resample: same
    draws for every seed, seed mean per draw, 2.5 and 97.5 percentiles (a predicted class absent from the
    labels, "E", and a label never predicted, "D", included)."""
    rng = np.random.default_rng(1)
    labels = list(rng.choice(list("ABCD"), size=120))
    runs, preds = [], []
    for seed in range(3):
        preds.append([y if rng.random() > 0.5 else rng.choice(list("ABCE")) for y in labels])
        runs.append(_run(tmp_path, "m", seed, labels, preds[-1]))
    row = results.seed_summary(runs, metric, n_boot=150, seed=4).iloc[0]
    fn = results._metric_fn(metric)[0]
    y, draws = np.array(labels), np.random.default_rng(4)
    boots = []
    for _ in range(150):
        pick = draws.integers(0, len(labels), size=len(labels))
        boots.append(np.mean([fn(y[pick], np.array(p)[pick]) for p in preds]))
    low, high = np.percentile(boots, [2.5, 97.5])
    assert row["ci95_low"] == pytest.approx(low, abs=1e-12) and row["ci95_high"] == pytest.approx(high, abs=1e-12)
