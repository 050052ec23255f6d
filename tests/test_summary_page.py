"""sercore.results.headline_table, the summary page's table, on hand-built metrics.json files."""

import json

import pytest

from sercore.results import HEADLINES, headline_table

DEMO = "generated demonstration corpus"


def write_run(root, folder, name, metric, values, ci=(0.1, 0.9), finished=True, profile="smoke",
              corpus="/somewhere/data/demo-smoke", kind=DEMO, splits=("Development", "Test1", "Test2")):
    out = root / folder / name
    out.mkdir(parents=True)
    metrics = {"finished": finished, "profile": profile, "corpus": corpus, "corpus_kind": kind,
               "splits": {s: {metric: {"value": v, "ci95": list(ci)}} for s, v in zip(splits, values)}}
    (out / "metrics.json").write_text(json.dumps(metrics))


def test_every_study_appears_and_missing_ones_say_not_run(tmp_path):
    write_run(tmp_path, "accuracy", "softmax-seed0", "macro_f1", [0.5, 0.41, 0.3], ci=(0.3, 0.52))
    table = headline_table(tmp_path)
    assert list(dict.fromkeys(table["page"])) == [page for page, *_ in HEADLINES]
    row = table[table["page"] == "accuracy"].iloc[0]
    # the first test split, that run's own bootstrap interval, the corpus by name and kind, no machine path
    assert (row["variant"], row["split"], row["value"], row["seeds"]) == ("softmax", "Test1", 0.41, 1)
    assert (row["interval"], row["low"], row["high"]) == ("95% CI", 0.3, 0.52)
    assert row["corpus"] == f"demo-smoke ({DEMO})" and "/somewhere" not in table.to_string()
    assert row["profile"] == "smoke"
    others = table[table["page"] != "accuracy"]
    assert set(others["status"]) == {"not run"} and len(others) == len(HEADLINES) - 1


def test_seeds_are_averaged_with_their_range_and_unfinished_runs_left_out(tmp_path):
    for seed, value in [(0, 0.2), (1, 0.4), (2, 0.3)]:
        write_run(tmp_path, "dimensional", f"masked mean-seed{seed}", "ccc_mean", [0.0, value, 0.0])
    write_run(tmp_path, "dimensional", "masked mean-seed3", "ccc_mean", [0.0, 0.99, 0.0], finished=False)
    row = headline_table(tmp_path).set_index("page").loc["dimensional"]
    assert row["seeds"] == 3 and row["value"] == pytest.approx(0.3)
    assert (row["interval"], row["low"], row["high"]) == ("seed range", 0.2, 0.4)


def test_nested_grids_and_layouts_without_test_splits(tmp_path):
    """keysparse keeps a sub-grid (standard/...); an IEMOCAP-style run may have only Train/Development."""
    write_run(tmp_path, "keysparse", "keep 0.5-seed0", "balanced_accuracy", [0.3, 0.35])
    write_run(tmp_path, "keysparse", "standard/keep 0.5-seed0", "balanced_accuracy", [0.6],
              splits=("Development",))
    rows = headline_table(tmp_path).query("page == 'keysparse'").set_index("variant")
    assert rows.loc["keep 0.5", "split"] == "Test1" and rows.loc["keep 0.5", "value"] == 0.35
    assert rows.loc["standard/keep 0.5", "split"] == "Development" and rows.loc["standard/keep 0.5", "value"] == 0.6


def test_a_broken_metrics_file_is_named(tmp_path):
    (tmp_path / "area" / "1x1-seed0").mkdir(parents=True)
    (tmp_path / "area" / "1x1-seed0" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"area/1x1-seed0/metrics.json: not a readable metrics.json"):
        headline_table(tmp_path)


def test_a_run_without_the_headline_metric_is_named(tmp_path):
    write_run(tmp_path, "multitask", "lambda 1.0-seed0", "macro_f1", [0.2, 0.3])
    with pytest.raises(ValueError, match=r"multitask: run 'lambda 1.0' has no balanced_accuracy on Test1"):
        headline_table(tmp_path)
