"""The trade-off figure (sercore.tradeoff + plots.tradeoff) and the two-variant reading (results.compare)."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from sercore import plots, results, tradeoff

MECHANISMS = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")


def gpu_table():
    """The GPU check's schema: forward and train rows at 100 and 400 s, two protocols; kda runs out of memory
    at 400 s in the paper protocol."""
    rows = []
    for i, name in enumerate(MECHANISMS):
        for protocol in ("paper", "tuned"):
            for direction in ("forward", "train"):
                for seconds in (100.0, 400.0):
                    oom = name == "kda" and seconds == 400 and protocol == "paper"
                    ms = math.nan if oom else (i + 1) * seconds / 10 + (protocol == "tuned") + (direction == "train")
                    rows.append({"mechanism": name, "protocol": protocol, "direction": direction, "seconds": seconds,
                                 "tokens": int(seconds * 50) + 32, "dtype": "float32", "median_ms": ms,
                                 "p20_ms": ms * 0.9, "p80_ms": ms * 1.1,
                                 "peak_mem_mb": math.nan if oom else 100.0 * (i + 1) + seconds,
                                 "floor_ms": 0.01, "error": "OOM: CUDA out of memory" if oom else ""})
    table = pd.DataFrame(rows)
    table.attrs["label"] = "GPU (NVIDIA test GPU)"
    return table


def summary(n_seeds=3):
    """A seed_summary-shaped table: Test1 and Development rows per mechanism."""
    rows = []
    for i, name in enumerate(MECHANISMS):
        for split, shift in (("Development", 0.05), ("Test1", 0.0)):
            mean = 0.3 + 0.02 * i + shift
            rows.append({"variant": name, "split": split, "n_seeds": n_seeds, "n": 50, "mean": mean, "sd": 0.01,
                         "min": mean - 0.01, "max": mean + 0.01, "ci95_low": mean - 0.05, "ci95_high": mean + 0.05})
    return pd.DataFrame(rows)


def test_gpu_results_are_used_at_400_s_forward_paper():
    cost = tradeoff.efficiency(MECHANISMS, gpu_dir="book/gpu", loader=lambda directory: gpu_table())
    assert list(cost["mechanism"]) == list(MECHANISMS)
    assert set(cost["seconds"]) == {400.0} and set(cost["protocol"]) == {"paper"}
    assert set(cost["direction"]) == {"forward"}
    assert cost.attrs["device"] == "cuda" and "NVIDIA test GPU" in cost.attrs["source"]
    assert "400 s" in cost.attrs["source"] and "CPU" not in cost.attrs["source"]
    # retnet (i = 1): (1 + 1) * 400 / 10 = 80 ms
    assert cost.set_index("mechanism").loc["retnet", "median_ms"] == pytest.approx(80.0)


def test_join_and_figure_from_gpu_table(tmp_path):
    cost = tradeoff.efficiency(MECHANISMS, gpu_dir="book/gpu", loader=lambda directory: gpu_table())
    table = tradeoff.join(summary(), cost)
    assert list(table.index) == list(MECHANISMS)
    assert table.loc["gsa", "mean"] == pytest.approx(0.36)          # Test1, not Development
    assert table.loc["gsa", "peak_mem_mb"] == pytest.approx(800.0)  # 100 * 4 + 400
    assert math.isnan(table.loc["kda", "median_ms"])                # OOM at 400 s stays missing, not invented
    fig = plots.tradeoff(table, cost.attrs["source"], path=tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    latency, memory = fig.axes
    # Five measured points per panel (kda is out of memory), at the table's coordinates.
    points = latency.lines[0].get_xydata()
    assert points.shape == (5, 2)
    np.testing.assert_allclose(points[:, 0], table["median_ms"].dropna().to_numpy())
    np.testing.assert_allclose(points[:, 1], table.loc[table["median_ms"].notna(), "mean"].to_numpy())
    np.testing.assert_allclose(memory.lines[0].get_xydata()[:, 0], table["peak_mem_mb"].dropna().to_numpy())
    texts = [t.get_text() for t in latency.texts]
    assert any("not measured: kda" in t for t in texts)
    assert "3 seed(s)" in latency.get_ylabel()


def test_gpu_absent_measures_here_and_says_so(tmp_path):
    """No GPU table: sercore.bench times the mixers on this CPU at the profile's longest bench length (smoke: 2 s),
    the source says so; memory is sercore.bench's CPU peak (a forked child's high-water mark)."""
    cost = tradeoff.efficiency(["softmax", "retnet"], gpu_dir=tmp_path, profile="smoke", loader=lambda d: None)
    assert cost.attrs["device"] == "cpu"
    assert cost.attrs["seconds"] == 2.0 and set(cost["seconds"]) == {2.0}
    assert "this machine (CPU)" in cost.attrs["source"] and "2 s of audio" in cost.attrs["source"]
    assert "not the paper's 400 s" in cost.attrs["source"]
    assert cost.attrs["gpu_absent"] == f"no GPU results in {tmp_path}"
    assert (cost["median_ms"] > 0).all() and (cost["peak_mem_mb"] >= 0).all()
    # the 20-80 % band sercore.bench measured travels with the median (the figure's horizontal bars)
    assert (cost["p20_ms"] <= cost["median_ms"]).all() and (cost["median_ms"] <= cost["p80_ms"]).all()
    assert list(cost.columns) == list(tradeoff.EFFICIENCY_COLUMNS)
    table = tradeoff.join(summary(n_seeds=1)[lambda s: s["variant"].isin(["softmax", "retnet"])], cost)
    fig = plots.tradeoff(table, cost.attrs["source"])
    latency, memory = fig.axes
    assert latency.lines[0].get_xydata().shape == (2, 2)
    assert memory.lines[0].get_xydata().shape == (2, 2)


def test_gpu_table_without_the_length_falls_back_with_reason(tmp_path):
    only_100 = gpu_table()[lambda t: t["seconds"] == 100.0]
    cost = tradeoff.efficiency(["retnet"], gpu_dir="book/gpu", profile="smoke", loader=lambda d: only_100)
    assert cost.attrs["device"] == "cpu"
    assert cost.attrs["gpu_absent"] == "GPU results in book/gpu have no paper forward rows at 400 s"


def test_the_gpu_folder_is_named_from_the_repository_root(tmp_path, monkeypatch):
    """A book page runs from book/executed and is given ../gpu: what it prints names book/gpu, where a reader
    finds it (also through a symlink into the repository); a folder outside the repository is named as given."""
    from sercore.book import ROOT

    assert tradeoff.REPOSITORY == ROOT
    monkeypatch.chdir(ROOT / "notebooks")
    cost = tradeoff.efficiency(MECHANISMS, gpu_dir="../book/gpu", loader=lambda directory: gpu_table())
    assert cost.attrs["source"].endswith("400 s of audio (GPU results in book/gpu)")
    assert tradeoff.shown_folder("../book/gpu") == "book/gpu"
    assert tradeoff.shown_folder(ROOT) == "."
    (tmp_path / "link").symlink_to(ROOT / "book")
    assert tradeoff.shown_folder(tmp_path / "link" / "gpu") == "book/gpu"
    assert tradeoff.shown_folder(tmp_path / "gpu") == str(tmp_path / "gpu")


def test_two_rows_for_one_mechanism_is_an_error():
    table = gpu_table()
    doubled = pd.concat([table, table[table["mechanism"] == "fox"].assign(dtype="bfloat16")])
    with pytest.raises(ValueError, match=r"several paper/forward rows at 400 s for \['fox'\]"):
        tradeoff.select(doubled, 400.0)


def test_compare_reads_seeds_and_intervals():
    rows = pd.DataFrame([
        {"variant": "a", "split": "Test1", "n_seeds": 3, "mean": 0.50, "ci95_low": 0.45, "ci95_high": 0.55},
        {"variant": "b", "split": "Test1", "n_seeds": 3, "mean": 0.70, "ci95_low": 0.60, "ci95_high": 0.80},
        {"variant": "c", "split": "Test1", "n_seeds": 3, "mean": 0.52, "ci95_low": 0.47, "ci95_high": 0.57},
        {"variant": "d", "split": "Test1", "n_seeds": 1, "mean": 0.90, "ci95_low": 0.85, "ci95_high": 0.95},
    ])
    table = results.compare(rows, {"ab": ("a", "b"), "ba": ("b", "a"), "ac": ("a", "c"), "ad": ("a", "d")},
                            labels=("causal", "bidirectional"))
    assert table.loc["ab", "reading"] == "bidirectional higher (3 seeds, intervals apart)"
    assert table.loc["ba", "reading"] == "causal higher (3 seeds, intervals apart)"
    assert table.loc["ac", "reading"] == "intervals overlap (3 seeds), no ranking"
    assert table.loc["ad", "reading"] == "single-seed observation, no ranking"
    assert table.loc["ab", "bidirectional - causal"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"no Test1 summary for \['zz'\]"):
        results.compare(rows, {"x": ("a", "zz")})


def test_profile_seeds_one_place():
    assert results.profile_seeds("smoke") == [0]
    assert len(results.profile_seeds("default")) >= results.MIN_SEEDS


def test_direction_variants_flip_each_mechanism_once():
    flipped, pairs = results.direction_variants(MECHANISMS)
    assert flipped["softmax-causal"] == {"mechanism": "softmax", "model.mechanism_options": {"causal": True}}
    assert flipped["kda-bidirectional"] == {"mechanism": "kda", "model.mechanism_options": {"bidirectional": True}}
    assert len(flipped) == len(MECHANISMS)
    assert pairs["softmax"] == ("softmax-causal", "softmax")        # the paper's softmax is the bidirectional one
    assert pairs["retnet"] == ("retnet", "retnet-bidirectional")     # the paper's linear mixers are causal
    with pytest.raises(ValueError, match="area: its module has neither"):
        results.direction_variants(["area"])
