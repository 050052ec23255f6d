"""The multitask model's gender head (issue 11, Multitask): its predictions are saved by the run, come from
the checkpoint's head, and are scored on speakers seen in Train against unseen ones (sercore.by_speaker).
Also the per-speaker spread of sercore.by_speaker.spread. Runs train a few steps on a tiny MSP-layout corpus
built in tmp_path (tests/test_robustness.py's builder: Train-Test1 speakers 0-3, Test2 speakers 4-5)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_robustness import FAST, HEADER, _corpus

from sercore import by_speaker, robustness
from sercore.train import train_run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("msp") / "corpus")


@pytest.fixture(scope="module")
def multitask(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("mt") / "run"
    metrics = train_run("multitask", corpus, out, profile="smoke", seed=0, **{**FAST, "model.gender_weight": 1.0})
    return {**metrics, "out_dir": str(out)}


def test_run_saves_gender_predictions_of_every_scored_utterance(multitask):
    predictions = pd.read_csv(Path(multitask["out_dir"]) / "predictions.csv")
    assert set(predictions["pred_gender"]) <= {"Female", "Male"}
    assert predictions["pred_gender"].notna().all()
    assert set(predictions["split"]) == {"Development", "Test1", "Test2"}
    assert "gender_accuracy" in multitask["splits"]["Test1"]


def test_gender_predictions_come_from_the_checkpoint_head(multitask):
    """Recomputed from checkpoints/best.pt (robustness.evaluate_perturbed, clean audio), the gender accuracy
    is the one the run recorded."""
    table = robustness.evaluate_perturbed(multitask, [("clean", None)], split="Test2", n_boot=10)
    gender = table.set_index("metric").loc["gender_accuracy", "value"]
    assert gender == pytest.approx(multitask["splits"]["Test2"]["gender_accuracy"]["value"])


def test_seen_and_unseen_speakers_are_told_apart(multitask, corpus):
    table = by_speaker.gender_seen_unseen(multitask, n_boot=20)
    assert set(zip(table["split"], table["speakers"])) == {("Development", "seen"), ("Test1", "seen"),
                                                         ("Test2", "unseen")}
    row = table.set_index(["split", "speakers"]).loc[("Test2", "unseen")]
    assert row["n"] == 6 and row["n_speakers"] == 2
    predictions = pd.read_csv(Path(multitask["out_dir"]) / "predictions.csv")
    labels = pd.read_csv(corpus / "Labels" / "labels_consensus.csv")
    labels["utt_id"] = labels["FileName"].str.removesuffix(".wav")
    test2 = predictions[predictions["split"] == "Test2"].merge(labels, on="utt_id")
    assert row["gender_accuracy"] == pytest.approx((test2["pred_gender"] == test2["Gender"]).mean())
    assert row["ci95_low"] <= row["gender_accuracy"] <= row["ci95_high"]


def test_no_gender_head_is_refused(multitask, tmp_path):
    fake = tmp_path / "run"
    fake.mkdir()
    predictions = pd.read_csv(Path(multitask["out_dir"]) / "predictions.csv").drop(columns="pred_gender")
    predictions.to_csv(fake / "predictions.csv", index=False)
    with pytest.raises(ValueError, match="no pred_gender column"):
        by_speaker.gender_seen_unseen({**multitask, "out_dir": str(fake)})


def test_seed_summary_of_seen_and_unseen(multitask, tmp_path):
    """Two seeds of one variant (the run and a copy with every Test2 gender prediction flipped): the mean, min,
    max of the seeds' accuracies, and the interval of the seed mean from the same resamples for both seeds."""
    predictions = pd.read_csv(Path(multitask["out_dir"]) / "predictions.csv")
    flipped = predictions.copy()
    test2 = flipped["split"] == "Test2"
    flipped.loc[test2, "pred_gender"] = flipped.loc[test2, "pred_gender"].map({"Female": "Male", "Male": "Female"})
    (tmp_path / "seed1").mkdir()
    flipped.to_csv(tmp_path / "seed1" / "predictions.csv", index=False)
    first = {**multitask, "variant": "lambda 1.0"}
    second = {**first, "out_dir": str(tmp_path / "seed1"), "provenance": {**multitask["provenance"], "seed": 1}}
    table = by_speaker.gender_seen_unseen_summary([first, second], n_boot=200).set_index(["split", "speakers"])
    row, single = table.loc[("Test2", "unseen")], by_speaker.gender_seen_unseen(first, n_boot=10)
    accuracy = single.set_index(["split", "speakers"]).loc[("Test2", "unseen"), "gender_accuracy"]
    assert row["n_seeds"] == 2 and row["mean"] == pytest.approx(0.5)  # a seed and its flip average to one half
    assert (row["min"], row["max"]) == pytest.approx(tuple(sorted((accuracy, 1 - accuracy))))
    assert row["ci95_low"] == pytest.approx(0.5) and row["ci95_high"] == pytest.approx(0.5)  # so does every resample
    seen = table.loc[("Test1", "seen")]
    assert seen["min"] == seen["max"] and seen["ci95_low"] <= seen["mean"] <= seen["ci95_high"]
    flipped[~test2].to_csv(tmp_path / "seed1" / "predictions.csv", index=False)  # seed 1 lost its Test2 rows
    with pytest.raises(ValueError, match="other Test2 utterances"):
        by_speaker.gender_seen_unseen_summary([first, second], n_boot=10)


def _labels_only_corpus(root, n_per_speaker=10, speakers=4):
    """An MSP-layout corpus with Test1 rows of `speakers` speakers and 10 ms of audio each (never read)."""
    (root / "Labels").mkdir(parents=True)
    (root / "Audios").mkdir()
    rows = [HEADER]
    for s in range(speakers):
        for i in range(n_per_speaker):
            sf.write(root / "Audios" / f"MSP-PODCAST_{s}_{i:04d}.wav", np.full(160, 0.1, np.float32), 16000)
            rows.append(f"MSP-PODCAST_{s}_{i:04d}.wav,{'NHAS'[i % 4]},4,4,4,{s},{('Female', 'Male')[s % 2]},Test1")
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")
    labels = pd.read_csv(root / "Labels" / "labels_consensus.csv")
    return root, labels.assign(utt_id=labels["FileName"].str.removesuffix(".wav"))


def test_spread_separates_speaker_effects_from_sampling(tmp_path):
    """Predictions rigged so speaker 0's utterances are all wrong and the others' all right: a spread far
    above the permutation null (small p); errors spread at random over the speakers: p not small."""
    corpus, labels = _labels_only_corpus(tmp_path / "corpus")
    wrong = {"N": "H", "H": "A", "A": "S", "S": "N"}
    rng = np.random.default_rng(0)
    rigged = np.where(labels["SpkrID"] == 0, labels["EmoClass"].map(wrong), labels["EmoClass"])
    scattered = np.where(rng.permutation(labels["SpkrID"] == 0), labels["EmoClass"].map(wrong), labels["EmoClass"])
    runs = []
    for name, pred in (("rigged", rigged), ("scattered", scattered)):
        folder = tmp_path / name
        folder.mkdir()
        pd.DataFrame({"utt_id": labels["utt_id"], "split": "Test1", "label": labels["EmoClass"],
                      "pred": pred}).to_csv(folder / "predictions.csv", index=False)
        runs.append({"out_dir": str(folder), "corpus": str(corpus), "task": "classification", "variant": name,
                     "provenance": {"seed": 0}})
    table = by_speaker.spread(runs, split="Test1", n_perm=300)
    ua = table[table["metric"] == "balanced_accuracy"].set_index("variant")
    assert ua.loc["rigged", "groups"] == 4 and ua.loc["rigged", "min"] == 0.0 and ua.loc["rigged", "max"] == 1.0
    assert ua.loc["rigged", "p"] < 0.01
    assert ua.loc["scattered", "p"] > 0.05
    assert ua.loc["scattered", "sd"] < ua.loc["rigged", "sd"]


def test_spread_needs_two_groups_of_min_n(tmp_path):
    corpus, labels = _labels_only_corpus(tmp_path / "corpus", n_per_speaker=2)
    folder = tmp_path / "run"
    folder.mkdir()
    pd.DataFrame({"utt_id": labels["utt_id"], "split": "Test1", "label": labels["EmoClass"],
                  "pred": labels["EmoClass"]}).to_csv(folder / "predictions.csv", index=False)
    run = {"out_dir": str(folder), "corpus": str(corpus), "task": "classification", "provenance": {"seed": 0}}
    with pytest.raises(ValueError, match="fewer than two speaker groups with >= 3 Test1 utterances"):
        by_speaker.spread(run)


def test_ranking_sentence_follows_seeds_and_intervals():
    from sercore.results import ranking

    def summary(n_seeds, b_low):
        return pd.DataFrame([
            {"variant": "a", "split": "Test1", "n_seeds": n_seeds, "mean": 0.6, "ci95_low": 0.55, "ci95_high": 0.65},
            {"variant": "b", "split": "Test1", "n_seeds": n_seeds, "mean": 0.4, "ci95_low": b_low, "ci95_high": 0.45}])

    assert "Intervals do not overlap, so ranked: a vs b" in ranking(summary(3, 0.35), "Test1")
    assert "Intervals overlap, so not ranked: a vs b" in ranking(summary(3, 0.35).assign(ci95_high=0.6), "Test1")
    assert "single-seed observation" in ranking(summary(1, 0.35), "Test1")
    assert "few-seed observation" in ranking(summary(2, 0.35), "Test1")
    assert "order a (0.600) > b (0.400)" in ranking(summary(1, 0.35), "Test1")
    tie = ranking(summary(1, 0.35).assign(mean=0.125), "Test1")
    assert "a (0.125) = b (0.125)" in tie and ">" not in tie  # equal means are no order


def test_seed_bars_draw_a_bar_per_variant_and_split(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sercore import plots

    summary = pd.DataFrame([{"variant": v, "split": s, "n_seeds": 3, "mean": 0.5, "min": 0.4, "max": 0.6,
                             "ci95_low": 0.45, "ci95_high": 0.55} for v in ("lambda 0", "lambda 1")
                            for s in ("Test1", "Test2")])
    fig = plots.seed_bars(summary, chance=0.125, path=tmp_path / "bars.png")
    assert len(fig.axes[0].patches) == 4 and (tmp_path / "bars.png").stat().st_size > 0
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == {"lambda 0 (3 seeds)",
                                                                             "lambda 1 (3 seeds)", "chance"}


def _gender(seen, unseen):
    """A gender_seen_unseen_summary-shaped table: (mean, low, high) of Test1 seen and Test2 unseen."""
    return pd.DataFrame([{"variant": "v", "split": "Test1", "speakers": "seen", "mean": seen[0], "ci95_low": seen[1],
                          "ci95_high": seen[2]},
                         {"variant": "v", "split": "Test2", "speakers": "unseen", "mean": unseen[0],
                          "ci95_low": unseen[1], "ci95_high": unseen[2]}])


def _noisy(mean, lower, seeds=3):
    return pd.DataFrame([{"variant": "v", "perturbation": "clean", "mean": 1.0, "seeds": seeds, "seeds_lower": 0},
                         {"variant": "v", "perturbation": "noise 10 dB SNR", "mean": mean, "seeds": seeds,
                          "seeds_lower": lower}])


@pytest.mark.parametrize("gender,noisy,reading", [
    (_gender((1.0, 1.0, 1.0), (0.5, 0.45, 0.55)), _noisy(0.50, 3), "cannot tell unseen voices from noise"),
    (_gender((1.0, 0.99, 1.0), (0.5, 0.45, 0.55)), _noisy(0.99, 0), "it learned the training voices"),
    (_gender((0.51, 0.45, 0.57), (0.49, 0.46, 0.52)), _noisy(0.52, 0), "not told apart"),
    (_gender((1.0, 0.99, 1.0), (0.5, 0.45, 0.55)), _noisy(0.8, 2), "mixed"),
])
def test_seen_unseen_reading(gender, noisy, reading):
    line, = by_speaker.seen_unseen_reading(gender, noisy)
    assert line.startswith("v: seen speakers (Test1)") and reading in line
