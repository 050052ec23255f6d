"""Results pages: run a grid of training runs and turn their metrics.json files into tables.

    runs = results.run_grid("fusion", corpus, "runs/default/fusion", profile="default",
                            variants={"softmax": {"mechanism": "softmax"}, "kda": {"mechanism": "kda"}})
    results.metrics_table(runs, "macro_f1")
    results.seed_summary(runs, "balanced_accuracy")   # mean over seeds, spread, bootstrap interval
    results.corpus_statement(runs)                     # the corpus, and the machine that trained the runs
    results.headline_table("runs/default")            # every study's headline number (the summary page)
    flipped, pairs = results.direction_variants(["softmax", "kda"])   # each mixer in the other direction
    results.compare(summary, pairs, labels=("causal", "bidirectional"))
    results.budget_table(runs)                         # epochs, steps, VTLP copies and warp per run

Seeds of a page's grid come from one place, the profile's `results` section (profile_seeds: `seeds`, or
`by_study.<study>` for a study whose page needs other seeds than the profile's budget gives the rest: fewer
for a heavy one, more for a curve drawn with intervals); a page's own sweep values (e.g. keep_rates) are in
the profile's `studies` section (page_sweep, which checks them), without seeds. A sentence that
ranks two variants needs at least MIN_SEEDS seeds each and 95 % intervals that do not overlap; compare()
writes that reading per pair, so a page never ranks on less.

Each run is sercore.train.train_run, so a finished run with unchanged parameters is read back instead of
trained again, and an interrupted grid resumes where it stopped. run_grid(..., workers=N) trains the runs in
N processes with one torch thread each: the runs are independent and seeded, so each gives the metrics it
gives alone with one thread (CPU sums depend on the thread count, which provenance.device records). The
first run of a grid runs alone, so the others find its features in the cache rather than computing them
at the same time. workers=None reads SERCORE_GRID_WORKERS (what `python -m sercore book --workers N` sets
for its pages), else 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sercore.attention import PAPER_NAMES as PAPER_MECHANISMS  # the one list of them is sercore.attention's  # noqa: F401
WORKERS_VARIABLE = "SERCORE_GRID_WORKERS"
MIN_SEEDS = 3  # seeds per variant before a page may rank two variants
# the pages whose sweep values a profile's `studies` section holds, and the keys each needs (page_sweep)
PAGE_SWEEPS = {"keysparse": ("keep_rates", "fusion_mechanisms")}


def profile_seeds(profile: str, study: str | None = None) -> list[int]:
    """The seeds a results page of `profile` trains for `study`: the profile's results.seeds, or
    results.by_study[study] where that study's page needs others. A by_study key that is no study is refused
    (a misspelt one would silently give results.seeds)."""
    from sercore.profiles import section
    from sercore.studies import STUDIES

    cfg = section(profile, "results")
    by_study = cfg.get("by_study") or {}
    unknown = sorted(set(by_study) - set(STUDIES))
    if unknown:
        raise ValueError(f"profile {profile!r}: results.by_study has {', '.join(unknown)}, which is no study; "
                         f"studies: {', '.join(STUDIES)}")
    seeds = by_study.get(study, cfg.get("seeds"))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"profile {profile!r}: results.seeds must be a non-empty list of integers, got {seeds!r}")
    return list(seeds)


def page_sweep(profile: str, page: str) -> dict:
    """A page's sweep values: the profile's studies.<page> section with the keys PAGE_SWEEPS names, checked
    here so that a profile without them fails in one line naming its file, not with a KeyError inside the page.
    keysparse: keep_rates (each in (0, 1]: the model keeps int(L * keep_rate) keys and k = 0 is refused) and
    fusion_mechanisms (sequence mixers, trained on the localized corpus for the heatmaps)."""
    from sercore.attention import SEQUENCE_NAMES
    from sercore.profiles import profile_path, section

    where = f"profile {profile!r} ({profile_path(profile)})"
    if page not in PAGE_SWEEPS:
        raise ValueError(f"no page {page!r} reads a studies section; pages: {', '.join(PAGE_SWEEPS)}")
    sweep = section(profile, "studies").get(page)
    if not isinstance(sweep, dict):
        raise ValueError(f"{where}: no studies.{page} section; the {page} page needs "
                         f"{', '.join(PAGE_SWEEPS[page])} there")
    missing = [key for key in PAGE_SWEEPS[page] if not sweep.get(key)]
    unknown = sorted(set(sweep) - set(PAGE_SWEEPS[page]))
    if missing or unknown:
        raise ValueError(f"{where}: studies.{page} " + "; ".join(
            ([f"lacks (or has empty) {', '.join(missing)}"] if missing else [])
            + ([f"has {', '.join(unknown)}, which the page does not read"] if unknown else [])))
    if page == "keysparse":
        rates = sweep["keep_rates"]
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in rates):
            raise ValueError(f"{where}: studies.keysparse.keep_rates must be numbers in (0, 1], got {rates!r}")
        bad = [m for m in sweep["fusion_mechanisms"] if m not in SEQUENCE_NAMES]
        if bad:
            raise ValueError(f"{where}: studies.keysparse.fusion_mechanisms has {bad!r}; "
                             f"mechanisms: {', '.join(SEQUENCE_NAMES)}")
    return dict(sweep)


def run_grid(study: str, corpus, out_root, profile: str = "default", variants: dict | None = None,
             seeds=(0,), workers: int | None = None, **common) -> list[dict]:
    """Train `study` once per (variant, seed); variants maps a name to train_run keyword overrides. The runs
    come back in (variant, seed) order whatever `workers` (processes; see the module docstring) is."""
    variants = variants or {"default": {}}
    jobs = [(study, str(corpus), str(Path(out_root) / f"{name}-seed{seed}"), profile, seed, {**common, **overrides})
            for name, overrides in variants.items() for seed in seeds]
    names = [name for name in variants for _ in seeds]
    workers = grid_workers(workers)
    if workers == 1 or len(jobs) < 2:
        metrics = [_train(*job) for job in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked copy of a process that already ran torch's thread pool can hang
        with ProcessPoolExecutor(min(workers, len(jobs) - 1), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_one_thread) as pool:
            first = pool.submit(_train, *jobs[0]).result()
            metrics = [first, *pool.map(_train, *zip(*jobs[1:]))]
    return [{**m, "variant": name, "out_dir": job[2]} for m, name, job in zip(metrics, names, jobs)]


def grid_workers(workers: int | None = None) -> int:
    """The processes run_grid uses: `workers`, else $SERCORE_GRID_WORKERS, else 1; refused unless >= 1."""
    value = os.environ.get(WORKERS_VARIABLE, "1") if workers is None else workers
    where = f"${WORKERS_VARIABLE}" if workers is None else "workers"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"run_grid: {where}={value!r}; expected a whole number of processes >= 1")
    return count


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _train(study, corpus, out_dir, profile, seed, overrides) -> dict:
    from sercore.train import train_run

    return train_run(study, corpus, out_dir, profile=profile, seed=seed, **overrides)


def metrics_table(runs: list[dict], metric: str = "macro_f1", splits=None) -> pd.DataFrame:
    """One row per run: its variant, seed, `metric` per evaluated split as value and 95 % interval, wall time."""
    rows = []
    for run in runs:
        row = {"variant": run.get("variant", run.get("mechanism")), "seed": run["provenance"]["seed"]}
        for split, values in run["splits"].items():
            if splits and split not in splits:
                continue
            entry = values[metric]
            low, high = entry["ci95"]
            row[split] = entry["value"]
            row[f"{split} 95% CI"] = f"[{low:.3f}, {high:.3f}]"
        row["wall time (s)"] = round(run["wall_time_s"], 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["variant", "seed"])


def budget_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: the training it got (epochs, steps per epoch, steps taken, a step cap if any, the
    training items an epoch holds) and its VTLP copies and warp, so a page shows that compared runs had the
    same passes over their data."""
    rows = []
    for run in runs:
        train, training = run["provenance"]["parameters"]["train"], run["training"]
        rows.append({"variant": run.get("variant", run.get("mechanism")), "seed": run["provenance"]["seed"],
                     "epochs": train["epochs"], "max_steps": train["max_steps"],
                     "steps per epoch": training["steps_per_epoch"], "steps": training["steps"],
                     "training items": run["data"].get("train_items"), "VTLP copies": train["vtlp_copies"],
                     "VTLP warp": train["vtlp_warp"] if train["vtlp_copies"] else "-"})
    return pd.DataFrame(rows).set_index(["variant", "seed"])


def corpus_statement(runs: list[dict]) -> str:
    """The sentences every results page shows: which corpus produced these numbers and which machine trained
    the runs (machine)."""
    kinds = sorted({run.get("corpus_kind", "unknown") for run in runs})
    corpora = sorted({run.get("corpus", "?") for run in runs})
    trained = f" Trained on {machine(runs)}."
    if kinds == ["generated demonstration corpus"]:
        return (f"Computed on the generated demonstration corpus ({', '.join(corpora)}): a working demonstration "
                "of the pipeline, not the papers' claims." + trained)
    return f"Computed on {', '.join(kinds)} ({', '.join(corpora)})." + trained


def machine(runs: list[dict]) -> str:
    """The devices that trained `runs`, from each run's provenance.device: the GPU's name for a CUDA run, else
    "CPU (N cores, T torch threads)" (CPU sums depend on the thread count), else the torch device as recorded;
    "N x" before it for a run of N processes (world_size). Several devices are joined by " + "; a run that
    recorded none is "an unrecorded device"."""
    names = set()
    for run in runs:
        device = run.get("provenance", {}).get("device", {})
        used = str(device.get("torch_device", ""))
        if used.startswith("cuda") and device.get("cuda_device"):
            name = str(device["cuda_device"])
        elif used == "cpu":
            threads = device.get("torch_threads")
            name = (f"CPU ({device.get('cpu_count', '?')} cores, {threads} torch "
                    f"thread{'' if threads == 1 else 's'})")
        else:
            name = used or "an unrecorded device"
        world = run.get("world_size", 1) or 1
        names.add(f"{world} x {name}" if world > 1 else name)
    return " + ".join(sorted(names)) or "an unrecorded device"


def ranking(summary: pd.DataFrame, split: str, metric: str = "") -> str:
    """The sentence a page may print about how the variants of a seed_summary compare on `split`: a ranking
    only between variants with at least 3 seeds whose 95 % intervals do not overlap; pairs whose intervals
    overlap are said to be indistinguishable; with fewer than 3 seeds the order is a single-seed (or
    few-seed) observation."""
    part = summary[summary["split"] == split].sort_values("mean", ascending=False)
    if len(part) < 2:
        return f"{split}: one variant, nothing to rank."
    name = f"{metric} " if metric else ""
    rows = list(part.itertuples())
    # equal means at the printed precision are written "=", so a tie never reads as an order
    order = f"{rows[0].variant} ({rows[0].mean:.3f})" + "".join(
        f" {'=' if f'{a.mean:.3f}' == f'{b.mean:.3f}' else '>'} {b.variant} ({b.mean:.3f})"
        for a, b in zip(rows, rows[1:]))
    if part["n_seeds"].min() < 3:
        return (f"{split} {name}order {order}: a {'single' if part['n_seeds'].min() == 1 else 'few'}-seed "
                "observation, not a ranking (fewer than 3 seeds).")
    separated, tied = [], []
    for i, high in enumerate(rows):
        for low in rows[i + 1:]:
            (separated if high.ci95_low > low.ci95_high else tied).append(f"{high.variant} vs {low.variant}")
    text = f"{split} {name}means {order}, {int(part['n_seeds'].min())}+ seeds each."
    if separated:
        text += f" Intervals do not overlap, so ranked: {'; '.join(separated)}."
    if tied:
        text += f" Intervals overlap, so not ranked: {'; '.join(tied)}."
    return text


def by_group(run: dict, by: str = "gender") -> pd.DataFrame:
    """A run's test metrics per group of utterances (e.g. per gender or speaker), from its predictions.csv
    joined with the corpus table: CCC per dimension for regression, macro-F1 and UA for classification."""
    from sercore import metrics as M
    from sercore.data import load_corpus

    predictions = pd.read_csv(Path(run["out_dir"]) / "predictions.csv", dtype={"utt_id": str})
    table, _ = load_corpus(run["corpus"], check_audio=False)
    joined = predictions.merge(table[["utt_id", by]], on="utt_id", how="left", validate="one_to_one")
    rows = []
    for (split, group), part in joined.groupby(["split", by], sort=True):
        row = {"split": split, by: group, "n": len(part)}
        if run["task"] == "regression":
            for name in ("arousal", "valence", "dominance"):
                row[f"CCC {name}"] = M.ccc(part[name].to_numpy(), part[f"pred_{name}"].to_numpy())
        else:
            row["macro_f1"] = M.macro_f1(part["label"].astype(str), part["pred"].astype(str))
            row["UA"] = M.balanced_accuracy(part["label"].astype(str), part["pred"].astype(str))
        rows.append(row)
    return pd.DataFrame(rows).set_index(["split", by])


def _metric_fn(metric: str):
    """The function and the predictions.csv columns of a metric named as in metrics.json."""
    from sercore import metrics as M

    labelled = {"macro_f1": M.macro_f1, "balanced_accuracy": M.balanced_accuracy, "accuracy": M.accuracy}
    if metric in labelled:
        return labelled[metric], ("label", "pred")
    if metric == "ccc_mean":
        columns = tuple(c for name in M.AVD for c in (name, f"pred_{name}"))
        return (lambda *cols: float(np.mean([M.ccc(cols[i], cols[i + 1]) for i in range(0, len(cols), 2)]))), columns
    if metric.startswith("ccc_") and metric[4:] in M.AVD:
        return M.ccc, (metric[4:], f"pred_{metric[4:]}")
    raise ValueError(f"seed_summary: unknown metric {metric!r}; use macro_f1, balanced_accuracy, accuracy, "
                     f"ccc_mean or ccc_<{'|'.join(M.AVD)}>")


def seed_summary(runs: list[dict], metric: str = "macro_f1", splits=None, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (variant, split): `metric` over the variant's seeds as mean, standard deviation (ddof 1),
    min and max, and a 95 % percentile-bootstrap interval of the seed mean.

    The interval resamples utterances: each bootstrap draw takes the split's utterances with replacement
    (the same draw for every seed, since all seeds are scored on the same utterances) and averages the
    per-seed metrics on it, so it covers test-set sampling for the seed-averaged model; the spread across
    seeds (sd, min, max) is reported beside it, not folded in. Seeds of one variant must have been evaluated
    on the same utterances (their predictions.csv files), else this raises naming the runs."""
    from sercore import metrics as M

    fn, columns = _metric_fn(metric)
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        by_variant.setdefault(run.get("variant", run.get("mechanism")), []).append(run)
    rows = []
    for variant, members in by_variant.items():
        tables = [pd.read_csv(Path(r["out_dir"]) / "predictions.csv", dtype={"utt_id": str, "label": str,
                                                                          "pred": str}) for r in members]
        names = sorted(set(tables[0]["split"]) if splits is None else splits)
        for split in names:
            parts = [t[t["split"] == split].sort_values("utt_id").reset_index(drop=True) for t in tables]
            if not len(parts[0]):
                continue
            ids = parts[0]["utt_id"].tolist()
            for run, part in zip(members, parts):
                if part["utt_id"].tolist() != ids:
                    raise ValueError(f"seed_summary: {run['out_dir']} was scored on other {split} utterances "
                                     f"than {members[0]['out_dir']}; seeds of {variant!r} must share the data")
            arrays = [[p[c].to_numpy() for c in columns] for p in parts]
            values = np.array([fn(*a) for a in arrays], dtype=np.float64)
            low, high = M.percentile_interval(M.bootstrap_seed_means(fn, arrays, len(ids), n_boot, seed))
            rows.append({"variant": variant, "split": split, "n_seeds": len(values), "n": len(ids),
                         "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                         "min": float(values.min()), "max": float(values.max()),
                         "ci95_low": float(low), "ci95_high": float(high)})
    return pd.DataFrame(rows)


# The studies' pages as the summary reads them, in the book's order: (page, folder under runs/<profile>/,
# study, the page's headline metric). The split is the first "Test..." split of each run (else its last).
HEADLINES = (
    ("accuracy", "accuracy", "fusion", "macro_f1"),
    ("keysparse", "keysparse", "ks-transformer", "balanced_accuracy"),
    ("area", "area", "area-cnn", "balanced_accuracy"),
    ("multitask", "multitask", "multitask", "balanced_accuracy"),
    ("dimensional", "dimensional", "dimensional", "ccc_mean"),
)


def _headline_split(splits: dict) -> str:
    tests = [name for name in splits if name.startswith("Test")]
    return tests[0] if tests else list(splits)[-1]


def headline_table(runs_root) -> pd.DataFrame:
    """Every study's headline number from the finished runs under runs_root (e.g. runs/default), one row per
    (page, variant): the metric on the first test split, averaged over the variant's seeds, with its spread.

    A variant's seeds are the folders `<variant>-seed<N>` of run_grid (metrics.json with finished: true,
    searched recursively, so sub-grids such as keysparse's are found). One seed: the interval is that run's
    95 % bootstrap interval; several: the lowest and highest seed (no interval of the mean is claimed here,
    see seed_summary). A page with no finished run is one row with status "not run". The corpus column is
    the corpus folder's name and its kind (the generated demonstration corpus is said to be one), never a
    machine path; the machine column the devices that trained the runs (machine)."""
    import json

    root = Path(runs_root)
    rows = []
    for page, folder, study, metric in HEADLINES:
        by_variant: dict[str, list[dict]] = {}
        for path in sorted((root / folder).rglob("metrics.json")) if (root / folder).is_dir() else []:
            try:
                run = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: not a readable metrics.json ({error})") from None
            if not run.get("finished"):
                continue
            name = path.parent.relative_to(root / folder).as_posix()
            variant = name.rsplit("-seed", 1)[0] if "-seed" in name else name
            by_variant.setdefault(variant, []).append(run)
        if not by_variant:
            rows.append({"page": page, "study": study, "variant": "", "status": "not run", "metric": metric})
            continue
        for variant, runs in by_variant.items():
            split = _headline_split(runs[0]["splits"])
            missing = [r for r in runs if metric not in r["splits"].get(split, {})]
            if missing:
                raise ValueError(f"{root / folder}: run {variant!r} has no {metric} on {split}")
            values = [r["splits"][split][metric]["value"] for r in runs]
            low, high = runs[0]["splits"][split][metric]["ci95"] if len(runs) == 1 else (min(values), max(values))
            corpora = sorted({f"{Path(r.get('corpus', '?')).name} ({r.get('corpus_kind', 'unknown')})" for r in runs})
            rows.append({"page": page, "study": study, "variant": variant, "status": "finished", "metric": metric,
                         "split": split, "seeds": len(runs), "value": float(np.mean(values)),
                         "interval": "95% CI" if len(runs) == 1 else "seed range", "low": float(low),
                         "high": float(high), "profile": ", ".join(sorted({str(r.get("profile")) for r in runs})),
                         "corpus": "; ".join(corpora), "machine": machine(runs)})
    columns = ["page", "study", "variant", "status", "metric", "split", "seeds", "value", "interval", "low", "high",
               "profile", "corpus", "machine"]
    return pd.DataFrame(rows).reindex(columns=columns).astype({"seeds": "Int64"})


def direction_variants(mechanisms) -> tuple[dict, dict]:
    """The grid with every mechanism's direction flipped, and the (causal, bidirectional) variant pairs.

    The paper ran softmax attention bidirectionally and the five fla-style mixers causally (sercore.fidelity,
    fusion mechanism_options). A mixer with a `causal` option is bidirectional by default and is flipped with
    causal=True; one with a `bidirectional` option is causal by default and flipped with bidirectional=True.
    Returns ({flipped variant name: train_run overrides}, {mechanism: (causal variant, bidirectional variant)}),
    where the unflipped variant is named by the mechanism, as in the paper grid."""
    import inspect

    from sercore.attention import mechanism_class

    flipped, pairs = {}, {}
    for name in mechanisms:
        options = inspect.signature(mechanism_class(name)).parameters
        if "causal" in options:
            flipped[f"{name}-causal"] = {"mechanism": name, "model.mechanism_options": {"causal": True}}
            pairs[name] = (f"{name}-causal", name)
        elif "bidirectional" in options:
            flipped[f"{name}-bidirectional"] = {"mechanism": name, "model.mechanism_options": {"bidirectional": True}}
            pairs[name] = (name, f"{name}-bidirectional")
        else:
            raise ValueError(f"{name}: its module has neither a causal nor a bidirectional option to flip")
    return flipped, pairs


def caption(runs: list[dict]) -> str:
    """A figure's caption line: the corpus (labelled when generated), the profile and the seeds of `runs`."""
    kinds = sorted({run.get("corpus_kind", "unknown") for run in runs})
    profiles = sorted({str(run.get("profile", "?")) for run in runs})
    seeds = sorted({run["provenance"]["seed"] for run in runs})
    return (f"{' + '.join(kinds)}; profile {', '.join(profiles)}; "
            f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})")


def reading(a: dict, b: dict, names=("a", "b"), min_seeds: int = MIN_SEEDS) -> str:
    """What two seed_summary rows allow one to say: which is higher when both have at least `min_seeds`
    seeds and their 95 % intervals do not overlap; otherwise why no ranking is made."""
    seeds = min(int(a["n_seeds"]), int(b["n_seeds"]))
    if seeds < min_seeds:
        return f"{'single' if seeds == 1 else seeds}-seed observation, no ranking"
    if a["ci95_low"] > b["ci95_high"]:
        return f"{names[0]} higher ({seeds} seeds, intervals apart)"
    if b["ci95_low"] > a["ci95_high"]:
        return f"{names[1]} higher ({seeds} seeds, intervals apart)"
    return f"intervals overlap ({seeds} seeds), no ranking"


def compare(summary: pd.DataFrame, pairs: dict, split: str = "Test1", labels=("a", "b")) -> pd.DataFrame:
    """One row per pair name: the two variants' mean with 95 % interval on `split` (from seed_summary), the
    difference second minus first, and reading(). pairs maps a name to (first variant, second variant)."""
    part = summary[summary["split"] == split].set_index("variant")
    rows = []
    for name, (first, second) in pairs.items():
        missing = [v for v in (first, second) if v not in part.index]
        if missing:
            raise ValueError(f"compare: no {split} summary for {missing} (variants: {sorted(part.index)})")
        a, b = part.loc[first], part.loc[second]
        row = {"name": name}
        for label, entry in zip(labels, (a, b)):
            row[label] = entry["mean"]
            row[f"{label} 95% CI"] = f"[{entry['ci95_low']:.3f}, {entry['ci95_high']:.3f}]"
        row[f"{labels[1]} - {labels[0]}"] = b["mean"] - a["mean"]
        row["seeds"] = int(min(a["n_seeds"], b["n_seeds"]))
        row["reading"] = reading(a, b, labels)
        rows.append(row)
    return pd.DataFrame(rows).set_index("name")


def sweep_summary(runs: list[dict], metric: str = "balanced_accuracy", parameter: str = "keep_rate",
                  splits=None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """seed_summary with the swept model option of each variant as a column (e.g. keep_rate), in sweep order:
    the table a curve such as plots.sparsity_curves draws."""
    values = {}
    for run in runs:
        variant = run.get("variant", run.get("mechanism"))
        value = run["provenance"]["parameters"]["model"].get(parameter)
        if values.setdefault(variant, value) != value:
            raise ValueError(f"sweep_summary: runs of variant {variant!r} differ in {parameter}")
    table = seed_summary(runs, metric, splits=splits, n_boot=n_boot, seed=seed)
    table.insert(1, parameter, table["variant"].map(values))
    return table.sort_values([parameter, "split"], kind="stable").reset_index(drop=True)
