"""Figures of the book. Each function returns a matplotlib Figure and, given `path`, also writes it to a
PNG (myst-nb cannot glue figures across pages, so chapters include the saved files) and numbers it for
caption(), which writes the "Figure N." line under it: what the page says is plotted, the corpus, profile and
seeds of the runs, and what the figure's marks mean, as the function that drew them states it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

# The figures of the page being executed (papermill runs each page in its own kernel): a file's number is
# fixed the first time it is written, so re-drawing a figure keeps its number; _uncaptioned holds the numbers
# (and what their marks mean) drawn since the last caption().
_numbers: dict[str, int] = {}
_uncaptioned: dict[int, str] = {}


def _save(fig, path, marks: str = ""):
    """Write `fig` to `path` when given and number it for caption(); `marks`: what its bars, lines and colours
    mean, one or two sentences."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        _uncaptioned[_numbers.setdefault(str(path), len(_numbers) + 1)] = marks
    return fig


def caption(what: str, runs: list[dict] | None = None):
    """The caption (IPython Markdown) of the figures written since the previous caption: "Figure N." (or
    "Figures N-M." for those one loop drew), `what` (the page's sentence on what is plotted), the corpus,
    profile and seeds of `runs` (in results.caption's words: a generated corpus is named as the demonstration
    corpus it is), then what the marks mean. None when no figure was written since (a page that skipped one)."""
    from IPython.display import Markdown

    if not _uncaptioned:
        return None
    numbers = sorted(_uncaptioned)
    marks = list(dict.fromkeys(text for text in _uncaptioned.values() if text))
    _uncaptioned.clear()
    if len(numbers) == 1:
        label = f"Figure {numbers[0]}"
    elif numbers == list(range(numbers[0], numbers[-1] + 1)):
        label = f"Figures {numbers[0]}–{numbers[-1]}"
    else:
        label = f"Figures {', '.join(map(str, numbers))}"
    parts = [f"**{label}.**", what.rstrip(". ") + "."]
    if runs:  # as results.caption writes it, without importing the training code into every drawing page
        corpora = sorted({Path(str(run.get("corpus", "?"))).name for run in runs})  # the name, never a machine path
        kinds = sorted({run.get("corpus_kind", "unknown") for run in runs})
        profiles = sorted({str(run.get("profile", "?")) for run in runs})
        seeds = sorted({run["provenance"]["seed"] for run in runs})
        parts.append(f"Runs on {', '.join(corpora)}: {' + '.join(kinds)}; profile {', '.join(profiles)}; "
                     f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}).")
    return Markdown(" ".join(parts + marks))


def _chance(chance) -> str:
    return "" if chance is None else f" Dotted line: chance ({chance:.3g})."


def attention_grid(matrices: dict, head: int = 0, ncols: int = 4, path=None):
    """One heatmap per mechanism: its equivalent T x T matrix for one head (rows: queries, columns: keys),
    each with its own colour bar (the mechanisms' scales differ by orders of magnitude); a signed matrix gets
    a diverging map centred on 0, a non-negative one a sequential map from 0."""
    names = list(matrices)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        a = np.asarray(matrices[name])[head]
        limit = np.abs(a).max() or 1.0
        signed = a.min() < -1e-12 * limit
        image = ax.imshow(a, cmap="RdBu_r" if signed else "viridis", vmin=-limit if signed else 0, vmax=limit)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("A[t, s]", fontsize=8)
        ax.set_title(f"{name} (head {head})", fontsize=10)
        ax.set_xlabel("key position s (token)")
        ax.set_ylabel("query position t (token)")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, "Colour: the weight A[t, s] of key s in the output at query t, each panel on its own "
                            "scale (blue-red around 0 where the matrix has negative entries).")


def latency_memory(table, path=None, title: str = ""):
    """Latency (and peak memory where measured) vs audio seconds, log-log: one line per mechanism, or per
    mechanism and implementation where a table times more than one (fla's layer beside sercore's module)."""
    has_memory = table["peak_gb"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_memory else 1, figsize=(11 if has_memory else 6, 4), squeeze=False)
    keys = ["mechanism", "implementation"] if "implementation" in table else ["mechanism"]
    several = table.groupby("mechanism")[keys[-1]].nunique() > 1
    for key, rows in table.groupby(keys, sort=False):
        name = key[0] if isinstance(key, tuple) else key
        label = f"{name}: {key[1]}" if several[name] else name
        axes[0, 0].plot(rows["seconds"], rows["ms"], marker="o", label=label)
        if has_memory:
            axes[0, 1].plot(rows["seconds"], rows["peak_gb"], marker="o", label=label)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="audio seconds (50 frames/s)", ylabel="latency (ms, median)")
    if has_memory:
        axes[0, 1].set(xscale="log", yscale="log", xlabel="audio seconds (50 frames/s)", ylabel="peak memory (GB)")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, "Lines: the median latency (and peak memory where measured) of each mechanism.")


def efficiency_band(table, path=None, title: str = "", reference=(), reference_label: str = "paper"):
    """Median latency with its 20-80 % band, and peak memory where measured, vs audio seconds (log-log), one
    line per mechanism and implementation. Reads bench.benchmark's table (ms, peak_gb) or the GPU check's
    efficiency.csv (median_ms, peak_mem_mb). `reference`: dicts {mechanism, seconds, quantity, value} (e.g.
    bench.PAPER_FIGURES) drawn as open black circles, each named by its mechanism, with `reference_label` in
    the legend: where they were measured on another machine or at another width than the table, it says so."""
    table = table.copy()
    if "median_ms" not in table:
        table = table.rename(columns={"ms": "median_ms"})
    if "peak_gb" not in table and "peak_mem_mb" in table:
        table["peak_gb"] = table["peak_mem_mb"] / 1e3
    has_memory = table["peak_gb"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_memory else 1, figsize=(11 if has_memory else 6, 4), squeeze=False)
    for (name, implementation), rows in table.groupby(["mechanism", "implementation"], sort=False):
        rows = rows.sort_values("seconds")
        line, = axes[0, 0].plot(rows["seconds"], rows["median_ms"], marker="o", ms=3, label=implementation)
        if "p20_ms" in rows:
            axes[0, 0].fill_between(rows["seconds"], rows["p20_ms"], rows["p80_ms"], color=line.get_color(),
                                    alpha=0.2, lw=0)
        if has_memory:
            axes[0, 1].plot(rows["seconds"], rows["peak_gb"], marker="o", ms=3, color=line.get_color())
    marked = [mark for mark in reference if mark["quantity"] == "median_ms" or has_memory]
    for mark in marked:
        ax = axes[0, 0 if mark["quantity"] == "median_ms" else 1]
        ax.scatter([mark["seconds"]], [mark["value"]], facecolors="none", edgecolors="black", s=40)
        ax.annotate(f"paper {mark['mechanism']}", (mark["seconds"], mark["value"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    if marked:  # one legend entry for all of them, on the panel that has the legend
        axes[0, 0].plot([], [], "o", mfc="none", mec="black", label=textwrap.fill(reference_label, 48))
    axes[0, 0].set(xscale="log", yscale="log", xlabel="audio seconds (50 frames/s)",
                   ylabel="latency (ms: median, 20-80 % band)")
    if has_memory:
        axes[0, 1].set(xscale="log", yscale="log", xlabel="audio seconds (50 frames/s)", ylabel="peak memory (GB)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # under the whole figure, where it hides no line or mark and does not squeeze the panels
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2,
               fontsize=7, frameon=False)
    marks = ("Lines: the median latency of each implementation over its timed calls; band: 20-80 % of them"
             + ("; right: the peak memory of one call" if has_memory else "") + ".")
    if marked:
        marks += f" Open circles: {reference_label}."
    return _save(fig, path, marks)


def confusion(matrix, labels, path=None, title: str = ""):
    """A confusion matrix, rows normalised to recall."""
    matrix = np.asarray(matrix, dtype=float)
    recall = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("share of the true class (recall)")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    for (i, j), value in np.ndenumerate(recall):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, path, f"Cells: the share of each true class (rows) predicted as each class (columns), over "
                            f"{int(matrix.sum())} utterances; the diagonal is each class's recall.")


def seed_bars(summary, chance: float | None = None, path=None, ylabel: str = ""):
    """Bars of results.seed_summary rows: the mean over seeds per variant and split, the 95 % bootstrap
    interval of the seed mean as whiskers, and each variant's seed range (min to max) as a black tick pair."""
    splits = list(dict.fromkeys(summary["split"]))
    variants = list(dict.fromkeys(summary["variant"]))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(1.6 * len(splits) + 2.5, 3.6))
    for i, variant in enumerate(variants):
        part = summary[summary["variant"] == variant].set_index("split").reindex(splits)
        x = np.arange(len(splits)) + (i - (len(variants) - 1) / 2) * width
        mean = part["mean"].to_numpy()
        ax.bar(x, mean, width, yerr=[mean - part["ci95_low"], part["ci95_high"] - mean], capsize=3,
               label=f"{variant} ({int(part['n_seeds'].max())} seeds)")
        ax.scatter(np.r_[x, x], np.r_[part["min"], part["max"]], marker="_", color="black", s=60, zorder=3)
    if chance is not None:
        ax.axhline(chance, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set(xticks=range(len(splits)), xticklabels=splits, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, "Bars: the mean over seeds; whiskers: the 95 % bootstrap interval of that mean "
                            "(utterances resampled); black ticks: the lowest and the highest seed." + _chance(chance))


METRIC_LABELS = {"balanced_accuracy": "UA (balanced accuracy)", "accuracy": "WA (accuracy)", "macro_f1": "macro-F1",
                 "gender_accuracy": "gender accuracy", "ccc_mean": "CCC, mean of the dimensions"}


def _metric_label(metric: str) -> str:
    """How an axis names a metric of sercore.metrics: CCC per dimension, UA, macro-F1 ..."""
    if metric.startswith("ccc_") and metric not in METRIC_LABELS:
        return f"CCC ({metric.removeprefix('ccc_')})"
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def learning_curves(runs: list[dict], path=None, title: str = ""):
    """Training as it went (each run's metrics.json training.history): left, the selection metric on its split
    (metrics.json "selection", e.g. Development macro-F1) at every dev check; right, the training loss, the
    mean over the steps since the previous check. One colour per variant (runs[i]["variant"]), a thin line
    per seed, the mean over the seeds in bold where they share a step, a dot where each seed's checkpoint was
    selected. Curves still rising at the last step say the run stopped before saturating; flat ones, that fewer
    steps would have done."""
    selections = {(run["selection"]["split"], run["selection"]["metric"]) for run in runs}
    if len(selections) != 1:
        raise ValueError(f"learning_curves: the runs select on different metrics {sorted(selections)}")
    (split, metric), = selections
    variants = list(dict.fromkeys(run.get("variant", run.get("mechanism")) for run in runs))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, variant in enumerate(variants):
        colour = colours[k % len(colours)]
        own = [run for run in runs if run.get("variant", run.get("mechanism")) == variant]
        histories = [run["training"]["history"] for run in own]
        for run, history in zip(own, histories):
            steps = [entry["step"] for entry in history]
            axes[0].plot(steps, [entry["dev"] for entry in history], color=colour, linewidth=0.7, alpha=0.5)
            axes[1].plot(steps, [entry["train_loss"] for entry in history], color=colour, linewidth=0.7, alpha=0.5)
            dev = {entry["step"]: entry["dev"] for entry in history}
            best = run["selection"].get("best_step")
            if best in dev:
                axes[0].scatter([best], [dev[best]], color=colour, s=12, zorder=3)
        shared = sorted(set.intersection(*({entry["step"] for entry in history} for history in histories)))
        for ax, key in zip(axes, ("dev", "train_loss")):
            mean = [np.mean([e[key] for history in histories for e in history if e["step"] == step]) for step in shared]
            ax.plot(shared, mean, color=colour, linewidth=2, label=f"{variant} ({len(own)} seed{'s' * (len(own) > 1)})")
    axes[0].set(xlabel="training step", ylabel=f"{split} {_metric_label(metric)}", title="selection metric")
    axes[1].set(xlabel="training step", ylabel="training loss (mean since the previous check)", title="training loss")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, "Thin lines: one seed each; bold: the mean over seeds; dots: the step whose checkpoint "
                            f"each seed kept (its best {split} {_metric_label(metric)}).")


def robustness_curves(table, path=None):
    """sercore.robustness.evaluate_perturbed rows: one panel per metric, the perturbations along x in the
    table's order (white noise at an SNR in dB, a gain in dB), each seed's score on the table's split with
    its 95 % bootstrap interval, and the mean over seeds (a black tick; joined by a line from clean along the
    noise levels)."""
    metrics = list(dict.fromkeys(table["metric"]))
    names = list(dict.fromkeys(table["perturbation"]))
    seeds = sorted(set(table["seed"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        part = table[table["metric"] == metric]
        for j, seed in enumerate(seeds):
            rows = part[part["seed"] == seed].set_index("perturbation").reindex(names)
            x = np.arange(len(names)) + (j - (len(seeds) - 1) / 2) * 0.12
            ax.errorbar(x, rows["value"], yerr=[rows["value"] - rows["ci95_low"], rows["ci95_high"] - rows["value"]],
                        fmt="o", markersize=3, capsize=2, alpha=0.6, label=f"seed {seed}")
        mean = part.groupby("perturbation", sort=False)["value"].mean().reindex(names)
        kinds = part.groupby("perturbation", sort=False)["kind"].first().reindex(names)
        noise = [i for i, k in enumerate(kinds) if k in ("clean", "snr")]  # a line only along the SNR axis
        ax.plot(noise, mean.iloc[noise], color="black", linewidth=1, label="mean over seeds")
        ax.scatter(range(len(names)), mean, marker="_", s=200, color="black", zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_title(metric.replace("_", " "), fontsize=9)
        split = ", ".join(dict.fromkeys(part["split"])) if "split" in part else ""
        ax.set_ylabel(_metric_label(metric) + (f" on {split}" if split else ""), fontsize=8)
        ax.yaxis.set_tick_params(labelleft=True)  # shared y: each panel still names its metric and scale
        ax.set_xlabel("perturbation at evaluation\n(white noise: SNR in dB; gain in dB)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, "Points: each seed's score with its 95 % bootstrap interval over utterances; black "
                            "ticks: the mean over seeds, joined by a line from clean along the noise levels.")


def prosody(summary, path=None):
    """Per class: pitch relative to the speaker (semitones) and seconds per word, from prosody_summary()."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    summary["f0_vs_speaker_st"].plot.bar(ax=axes[0], color="tab:blue")
    axes[0].axhline(0, color="black", linewidth=0.8)
    axes[0].set(ylabel="median F0 vs own speaker (semitones)", xlabel="class")
    summary["seconds_per_word"].plot.bar(ax=axes[1], color="tab:orange")
    axes[1].set(ylabel="median seconds per word", xlabel="class")
    fig.tight_layout()
    return _save(fig, path, "Bars: the median per class.")


def class_spectrograms(table, per_class: int = 1, seed: int = 0, path=None):
    """log-Mel spectrograms of `per_class` random utterances of each class (sercore.features.log_mel at its
    defaults: 10 ms hop), on one colour scale for all panels (the 1st-99.9th percentile of their values) so
    that loudness compares across classes. A file that cannot be read gets a panel saying why instead."""
    from sercore.data import AudioError, read_audio
    from sercore.features import log_mel

    hop_s = 0.010  # log_mel's default hop
    chosen = table.groupby("label", sort=True).sample(per_class, random_state=seed)
    ncols = 4
    nrows = -(-len(chosen) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.4 * nrows), squeeze=False)
    spectrograms = {}
    for row in chosen.itertuples(index=False):
        try:
            spectrograms[row.utt_id] = np.asarray(log_mel(read_audio(row.path)))
        except AudioError as error:
            spectrograms[row.utt_id] = error
    values = np.concatenate([x.ravel() for x in spectrograms.values() if isinstance(x, np.ndarray)] or [np.zeros(1)])
    low, high = np.percentile(values, [1, 99.9])
    for ax, row in zip(axes.flat, chosen.itertuples(index=False)):
        spectrogram = spectrograms[row.utt_id]
        if isinstance(spectrogram, AudioError):  # the panel says why
            ax.text(0.5, 0.5, f"{row.utt_id}\n{spectrogram.reason}", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
            ax.axis("off")
            continue
        image = ax.imshow(spectrogram.T, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high,
                          extent=(0, spectrogram.shape[0] * hop_s, 0, spectrogram.shape[1]))
        fig.colorbar(image, ax=ax, pad=0.02).set_label("ln mel power", fontsize=7)
        ax.set_title(f"{row.label} · {row.speaker} · {row.utt_id}", fontsize=8)
        ax.set(xlabel="time (s)", ylabel="mel band (0 = lowest)")
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, "Colour: ln mel power, one scale for all panels.")


def metric_bars(runs: list[dict], metric: str = "macro_f1", splits=("Test1", "Test2"), chance: float | None = None,
                path=None):
    """Grouped bars of `metric` per variant and split with 95 % bootstrap intervals."""
    variants = [run.get("variant", run.get("mechanism")) for run in runs]
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(1.2 * len(runs) + 2, 3.6))
    for i, split in enumerate(splits):
        values = np.array([run["splits"][split][metric]["value"] for run in runs])
        bounds = np.array([run["splits"][split][metric]["ci95"] for run in runs])
        x = np.arange(len(runs)) + (i - (len(splits) - 1) / 2) * width
        ax.bar(x, values, width, label=split, yerr=[values - bounds[:, 0], bounds[:, 1] - values], capsize=3)
    if chance is not None:
        ax.axhline(chance, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set(xticks=range(len(runs)), xticklabels=variants, ylabel=metric.replace("_", " "))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, "Bars: one run's score per split; whiskers: its 95 % bootstrap interval over "
                            "utterances." + _chance(chance))


def sparsity_curve(runs: list[dict], keep_rates, metric: str = "balanced_accuracy",
                   splits=("Development", "Test1"), path=None):
    """`metric` against keep_rate (the top-k sparsity curve), one line per split, mean over seeds."""
    import pandas as pd

    rows = [{"keep_rate": rate, "split": split, "value": run["splits"][split][metric]["value"]}
            for run in runs for split in splits
            for rate in [run["provenance"]["parameters"]["model"]["keep_rate"]] if rate in keep_rates]
    table = pd.DataFrame(rows).groupby(["split", "keep_rate"], sort=False)["value"].mean().reset_index()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for split, part in table.groupby("split", sort=False):
        ax.plot(part["keep_rate"], part["value"], marker="o", label=split)
    ax.set(xlabel="keep_rate (share of keys kept)", ylabel=metric.replace("_", " "))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, "Lines: the mean over seeds per split.")


def tradeoff(table, source: str, metric: str = "macro-F1", path=None, title: str = ""):
    """The main paper's trade-off: `metric` (mean over seeds, 95 % interval) against the mixer's latency and
    against its peak memory, one point per mechanism, from sercore.tradeoff.join. `source` says which machine
    and length measured the cost; it goes under the x axes. A panel whose cost was not measured (NaN, e.g.
    CPU memory where sercore.bench.cpu_peak_mb cannot fork) says so instead of plotting nothing."""
    import pandas as pd

    split = table.attrs.get("split", "Test1")
    panels = (("median_ms", "latency of one mixer call (ms, median)", ("p20_ms", "p80_ms")),
              ("peak_mem_mb", "peak memory of one mixer call (MB)", None))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    y = table["mean"].to_numpy(dtype=float)
    yerr = np.vstack([y - table["ci95_low"].to_numpy(dtype=float), table["ci95_high"].to_numpy(dtype=float) - y])
    for ax, (column, label, spread) in zip(axes, panels):
        x = table[column].to_numpy(dtype=float)
        shown = np.isfinite(x)
        if not shown.any():
            device = table.attrs.get("device", "this device")
            ax.text(0.5, 0.5, f"{label.split(' of ')[0]}: not measured on {device}", ha="center", va="center",
                    fontsize=9, transform=ax.transAxes)
            ax.set(xticks=[], xlabel=label)
            continue
        xerr = None
        if spread and table[list(spread)].notna().all(axis=None):
            xerr = np.vstack([x - table[spread[0]].to_numpy(dtype=float), table[spread[1]].to_numpy(dtype=float) - x])
            xerr = xerr[:, shown]
        ax.errorbar(x[shown], y[shown], yerr=yerr[:, shown], xerr=xerr, fmt="o", capsize=3)
        for name, xi, yi in zip(table.index[shown], x[shown], y[shown]):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set(xscale="log", xlabel=label)
        errors = table["error"].fillna("").astype(str) if "error" in table else pd.Series("", index=table.index)
        left_out = [f"{name} ({errors[name].split(':')[0]})" if errors[name] else str(name)
                    for name in table.index[~shown]]
        if left_out:
            ax.text(0.02, 0.02, f"not measured: {', '.join(left_out)}", fontsize=7, transform=ax.transAxes)
    seeds = sorted(set(table["n_seeds"].astype(int)))
    axes[0].set_ylabel(f"{split} {metric} (mean of {'/'.join(map(str, seeds))} seed(s), 95 % CI)")
    fig.suptitle(title or "accuracy against cost of the mixer", fontsize=10)
    fig.text(0.5, -0.02, f"cost measured on: {source}", ha="center", fontsize=8, wrap=True)
    fig.tight_layout()
    return _save(fig, path, "Points: the mean over seeds; vertical bars: the 95 % bootstrap interval of that mean; "
                            "horizontal bars: the 20-80 % band of the latency over timed calls.")


def _interval_line(ax, part, x, label, color=None, order=None, shift: float = 0.0):
    """Seed mean with its bootstrap interval (error bars) and the range across seeds (shaded band). order: the
    categories of a categorical x (e.g. variants), drawn at 0, 1, ... (+ shift, so series sit side by side) as
    points, not joined by a line."""
    if order is not None:
        part = part.set_index(x).reindex(order)
        mean = part["mean"].to_numpy(dtype=float)
        at = np.arange(len(order)) + shift
        line = ax.errorbar(at, mean, yerr=[mean - part["ci95_low"], part["ci95_high"] - mean],
                           marker="o", linestyle="none", capsize=3, label=label, color=color)
        ax.vlines(at, part["min"], part["max"], color=line[0].get_color(), alpha=0.3, linewidth=6)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        return
    part = part.sort_values(x)
    mean = part["mean"].to_numpy()
    line = ax.errorbar(part[x], mean, yerr=[mean - part["ci95_low"], part["ci95_high"] - mean], marker="o",
                       capsize=3, label=label, color=color)
    ax.fill_between(part[x], part["min"], part["max"], alpha=0.15, color=line[0].get_color(), linewidth=0)


def sparsity_curves(tables: dict, splits=("Development", "Test1", "Test2"), metric_label: str = "UA",
                    chance: float | None = None, x: str = "keep_rate", path=None, title: str = ""):
    """The top-k sparsity curve of several corpora on one figure: one panel per split, one line per table
    (label -> results.sweep_summary(...) frame: x, split, mean, min, max, ci95_low, ci95_high). Bars: 95 %
    bootstrap interval of the seed mean; band: min-max across seeds; dotted: chance and twice chance."""
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.4), squeeze=False, sharey=True)
    for ax, split in zip(axes.flat, splits):
        for label, table in tables.items():
            part = table[table["split"] == split]
            if len(part):
                _interval_line(ax, part, x, label)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=1, label="chance")
            ax.axhline(2 * chance, color="grey", linestyle="--", linewidth=1, label="2 x chance")
        ax.set(title=split, xlabel=f"{x} (share of keys kept)")
    axes[0, 0].set_ylabel(metric_label)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    lines = "; dotted: chance; dashed: twice chance" if chance is not None else ""
    return _save(fig, path, "Points: the mean over seeds; bars: the 95 % bootstrap interval of that mean "
                            f"(utterances resampled); band: the range across seeds{lines}.")


def localization_beside_metric(metric_table, scores_table, metric_label: str = "UA", split: str = "Test1",
                               chance: float | None = None, x: str = "keep_rate", path=None, title: str = ""):
    """Left: the metric against x (results.sweep_summary frame, or a seed_summary frame with x="variant");
    right: the localization score against x (localization.localization_summary frame, one series per attention
    read, a kept-key mask's being the share of heads keeping each frame), 1 = no preference. Bars: 95 %
    bootstrap interval of the seed mean; band: min-max across seeds. A categorical x (variant) is drawn as
    points in the metric table's order."""
    metric_part = metric_table[metric_table["split"] == split]
    order = list(dict.fromkeys(metric_part[x])) if x == "variant" else None
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    _interval_line(axes[0], metric_part, x, split, order=order)
    if chance is not None:
        axes[0].axhline(chance, color="black", linestyle=":", linewidth=1, label="chance")
    seeds = "/".join(map(str, sorted({int(n) for n in metric_part["n_seeds"]}))) if "n_seeds" in metric_part else "?"
    axes[0].set(xlabel=x, ylabel=metric_label, title=f"{metric_label}, {split} ({seeds} seed(s))")
    groups = list(scores_table.groupby("attention", sort=False))
    for k, (name, part) in enumerate(groups):
        shift = (k - (len(groups) - 1) / 2) * 0.12 if order is not None else 0.0
        _interval_line(axes[1], part, x, name, order=order, shift=shift)
    axes[1].axhline(1.0, color="black", linestyle=":", linewidth=1, label="no preference")
    axes[1].set(xlabel=x, ylabel="attention share / segment share", title=f"localization score, {split}")
    for ax in axes:
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    band = "vertical band" if order is not None else "band"
    dotted = "chance (left) and " if chance is not None else ""
    return _save(fig, path, "Points: the mean over seeds; bars: the 95 % bootstrap interval of that mean; "
                            f"{band}: the range across seeds; dotted: {dotted}no preference, a score of 1 (right).")


def attention_heatmaps(items: list[dict], path=None, title: str = ""):
    """One column per utterance (localization.heatmap_items): the model's speech features (its log-Mel
    spectrogram, with a colour bar in the unit the item's "values" names, e.g. ln mel power) with the
    emotional segment shaded; below it one row per attention read over time (the pooling weights; a layer's
    column sums of its equivalent matrix, one thin line per head and their mean in bold), each with its
    localization score; and the kept-key mask (heads x frames) where a read is a key-sparse layer."""
    names = list(dict.fromkeys(read["name"] for item in items for read in item["reads"]))
    has_kept = any("kept" in item for item in items)
    nrows = 1 + len(names) + has_kept
    ratios = [2] + [1.2] * len(names) + [0.8] * has_kept
    fig, axes = plt.subplots(nrows, len(items), figsize=(4.2 * len(items), 0.95 * sum(ratios) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": ratios})
    for j, item in enumerate(items):
        rate, spectrogram = item["frame_rate"], item["spectrogram"]
        seconds = spectrogram.shape[0] / rate
        top = axes[0, j]
        image = top.imshow(spectrogram.T, origin="lower", aspect="auto", cmap="magma",
                           extent=(0, seconds, 0, spectrogram.shape[1]))
        # an inset beside the panel, not a slice of it, so the time axis lines up with the rows below
        colourbar = fig.colorbar(image, cax=top.inset_axes([1.01, 0.0, 0.025, 1.0]))
        colourbar.set_label(item.get("values", "feature value"), fontsize=7)
        colourbar.ax.tick_params(labelsize=7)
        top.axvspan(*item["segment"], color="cyan", alpha=0.25, label="emotional phrase")
        band = "mel band" if "mel" in item.get("values", "") else "feature"
        top.set(title=f"{item['utt_id']} · {item['label']} (predicted {item['predicted']})", ylabel=band)
        top.title.set_fontsize(8)
        reads = {read["name"]: read for read in item["reads"]}
        for row, name in enumerate(names, start=1):
            ax = axes[row, j]
            if name not in reads:
                ax.axis("off")
                continue
            read = reads[name]
            weights = np.asarray(read["weights"])
            times = np.arange(weights.size) / rate
            if read.get("heads") is not None:
                for h, head in enumerate(np.asarray(read["heads"])):
                    ax.plot(times, head, linewidth=0.6, alpha=0.6, label=f"head {h}")
            ax.plot(times, weights, color="black" if read.get("heads") is not None else "tab:blue", linewidth=1.3,
                    label="mean of heads" if read.get("heads") is not None else name)
            ax.axvspan(*item["segment"], color="cyan", alpha=0.25)
            what = "pooling weight" if name == "pooling" else f"{name} column sum"
            ax.set(ylabel=what, xlim=(0, seconds))
            ax.yaxis.label.set_fontsize(8)
            ax.text(0.01, 0.95, f"score {read['score']:.2f}", transform=ax.transAxes, va="top", fontsize=8)
            if j == 0 and read.get("heads") is not None:
                ax.legend(fontsize=6, loc="upper right")
        if has_kept:
            bottom = axes[-1, j]
            if "kept" in item:
                kept = np.asarray(item["kept"], dtype=float)
                bottom.imshow(kept, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                              extent=(0, kept.shape[1] / rate, kept.shape[0] - 0.5, -0.5))
                bottom.axvspan(*item["segment"], color="cyan", alpha=0.25)
                bottom.set(ylabel="head (kept keys)", xlim=(0, seconds))
            else:
                bottom.axis("off")
        axes[-1, j].set_xlabel("seconds")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    values = ", ".join(dict.fromkeys(item.get("values", "feature value") for item in items))
    kept = "; bottom: the keys each head keeps (black = kept)" if has_kept else ""
    return _save(fig, path, f"Top: the speech features (colour: {values}, each panel on its own scale), the "
                            "emotional phrase shaded cyan; below: the attention over time (per head a thin line, "
                            "their mean in black; the pooling weights in blue), with the utterance's localization "
                            f"score{kept}.")
