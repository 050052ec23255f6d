"""sercore.robustness (issue 11, Dimensional): perturbations at evaluation and a finished run scored on them.

The evaluation tests train a dimensional run of a few steps on a tiny MSP-layout corpus built in tmp_path."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore import robustness
from sercore.train import train_run

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
FAST = {"max_steps": 3, "eval_every": 1, "n_boot": 20, "progress": False, "device": "cpu", "crop_seconds": 0.5,
        "batch_size": 4}


def _tone(rng, n=8000, rate=16000):
    t = np.arange(n) / rate
    return (0.2 * np.sin(2 * np.pi * rng.uniform(120, 300) * t) * (t < 0.35) + 0.01 * rng.standard_normal(n))


def _corpus(root):
    """Train / Development / Test1 by speakers 0-3, Test2 by speakers 4-5; A/V/D follow the class."""
    rng = np.random.default_rng(0)
    rows = [HEADER]
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    for split, n, speakers in (("Train", 12, (0, 1, 2, 3)), ("Development", 8, (0, 1, 2, 3)),
                               ("Test1", 8, (0, 1, 2, 3)), ("Test2", 6, (4, 5))):
        for i in range(n):
            name = f"MSP-PODCAST_{split}_{i:04d}.wav"
            code = "NHAS"[i % 4]
            avd = {"N": (4, 4, 4), "H": (6, 6, 5), "A": (6, 2, 6), "S": (2, 2, 3)}[code]
            speaker = speakers[i % len(speakers)]
            rows.append(f"{name},{code},{avd[0]},{avd[1]},{avd[2]},{speaker},{('Female', 'Male')[speaker % 2]},"
                        f"{split}")
            sf.write(root / "Audios" / name, _tone(rng).astype(np.float32), 16000)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    corpus = _corpus(tmp_path_factory.mktemp("msp") / "corpus")
    out = tmp_path_factory.mktemp("dim") / "run"
    metrics = train_run("dimensional", corpus, out, profile="smoke", seed=0, **FAST)
    return {**metrics, "out_dir": str(out)}


def _snr_db(clean, noisy):
    clean, noise = clean.astype(np.float64), noisy.astype(np.float64) - clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))


@pytest.mark.parametrize("snr", [20.0, 10.0, 5.0, 0.0])
def test_noise_is_at_the_asked_snr_and_deterministic(snr):
    wave = _tone(np.random.default_rng(1)).astype(np.float32)
    noisy = robustness.perturb(wave, 16000, "snr", snr, seed=3)
    assert abs(_snr_db(wave, noisy) - snr) < 0.1
    assert np.array_equal(noisy, robustness.perturb(wave, 16000, "snr", snr, seed=3))
    assert not np.array_equal(noisy, robustness.perturb(wave, 16000, "snr", snr, seed=4))


@pytest.mark.parametrize("gain", [-6.0, 6.0])
def test_gain_is_exact_and_unclipped(gain):
    wave = (0.9 * np.sin(np.linspace(0, 50, 4000))).astype(np.float32)
    out = robustness.perturb(wave, 16000, "gain", gain)
    np.testing.assert_allclose(out, wave * 10 ** (gain / 20), rtol=1e-6)
    assert abs(10 * np.log10(np.mean(out.astype(np.float64) ** 2) / np.mean(wave.astype(np.float64) ** 2))
               - gain) < 1e-4
    if gain > 0:
        assert np.abs(out).max() > 1.0  # +6 dB on a 0.9 peak: not clipped


def test_bad_perturbations_are_refused():
    wave = np.ones(100, dtype=np.float32)
    with pytest.raises(ValueError, match="kind must be one of"):
        robustness.perturb(wave, 16000, "reverb", 1.0)
    with pytest.raises(ValueError, match="needs a finite value"):
        robustness.perturb(wave, 16000, "snr", None)
    with pytest.raises(ValueError, match="silent"):
        robustness.perturb(np.zeros(100, dtype=np.float32), 16000, "snr", 10.0)
    np.testing.assert_array_equal(robustness.perturb(wave, 16000, "clean"), wave)


def test_a_row_per_perturbation_and_dimension_and_clean_equals_the_run(run):
    asked = robustness.perturbations(snr_db=(20, 0), gain_db=(-6, 6))
    table = robustness.evaluate_perturbed(run, asked, split="Test1", n_boot=20)
    assert len(table) == len(asked) * 3
    assert set(table["metric"]) == {"ccc_arousal", "ccc_valence", "ccc_dominance"}
    assert list(dict.fromkeys(table["perturbation"])) == ["clean", "noise 20 dB SNR", "noise 0 dB SNR",
                                                          "gain -6 dB", "gain +6 dB"]
    clean = table[table["kind"] == "clean"].set_index("metric")
    for metric in clean.index:
        assert clean.loc[metric, "value"] == pytest.approx(run["splits"]["Test1"][metric]["value"], abs=1e-5)
        assert clean.loc[metric, "ci95_low"] <= clean.loc[metric, "value"] <= clean.loc[metric, "ci95_high"]
    assert (table["n"] == 8).all() and (table["seed"] == 0).all()
    assert (clean["change"] == 0).all()
    rows = table.set_index(["perturbation", "metric"])
    for (name, metric), row in rows.iterrows():
        assert row["change"] == pytest.approx(row["value"] - clean.loc[metric, "value"])
        assert row["change_ci95_low"] <= row["change"] + 1e-9 and row["change"] <= row["change_ci95_high"] + 1e-9
    # 0 dB of white noise changes the model's input, so at least one dimension's CCC moves
    loud = table[table["perturbation"] == "noise 0 dB SNR"].set_index("metric")["value"]
    assert (loud - clean["value"]).abs().max() > 1e-4


def test_without_clean_asked_the_changes_are_still_from_clean(run):
    only = robustness.evaluate_perturbed(run, [("gain", -6.0)], n_boot=5)
    both = robustness.evaluate_perturbed(run, [("clean", None), ("gain", -6.0)], n_boot=5)
    assert set(only["perturbation"]) == {"gain -6 dB"}
    pd.testing.assert_frame_equal(only, both[both["kind"] == "gain"].reset_index(drop=True))


def test_summary_over_seeds():
    rows = [{"variant": None, "seed": s, "perturbation": "noise 0 dB SNR", "metric": "ccc_arousal", "value": v,
             "change": c, "change_ci95_low": c - 0.05, "change_ci95_high": c + 0.05}
            for s, v, c in ((0, 0.2, -0.3), (1, 0.3, -0.2), (2, 0.5, 0.01))]
    out = robustness.summary(pd.DataFrame(rows)).iloc[0]
    assert out["seeds"] == 3 and out["mean"] == pytest.approx(1 / 3) and out["sd"] == pytest.approx(0.152753, 1e-5)
    assert out["seeds_lower"] == 2 and out["seeds_higher"] == 0
    assert out["change_mean"] == pytest.approx(-0.49 / 3)


def test_perturbed_features_stay_out_of_the_cache(run, tmp_path):
    """The feature cache holds the clean features only: evaluating perturbations writes no entry."""
    import os

    cache = os.environ["SERCORE_CACHE"]
    before = sorted(os.path.join(p, f) for p, _, files in os.walk(cache) for f in files)
    robustness.evaluate_perturbed(run, [("snr", 5.0)], n_boot=5)
    after = sorted(os.path.join(p, f) for p, _, files in os.walk(cache) for f in files)
    assert before == after


def test_record_writes_rows_and_provenance(run, tmp_path):
    table = robustness.evaluate_perturbed(run, [("clean", None)], n_boot=5)
    path = robustness.record(table, tmp_path / "robustness.json", [run], split="Test1")
    import json

    saved = json.loads(path.read_text())
    assert len(saved["rows"]) == 3 and saved["runs"][0]["data_key"] == run["provenance"]["data_key"]
    assert saved["provenance"]["parameters"] == {"split": "Test1"} and "git_sha" in saved["provenance"]


def test_robustness_curves_one_panel_per_metric(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sercore import plots

    rows = [{"seed": s, "perturbation": p, "kind": k, "metric": m, "value": 0.5, "ci95_low": 0.4, "ci95_high": 0.6}
            for s in (0, 1) for p, k in (("clean", "clean"), ("noise 0 dB SNR", "snr"), ("gain +6 dB", "gain"))
            for m in ("ccc_arousal", "ccc_valence")]
    fig = plots.robustness_curves(pd.DataFrame(rows), path=tmp_path / "curves.png")
    assert len(fig.axes) == 2 and (tmp_path / "curves.png").stat().st_size > 0
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["clean", "noise 0 dB SNR", "gain +6 dB"]
    line = [l for l in fig.axes[0].get_lines() if l.get_label() == "mean over seeds"][0]
    assert list(line.get_xdata()) == [0, 1]  # the line joins clean and the noise levels, not the gains
