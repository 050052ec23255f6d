"""Results pages: run a grid of training runs and turn their metrics.json files into tables.

    runs = results.run_grid("fusion", corpus, "runs/default/fusion", profile="default",
                            variants={"softmax": {"mechanism": "softmax"}, "kda": {"mechanism": "kda"}})
    results.metrics_table(runs, "macro_f1")
    results.seed_summary(runs, "balanced_accuracy")   # mean over seeds, spread, bootstrap interval

Each run is sercore.train.train_run, so a finished run with unchanged parameters is read back instead of
trained again, and an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PAPER_MECHANISMS = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")


def run_grid(study: str, corpus, out_root, profile: str = "default", variants: dict | None = None,
             seeds=(0,), **common) -> list[dict]:
    """Train `study` once per (variant, seed); variants maps a name to train_run keyword overrides."""
    from sercore.train import train_run

    variants = variants or {"default": {}}
    runs = []
    for name, overrides in variants.items():
        for seed in seeds:
            out_dir = Path(out_root) / f"{name}-seed{seed}"
            metrics = train_run(study, corpus, out_dir, profile=profile, seed=seed, **{**common, **overrides})
            runs.append({**metrics, "variant": name, "out_dir": str(out_dir)})
    return runs


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


def corpus_statement(runs: list[dict]) -> str:
    """The sentence every results page shows: which corpus produced these numbers."""
    kinds = sorted({run.get("corpus_kind", "unknown") for run in runs})
    corpora = sorted({run.get("corpus", "?") for run in runs})
    if kinds == ["generated demonstration corpus"]:
        return (f"Computed on the generated demonstration corpus ({', '.join(corpora)}): a working demonstration "
                "of the pipeline, not the papers' claims.")
    return f"Computed on {', '.join(kinds)} ({', '.join(corpora)})."


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
            rng = np.random.default_rng(seed)
            boots = np.empty(n_boot)
            for b in range(n_boot):
                pick = rng.integers(0, len(ids), size=len(ids))
                boots[b] = np.mean([fn(*(c[pick] for c in a)) for a in arrays])
            boots = boots[np.isfinite(boots)]
            low, high = np.percentile(boots, [2.5, 97.5]) if boots.size else (np.nan, np.nan)
            rows.append({"variant": variant, "split": split, "n_seeds": len(values), "n": len(ids),
                         "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                         "min": float(values.min()), "max": float(values.max()),
                         "ci95_low": float(low), "ci95_high": float(high)})
    return pd.DataFrame(rows)


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
