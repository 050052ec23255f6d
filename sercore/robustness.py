"""Robustness of a trained run to perturbed audio at evaluation: additive white noise at a chosen SNR and
gain changes, applied to the waveform before feature extraction. Wagner et al. (2023, "Dawn of the
transformer era in speech emotion recognition", IEEE TPAMI, arXiv:2203.07378) analyse their models'
robustness to small perturbations; the two kinds and their levels here are this library's choice, not a
copy of the paper's list.

    table = evaluate_perturbed(runs, perturbations(snr_db=(20, 10, 5, 0), gain_db=(-6, 6)), split="Test1")

perturb(wave, rate, kind, value, seed) returns a new float32 wave:
  "clean"  the wave unchanged (value ignored);
  "snr"    wave + noise, white Gaussian noise drawn from numpy's default_rng(seed) and scaled so that
           10 log10(P_wave / P_noise) = value dB exactly, P being the mean square over the whole file, pauses
           included (the convention of the generated corpus's Test2 noise, sercore.data.msp_layout);
  "gain"   wave x 10^(value / 20), not clipped: the features see the scaled float samples (a 16-bit file
           written from a +6 dB wave would clip its peaks, which this does not model).
White noise is flat up to rate / 2 whatever the rate, so `rate` only has to be a positive sample rate.

evaluate_perturbed reads a finished run (metrics.json, checkpoints/best.pt) as sercore.predict does,
takes the utterances the run scored on `split` (its predictions.csv), perturbs each one's audio, computes
the features in memory (never written to the feature cache, whose entries are keyed by the audio file's
bytes and so must hold the clean features only) and scores the run's best-dev weights on them. Each
utterance's noise comes from default_rng([seed, crc32(utt_id)]): the same noise for that utterance in
every run and in any order, so seeds and variants are compared on identical perturbed audio. The clean
row reproduces the run's own metrics on `split`.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("clean", "snr", "gain")


def perturb(wave: np.ndarray, rate: int, kind: str, value: float | None = None, seed=0) -> np.ndarray:
    """The wave under one perturbation (see the module docstring); ValueError on a bad kind, a missing
    value, a non-positive rate, or noise asked of a silent wave (it has no SNR)."""
    if kind not in KINDS:
        raise ValueError(f"perturb: kind must be one of {KINDS}, got {kind!r}")
    if not rate > 0:
        raise ValueError(f"perturb: rate must be a positive sample rate, got {rate!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if kind == "clean":
        return wave.copy()
    if value is None or not np.isfinite(value):
        raise ValueError(f"perturb: kind {kind!r} needs a finite value in dB, got {value!r}")
    if kind == "gain":
        return (wave.astype(np.float64) * 10.0 ** (value / 20.0)).astype(np.float32)
    power = float(np.mean(wave.astype(np.float64) ** 2))
    if power == 0.0:
        raise ValueError("perturb: the wave is silent (zero power), so no noise level gives an SNR")
    noise = np.random.default_rng(seed).standard_normal(len(wave))
    noise *= np.sqrt(power / 10.0 ** (value / 10.0) / np.mean(noise ** 2))  # the drawn noise's own power
    return (wave + noise).astype(np.float32)


def perturbations(snr_db=(20, 10, 5, 0), gain_db=(-6, 6)) -> list[tuple[str, float | None]]:
    """[("clean", None), ("snr", 20), ..., ("gain", -6), ...]: the clean reference first."""
    return [("clean", None)] + [("snr", float(v)) for v in snr_db] + [("gain", float(v)) for v in gain_db]


def label(kind: str, value) -> str:
    """How a perturbation is named in tables and figures."""
    if kind == "clean":
        return "clean"
    return f"noise {value:g} dB SNR" if kind == "snr" else f"gain {value:+g} dB"


def evaluate_perturbed(runs, perturbation_list, split: str = "Test1", n_boot: int = 1000, seed: int = 0,
                       device: str = "cpu") -> pd.DataFrame:
    """One row per (run, perturbation, metric): the run's seed and variant, the perturbation (kind, value,
    name), the metric (ccc_arousal, ccc_valence, ccc_dominance for the dimensional study; balanced_accuracy,
    macro_f1 and gender_accuracy when the model has a gender head, for classification), its value on
    `split` with the 95 % percentile-bootstrap interval over utterances, its change from the clean score
    with a paired interval (both scored on the same resample of utterances), and n.

    runs: one run or a list (run_grid's dicts with out_dir, or run folders). A model with a text stream is
    refused: the transcript is not audio, and this module perturbs audio only."""
    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    frames = [_evaluate_one(run, perturbation_list, split, n_boot, seed, device) for run in runs]
    return pd.concat(frames, ignore_index=True)


def _run_dir(run) -> Path:
    return Path(run["out_dir"] if isinstance(run, dict) else run)


def _evaluate_one(run, perturbation_list, split, n_boot, seed, device) -> pd.DataFrame:
    import torch

    from sercore import metrics as M
    from sercore.data import load_corpus
    from sercore.data.audio import read_audio
    from sercore.data.corpus import detect_layout
    from sercore.predict import CHECKPOINT, _run_record
    from sercore.train.datasets import EvalItems, Utterances
    from sercore.train.run import load_options, model_spec, segment_length, spec_model
    from sercore.train.settings import TrainSettings
    from sercore.train.trainer import predict

    run_dir = _run_dir(run)
    finished = _run_record(run_dir)
    parameters = finished["provenance"]["parameters"]
    study, task = parameters["study"], finished["task"]
    spec = model_spec(study, parameters.get("mechanism"), parameters["model"], dict(parameters["features"]))
    if spec.inputs.get("text"):
        raise ValueError(f"{run_dir}: {study} reads transcripts too; evaluate_perturbed perturbs audio only")
    settings = TrainSettings(**{**parameters["train"], "progress": False})

    scored = pd.read_csv(run_dir / "predictions.csv", dtype={"utt_id": str})
    scored = scored.loc[scored["split"] == split, "utt_id"]
    if scored.empty:
        raise ValueError(f"{run_dir / 'predictions.csv'}: the run scored no {split!r} utterances")
    corpus = Path(parameters["corpus"])
    options = load_options(task, detect_layout(corpus), dict(parameters.get("corpus_options") or {}))
    table, _ = load_corpus(corpus, **options)
    # the run's own rows in the run's own order (table order), so batches and the clean scores match
    table = table[table["utt_id"].astype(str).isin(set(scored))].reset_index(drop=True)
    if len(table) != len(scored):
        raise ValueError(f"{run_dir}: {len(scored)} {split} utterances in predictions.csv but {len(table)} "
                         f"of them in {corpus}; the corpus changed since the run")

    classes = finished["classes"] if task == "classification" else None
    avd_range = (finished.get("data") or {}).get("avd_range")
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)["model"]
    torch_device = torch.device(device)
    encoder, rate = spec.encoder, spec.encoder.sample_rate
    waves = [read_audio(path, sample_rate=rate) for path in table["path"]]
    ids = table["utt_id"].astype(str).tolist()
    model, reference, rows = None, None, []
    # clean first: every perturbed score is also given as its paired change from the clean one
    for kind, value in [("clean", None)] + [p for p in perturbation_list if p[0] != "clean"]:
        speech = []
        for utt, path, wave in zip(ids, table["path"], waves):
            try:
                speech.append(encoder(perturb(wave, rate, kind, value, seed=[seed, zlib.crc32(utt.encode())])))
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        data = Utterances.from_table(table, speech, None, frames_per_second=spec.fps, classes=classes,
                                     avd_range=tuple(avd_range) if avd_range else None)
        if model is None:
            model = spec_model(spec, data, settings)
            model.load_state_dict(state)
            model.to(torch_device)
        index = np.arange(len(table))
        if spec.segmented:
            items = EvalItems(data, index, settings.eval_batch_size, segment_length(settings, spec.fps),
                              int(round(settings.segment_hop_test * spec.fps)), settings.short_segments,
                              max_frames=settings.eval_max_frames)
        else:
            items = EvalItems(data, index, settings.eval_batch_size, max_frames=settings.eval_max_frames)
        scores = _scores(task, data, items, predict(model, items, torch_device, amp=settings.amp))
        reference = reference or scores
        if kind == "clean" and ("clean", None) not in [tuple(p) for p in perturbation_list]:
            continue
        for metric, (fn, gold, pred) in scores.items():
            entry = M.with_ci(fn, gold, pred, n_boot=n_boot, seed=seed)
            clean_pred = reference[metric][2]
            # paired: one resample of utterances scores both, so the change's interval is not the
            # (much wider) overlap of two separate intervals
            delta = M.with_ci(lambda g, c, p, fn=fn: fn(g, p) - fn(g, c), gold, clean_pred, pred,
                              n_boot=n_boot, seed=seed)
            rows.append({"variant": run.get("variant") if isinstance(run, dict) else None,
                         "seed": parameters["seed"], "perturbation": label(kind, value), "kind": kind,
                         "value_db": value, "split": split, "metric": metric, "value": entry["value"],
                         "ci95_low": entry["ci95"][0], "ci95_high": entry["ci95"][1],
                         "change": delta["value"], "change_ci95_low": delta["ci95"][0],
                         "change_ci95_high": delta["ci95"][1], "n": len(gold)})
    return pd.DataFrame(rows)


def _scores(task: str, data, items, out: dict) -> dict:
    """Metric name -> (function, gold, predicted) for one evaluation's outputs."""
    from sercore import metrics as M
    from sercore.train.datasets import AVD_COLUMNS

    if task == "regression":
        return {f"ccc_{name}": (M.ccc, data.avd[items.rows, d], out["avd"][:, d])
                for d, name in enumerate(AVD_COLUMNS)}
    gold = data.label[items.rows]
    scores = {"balanced_accuracy": (M.balanced_accuracy, gold, out["probs"].argmax(axis=1)),
              "macro_f1": (M.macro_f1, gold, out["probs"].argmax(axis=1))}
    if "gender_probs" in out:
        known = data.gender[items.rows] >= 0
        scores["gender_accuracy"] = (M.accuracy, data.gender[items.rows][known],
                                     out["gender_probs"].argmax(axis=1)[known])
    return scores


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """evaluate_perturbed's rows over seeds, per (variant, perturbation, metric): the mean, sd (ddof 1), min
    and max of the score, the mean paired change from clean, and how many seeds' change intervals lie wholly
    below 0 and wholly above 0."""
    keys = ["perturbation", "metric"] if table["variant"].isna().all() else ["variant", "perturbation", "metric"]
    grouped = table.groupby(keys, sort=False)
    out = grouped["value"].agg(["count", "mean", "std", "min", "max"]).rename(columns={"count": "seeds",
                                                                                      "std": "sd"})
    out["change_mean"] = grouped["change"].mean()
    out["seeds_lower"] = grouped["change_ci95_high"].agg(lambda x: int((x < 0).sum()))
    out["seeds_higher"] = grouped["change_ci95_low"].agg(lambda x: int((x > 0).sum()))
    return out.reset_index()


def record(table: pd.DataFrame, path, runs, device: str = "cpu", **parameters) -> Path:
    """Write `table` as JSON with what produced it: the parameters given, the runs (folders, their data
    and code keys, corpus), git SHA, versions and device (sercore.provenance.provenance)."""
    from sercore.provenance import atomic_write_json, provenance

    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    sources = []
    for run in runs:
        metrics = json.loads((_run_dir(run) / "metrics.json").read_text(encoding="utf-8"))
        sources.append({"out_dir": str(_run_dir(run)), "corpus": metrics.get("corpus"),
                        "corpus_kind": metrics.get("corpus_kind"),
                        **{k: metrics["provenance"].get(k) for k in ("data_key", "code_key")}})
    path = Path(path)
    payload = {"rows": json.loads(table.to_json(orient="records")), "runs": sources,
               "provenance": provenance(parameters, parameters.get("seed", 0), device=device)}
    atomic_write_json(path, payload)
    return path
