"""Figures of the results pages (sercore.plots): computed captions, the spectrogram's colour bar, axis labels,
the paper's numbers on the CPU efficiency figure, learning curves; and that every figure of those pages is
followed by its caption."""

import json
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.collections
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from sercore import plots  # noqa: E402
from sercore.localization import speech_values  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGES = ("accuracy", "keysparse", "multitask", "dimensional", "efficiency", "area")


@pytest.fixture(autouse=True)
def fresh_page(monkeypatch):
    """Each test is a page of its own: figure numbers start at 1."""
    monkeypatch.setattr(plots, "_numbers", {})
    monkeypatch.setattr(plots, "_uncaptioned", {})


def _run(variant, seed, dev, loss, best_step, corpus="/home/someone/clone/data/demo-smoke", metric="macro_f1"):
    history = [{"step": 10 * (i + 1), "epoch": i, "dev": d, "train_loss": l, "lr": 1e-3, "improved": True}
               for i, (d, l) in enumerate(zip(dev, loss))]
    return {"variant": variant, "corpus": corpus, "corpus_kind": "generated demonstration corpus", "profile": "smoke",
            "provenance": {"seed": seed}, "training": {"history": history},
            "selection": {"split": "Development", "metric": metric, "best_step": best_step}}


RUNS = [_run("softmax", 0, [0.2, 0.4, 0.5], [2.0, 1.5, 1.2], 30),
        _run("softmax", 1, [0.3, 0.5, 0.4], [2.1, 1.4, 1.1], 20),
        _run("kda", 0, [0.1, 0.3, 0.35], [2.2, 1.8, 1.6], 30)]


def _bars(path):
    summary = pd.DataFrame([{"variant": v, "split": "Test1", "mean": 0.5, "ci95_low": 0.4, "ci95_high": 0.6,
                             "min": 0.45, "max": 0.55, "n_seeds": 2} for v in ("a", "b")])
    return plots.seed_bars(summary, chance=0.125, path=path)


def test_a_caption_numbers_the_figures_drawn_since_the_last_one(tmp_path):
    _bars(tmp_path / "one.png")
    first = plots.caption("UA per variant", RUNS).data
    assert first.startswith("**Figure 1.** UA per variant. ")
    for name in ("two", "three"):  # one loop, two figures, one caption
        _bars(tmp_path / f"{name}.png")
    assert plots.caption("one per keep_rate").data.startswith("**Figures 2–3.** one per keep_rate.")
    assert plots.caption("a skipped figure") is None  # nothing drawn since: nothing to caption
    _bars(tmp_path / "one.png")  # drawn again: keeps its number
    assert plots.caption("again").data.startswith("**Figure 1.**")
    _bars(None)  # not written to a file: not a figure of the page
    assert plots.caption("unsaved") is None


def test_a_caption_names_the_corpus_profile_seeds_and_the_marks(tmp_path):
    _bars(tmp_path / "bars.png")
    text = plots.caption("UA per variant", RUNS).data
    assert "Runs on demo-smoke: generated demonstration corpus; profile smoke; 2 seeds (0, 1)." in text
    assert "/home/someone" not in text  # the corpus by its name, never its machine path
    assert "whiskers: the 95 % bootstrap interval of that mean" in text and "Dotted line: chance (0.125)" in text


def test_learning_curves_one_colour_per_variant_a_thin_line_per_seed_and_the_mean(tmp_path):
    fig = plots.learning_curves(RUNS, path=tmp_path / "curves.png")
    dev, loss = fig.axes
    assert dev.get_ylabel() == "Development macro-F1" and dev.get_xlabel() == loss.get_xlabel() == "training step"
    assert "loss" in loss.get_ylabel()
    lines = dev.get_lines()
    thin = [line for line in lines if line.get_linewidth() < 1]
    bold = {line.get_label(): line for line in lines if line.get_linewidth() >= 2}
    assert len(thin) == 3 and sorted(bold) == ["kda (1 seed)", "softmax (2 seeds)"]
    np.testing.assert_allclose(bold["softmax (2 seeds)"].get_ydata(), [0.25, 0.45, 0.45])
    np.testing.assert_allclose([line for line in loss.get_lines() if line.get_linewidth() >= 2][0].get_ydata(),
                               [2.05, 1.45, 1.15])
    assert thin[0].get_color() == thin[1].get_color() == bold["softmax (2 seeds)"].get_color()
    assert bold["kda (1 seed)"].get_color() != bold["softmax (2 seeds)"].get_color()
    dots = np.concatenate([c.get_offsets() for c in dev.collections])  # each seed's selected step
    assert sorted(map(tuple, dots)) == [(20, 0.5), (30, 0.35), (30, 0.5)]
    assert "dots: the step whose checkpoint each seed kept" in plots.caption("curves", RUNS).data


def test_learning_curves_refuse_runs_that_select_on_different_metrics():
    with pytest.raises(ValueError, match="different metrics"):
        plots.learning_curves(RUNS + [_run("x", 0, [0.1], [1.0], 10, metric="ccc_mean")])


def test_the_spectrogram_of_the_heatmaps_has_a_colour_bar_in_its_unit_and_keeps_the_time_axis_aligned():
    item = {"utt_id": "u1", "label": "A", "predicted": "S",
            "spectrogram": np.random.default_rng(0).normal(size=(50, 8)), "frame_rate": 100.0, "segment": (0.1, 0.3),
            "values": "ln mel power",
            "reads": [{"name": "final0", "weights": np.full(50, 0.02), "heads": np.full((2, 50), 0.02), "score": 1.0}]}
    fig = plots.attention_heatmaps([item])
    colour_bars = [inset for ax in fig.axes for inset in ax.child_axes]  # inset beside the spectrogram
    assert [bar.get_ylabel() for bar in colour_bars] == ["ln mel power"] and colour_bars[0] in fig.axes[0].child_axes
    top, below = fig.axes[0].get_position(), fig.axes[1].get_position()
    assert (top.x0, top.x1) == pytest.approx((below.x0, below.x1))  # the colour bar does not narrow the panel


def test_speech_values_name_what_the_features_are():
    features = {"logmel": {"log": "ln"}, "logmel_area": {"log": "log10"}}
    assert speech_values({"model": {"speech": "logmel"}, "features": features}) == "ln mel power"
    assert speech_values({"model": {"speech": "logmel128-segments"}, "features": features}) == "log10 mel power"
    assert speech_values({"model": {"speech": "ssl"}, "features": features}) == "SSL hidden state"


def test_robustness_curves_label_both_axes_with_units():
    rows = [{"seed": 0, "perturbation": p, "kind": k, "metric": "ccc_valence", "split": "Test1", "value": 0.5,
             "ci95_low": 0.4, "ci95_high": 0.6} for p, k in (("clean", "clean"), ("noise 0 dB SNR", "snr"))]
    ax = plots.robustness_curves(pd.DataFrame(rows)).axes[0]
    assert ax.get_ylabel() == "CCC (valence) on Test1"
    assert "SNR in dB" in ax.get_xlabel() and "gain in dB" in ax.get_xlabel()


def _cpu_table(memory):
    return pd.DataFrame([{"mechanism": "softmax", "implementation": "sercore (naive)", "seconds": s, "ms": s / 10,
                          "p20_ms": s / 11, "p80_ms": s / 9, "peak_gb": 0.1 * s if memory else np.nan}
                         for s in (2, 10)])


@pytest.mark.parametrize("memory", [True, False])
def test_the_cpu_efficiency_figure_marks_the_papers_gpu_numbers_under_their_own_label(tmp_path, memory):
    reference = [{"mechanism": "softmax", "seconds": 10, "quantity": "median_ms", "value": 0.55},
                 {"mechanism": "fox", "seconds": 400, "quantity": "peak_gb", "value": 0.328}]
    label = "the paper's GPU numbers (H100, width 1024): not this machine"
    fig = plots.efficiency_band(_cpu_table(memory), reference=reference, reference_label=label,
                                path=tmp_path / "cpu.png")
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["sercore (naive)", textwrap.fill(label, 48)]  # wrapped: the legend stays in its panel
    marked = [tuple(c.get_offsets()[0]) for ax in fig.axes for c in ax.collections
              if isinstance(c, matplotlib.collections.PathCollection)]  # the scatter marks, not the bands
    assert marked == ([(10, 0.55), (400, 0.328)] if memory else [(10, 0.55)])  # no memory panel, no memory mark
    assert f"Open circles: {label}." in plots.caption("latency").data


def _code_cells(page):
    cells = json.loads((ROOT / "notebooks" / f"{page}.ipynb").read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.mark.parametrize("page", RESULTS_PAGES)
def test_every_figure_of_a_results_page_is_followed_by_its_caption(page):
    cells = _code_cells(page)
    for i, source in enumerate(cells):
        if "plots." in source and "path=" in source and "plots.caption" not in source:
            assert i + 1 < len(cells) and cells[i + 1].lstrip().startswith(("plots.caption(", "if ")) \
                and "plots.caption(" in cells[i + 1], f"{page}: no caption after the figure cell\n{source}"


@pytest.mark.parametrize("page", ["accuracy", "keysparse"])
def test_the_accuracy_and_keysparse_pages_draw_learning_curves(page):
    assert any("plots.learning_curves(" in source for source in _code_cells(page))
