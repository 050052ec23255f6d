"""A run's predictions analysed by speaker: the spread of per-speaker scores, and the gender head's accuracy
on speakers seen in Train against unseen ones.

    by_speaker.spread(runs, split="Test1")         # fairness across speakers (Wagner et al. 2023)
    by_speaker.gender_seen_unseen(runs)            # what the gender head of Li et al. (2019) learns
    by_speaker.gender_seen_unseen_summary(runs)    # the same over seeds: mean, spread, interval of the mean

spread: Wagner et al. (2023, IEEE TPAMI, arXiv:2203.07378) found their models fair across sex but not across
speakers: per-speaker CCC varied widely. Per-speaker scores on a few utterances each vary by sampling alone,
so the observed spread (standard deviation, ddof 1, of the per-group metric over groups with at least
`min_n` utterances) is set against a permutation null: the group labels are shuffled over the split's
utterances (group sizes kept) n_perm times and the spread recomputed. p = (1 + #null spreads >= observed) /
(1 + n_perm); a small p says the groups differ more than random subsets of the same sizes would.

gender_seen_unseen: the gender head's accuracy (predictions.csv pred_gender, written by sercore.train for a
model with a gender head) on each evaluated split, over utterances whose speaker is in the run's Train split
("seen") and over the others ("unseen"), with 95 % percentile-bootstrap intervals over utterances. In the
generated corpus's MSP-Podcast layout (sercore.data.msp_layout) Development and Test1 share Train's speakers
and Test2's speakers are unseen, with white noise added; Test2 thus mixes both effects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sercore import metrics as M


def _joined(run: dict, columns=("speaker", "gender")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the run's predictions.csv joined with the corpus table's `columns`, the corpus table as the run read
    it: its corpus options, e.g. an IEMOCAP fold, decide which speakers are in Train)."""
    from sercore.data import load_corpus
    from sercore.data.corpus import detect_layout
    from sercore.train.run import load_options

    predictions = pd.read_csv(Path(run["out_dir"]) / "predictions.csv", dtype={"utt_id": str, "label": str,
                                                                               "pred": str})
    options = dict((run.get("provenance", {}).get("parameters") or {}).get("corpus_options") or {})
    table, _ = load_corpus(run["corpus"], check_audio=False,
                           **load_options(run["task"], detect_layout(Path(run["corpus"])), options))
    table = table.assign(utt_id=table["utt_id"].astype(str), speaker=table["speaker"].astype(str))
    joined = predictions.merge(table[["utt_id", *columns]], on="utt_id", how="left", validate="one_to_one",
                               indicator=True)
    missing = joined.loc[joined.pop("_merge") == "left_only", "utt_id"]
    if len(missing):
        raise ValueError(f"{run['out_dir']}/predictions.csv: {len(missing)} utterance(s) not in {run['corpus']} "
                         f"(e.g. {missing.iloc[0]}); the corpus changed since the run")
    return joined, table


def _metrics(task: str) -> dict:
    """Metric name -> (function, gold column, predicted column) for a run's task."""
    if task == "regression":
        return {f"ccc_{name}": (M.ccc, name, f"pred_{name}") for name in M.AVD}
    return {"balanced_accuracy": (M.balanced_accuracy, "label", "pred"), "macro_f1": (M.macro_f1, "label", "pred")}


def _group_values(fn, gold, pred, groups, names) -> np.ndarray:
    return np.array([fn(gold[groups == g], pred[groups == g]) for g in names], dtype=np.float64)


def spread(runs, by: str = "speaker", split: str = "Test1", min_n: int = 3, n_perm: int = 1000,
           seed: int = 0) -> pd.DataFrame:
    """One row per (run, metric): the number of groups kept (>= min_n utterances), the per-group metric's
    min, max and sd over them, the permutation null's median and 95th-percentile sd, and p (see the module
    docstring). runs: one run_grid dict (with out_dir and corpus) or a list."""
    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    rows = []
    for run in runs:
        joined, _ = _joined(run, (by,))
        part = joined[joined["split"] == split].reset_index(drop=True)
        if part.empty:
            raise ValueError(f"{run['out_dir']}/predictions.csv: no {split!r} utterances")
        sizes = part[by].astype(str).value_counts()
        names = sorted(sizes[sizes >= min_n].index)
        if len(names) < 2:
            raise ValueError(f"{run['out_dir']}: fewer than two {by} groups with >= {min_n} {split} utterances")
        part = part[part[by].astype(str).isin(names)].reset_index(drop=True)
        groups = part[by].astype(str).to_numpy()
        rng = np.random.default_rng(seed)
        shuffles = [rng.permutation(groups) for _ in range(n_perm)]
        for metric, (fn, gold_col, pred_col) in _metrics(run["task"]).items():
            gold, pred = part[gold_col].to_numpy(), part[pred_col].to_numpy()
            values = _group_values(fn, gold, pred, groups, names)
            observed = float(np.nanstd(values, ddof=1))
            null = np.array([np.nanstd(_group_values(fn, gold, pred, g, names), ddof=1) for g in shuffles])
            rows.append({"variant": run.get("variant"), "seed": run["provenance"]["seed"], "split": split,
                         "by": by, "metric": metric, "groups": len(names), "n": len(part),
                         "min": float(np.nanmin(values)), "max": float(np.nanmax(values)), "sd": observed,
                         "null_sd_median": float(np.median(null)), "null_sd_95": float(np.percentile(null, 95)),
                         "p": float((1 + np.sum(null >= observed)) / (1 + n_perm))})
    return pd.DataFrame(rows)


def _gender_parts(run: dict) -> dict:
    """(split, "seen" | "unseen") -> that part of the run's predictions (Female/Male speakers only), by utt_id."""
    joined, table = _joined(run)
    if "pred_gender" not in joined.columns:
        raise ValueError(f"{run['out_dir']}/predictions.csv has no pred_gender column: the model has no gender head")
    train_speakers = set(table.loc[table["split"] == "Train", "speaker"])
    joined = joined[joined["gender"].isin(["Female", "Male"])]
    joined = joined.assign(speakers=np.where(joined["speaker"].isin(train_speakers), "seen", "unseen"))
    return {key: part.sort_values("utt_id").reset_index(drop=True)
            for key, part in joined.groupby(["split", "speakers"], sort=True)}


def gender_seen_unseen(runs, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (run, split, seen/unseen): utterances, speakers, and the gender head's accuracy with its
    95 % interval. ValueError when a run's predictions.csv has no pred_gender (no gender head)."""
    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    rows = []
    for run in runs:
        for (split, seen), part in _gender_parts(run).items():
            entry = M.with_ci(M.accuracy, part["gender"].to_numpy(), part["pred_gender"].to_numpy(),
                              n_boot=n_boot, seed=seed)
            rows.append({"variant": run.get("variant"), "seed": run["provenance"]["seed"], "split": split,
                         "speakers": seen, "n": len(part), "n_speakers": part["speaker"].nunique(),
                         "gender_accuracy": entry["value"], "ci95_low": entry["ci95"][0],
                         "ci95_high": entry["ci95"][1]})
    return pd.DataFrame(rows)


def gender_seen_unseen_summary(runs, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """gender_seen_unseen over the seeds of each variant: one row per (variant, split, seen/unseen) with the
    mean gender accuracy, its sd (ddof 1), min and max across seeds, and a 95 % bootstrap interval of the seed
    mean (every seed resampled with the same utterances, as results.seed_summary). Seeds of a variant must
    have been scored on the same utterances, else ValueError naming the runs."""
    by_variant: dict = {}
    for run in runs if isinstance(runs, (list, tuple)) else [runs]:
        by_variant.setdefault(run.get("variant"), []).append(run)
    rows = []
    for variant, members in by_variant.items():
        parts = [_gender_parts(run) for run in members]
        for key in parts[0]:
            seeds = [p.get(key) for p in parts]
            ids = seeds[0]["utt_id"].tolist()
            for run, part in zip(members, seeds):
                if part is None or part["utt_id"].tolist() != ids:
                    raise ValueError(f"gender_seen_unseen_summary: {run['out_dir']} was scored on other {key[0]} "
                                     f"utterances than {members[0]['out_dir']}")
            columns = [[part["gender"].to_numpy(), part["pred_gender"].to_numpy()] for part in seeds]
            values = np.array([M.accuracy(*c) for c in columns])
            low, high = M.percentile_interval(M.bootstrap_seed_means(M.accuracy, columns, len(ids), n_boot, seed))
            rows.append({"variant": variant, "split": key[0], "speakers": key[1], "n": len(ids),
                         "n_speakers": seeds[0]["speaker"].nunique(), "n_seeds": len(values),
                         "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                         "min": float(values.min()), "max": float(values.max()),
                         "ci95_low": low, "ci95_high": high})
    return pd.DataFrame(rows)


def seen_unseen_reading(gender: pd.DataFrame, noisy: pd.DataFrame, split: str = "Test1") -> list[str]:
    """One sentence per variant on what the gender head learned, computed from gender_seen_unseen_summary
    (`gender`) and robustness.summary of gender_accuracy on `split` clean and with the unseen split's noise
    added (`noisy`; its non-"clean" rows): the seen speakers' score on `split`, the unseen speakers' (any split),
    and the seen speakers under that noise. Three readings: noise alone brings the seen speakers down to the
    unseen level (every seed's change interval below 0 and the noisy mean within or under the unseen interval):
    this corpus cannot tell unseen voices from noise; the head holds up under noise (no seed lower) while the
    unseen interval lies below the seen one: it learned the training voices; no seed lower and the two intervals
    overlapping: no difference to explain; anything else is said as mixed."""
    lines = []
    for variant, rows in gender.groupby("variant", sort=False):
        seen = rows[(rows["split"] == split) & (rows["speakers"] == "seen")]
        unseen = rows[rows["speakers"] == "unseen"]
        shaken = noisy[(noisy["variant"] == variant) & (noisy["perturbation"] != "clean")]
        if seen.empty or unseen.empty or shaken.empty:
            lines.append(f"{variant}: no {split} seen speakers, unseen speakers or noisy scores to compare.")
            continue
        s, u, z = seen.iloc[0], unseen.iloc[0], shaken.iloc[0]
        head = (f"{variant}: seen speakers ({split}) {s['mean']:.3f} [{s['ci95_low']:.3f}, {s['ci95_high']:.3f}], "
                f"unseen ({u['split']}) {u['mean']:.3f} [{u['ci95_low']:.3f}, {u['ci95_high']:.3f}], "
                f"seen with {z['perturbation']} {z['mean']:.3f} ({int(z['seeds_lower'])} of {int(z['seeds'])} "
                "seeds lower)")
        if z["seeds_lower"] == z["seeds"] and z["mean"] <= u["ci95_high"]:
            reading = "noise alone brings the seen speakers down to the unseen level, so these data cannot tell " \
                      "unseen voices from noise"
        elif z["seeds_lower"] == 0 and u["ci95_high"] < s["ci95_low"]:
            reading = "the head holds up under the noise but not on unseen speakers: it learned the training voices"
        elif z["seeds_lower"] == 0 and u["ci95_low"] <= s["ci95_high"] and s["ci95_low"] <= u["ci95_high"]:
            reading = "seen and unseen speakers are not told apart (intervals overlap) and the noise lowers no seed"
        else:
            reading = "mixed: neither noise alone nor the unseen voices alone account for the difference"
        lines.append(f"{head}: {reading}.")
    return lines
