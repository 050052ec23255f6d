"""Results pages: run a grid of training runs and turn their metrics.json files into tables.

    runs = results.run_grid("fusion", corpus, "runs/default/fusion", profile="default",
                            variants={"softmax": {"mechanism": "softmax"}, "kda": {"mechanism": "kda"}})
    results.metrics_table(runs, "macro_f1")

Each run is sercore.train.train_run, so a finished run with unchanged parameters is read back instead of
trained again, and an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

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
