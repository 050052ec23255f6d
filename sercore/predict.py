"""`python -m sercore predict`: a trained run's predictions for the audio of one split of a corpus, labelled
or not (MSP-Podcast's Test3 has no labels), written in the MSP-Podcast challenge's submission formats.

    python -m sercore predict --run runs/cat --corpus /data/MSP-PODCAST-1.12 --split Test3 --out test3.csv

  a classification run:  FileName,EmoClass              the class code of highest probability
  the dimensional run:   FileName,EmoAct,EmoVal,EmoDom  on the corpus's A/V/D scale (1..7 for MSP-Podcast)

FileName is the audio file's name. The run's metrics.json holds its parameters (study, mechanism, model,
features, train settings, loader options) and checkpoints/best.pt the best-dev weights; the model is rebuilt
with the functions train_run uses (sercore.train.run.model_spec, spec_features, spec_model), so it reads the
same features from the same cache. The dimensional model predicts on [0, 1]; each value is mapped back with
the scale the run trained on (metrics.json data.avd_range) as lo + p (hi - lo) and clipped to [lo, hi], as
the challenge baseline's eval_dim_ser_test3.py does (min(max(1, 6 p + 1), 7); msplabresearch/
MSP-Podcast_Challenge). Every row of the split is predicted, whatever its label: on MSP-Podcast the corpus is
read with every class code (O and X too), since a prediction needs no label.

An utterance without a prediction (its features failed to extract, or a segment model skips it as shorter
than one window) is left out of the file, counted in the returned summary and warned about: a challenge
submission wants every file, so such a file must be fixed and predicted again. The output may not lie inside
the corpus (nothing is written there) and is written atomically.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

CHECKPOINT = Path("checkpoints") / "best.pt"


def _run_record(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --run must be the --out folder of a finished training run")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
    if not metrics.get("finished") or "parameters" not in metrics.get("provenance", {}):
        raise ValueError(f"{path}: not the metrics of a finished run (no finished flag or parameters)")
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir / CHECKPOINT} not found: the run kept no best-dev weights")
    return metrics


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def predict_split(run_dir, corpus, split: str, out, cache_dir=None, device: str = "auto",
                  progress: bool = False) -> dict:
    """Write `out` (see the module docstring) for every utterance of `split`; returns a summary:
    {"out", "split", "format", "written", "not_predicted": {reason: count}}."""
    from sercore.data import load_corpus
    from sercore.data.corpus import detect_layout
    from sercore.data.msp_podcast import ALL_CODES
    from sercore.features.cache import cache_dir_or_default
    from sercore.profiles import section
    from sercore.train import distributed
    from sercore.train.run import model_spec
    from sercore.train.settings import TrainSettings, check_keys

    run_dir, corpus, out = Path(run_dir), Path(corpus).expanduser(), Path(out)
    metrics = _run_record(run_dir)
    parameters = metrics["provenance"]["parameters"]
    layout = detect_layout(corpus)
    if _inside(out, corpus if corpus.is_dir() else corpus.parent):
        raise ValueError(f"--out {out} lies inside the corpus {corpus}: nothing is written inside a corpus")
    check_keys(parameters["train"], f"{run_dir / 'metrics.json'} parameters.train")
    settings = TrainSettings(**{**parameters["train"], "progress": progress})
    study = parameters["study"]

    options = dict(parameters.get("corpus_options") or {})
    if layout == "msp-podcast":
        options.setdefault("classes", ALL_CODES)  # predictions need no label: keep O / X rows too
    table, _ = load_corpus(corpus, **options)
    table = table[table["split"] == split].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"{corpus}: no utterances in split {split!r} (splits: "
                         f"{', '.join(sorted(set(load_corpus(corpus, **options)[0]['split'])))})")

    features_cfg = dict(parameters["features"])
    spec = model_spec(study, parameters.get("mechanism"), parameters["model"], features_cfg)
    # the one cache location: --cache, else the profile's features.cache_dir, else the user cache
    cache = cache_dir_or_default(cache_dir, None if cache_dir else
                                 (section(parameters["profile"], "features") or {}).get("cache_dir"))
    world, torch_device = distributed.start(device)
    try:
        return _predict(run_dir, out, split, metrics, settings, spec, table, features_cfg, cache, world,
                        torch_device, progress)
    finally:
        distributed.stop(world)


def _predict(run_dir, out, split, metrics, settings, spec, table, features_cfg, cache, world, torch_device,
             progress) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from sercore.provenance import atomic_write
    from sercore.train.datasets import EvalItems, Utterances
    from sercore.train.run import segment_length, spec_features, spec_model, utterance_items
    from sercore.train.trainer import predict

    task = metrics["task"]
    not_predicted: dict = {}
    table, speech, text, _ = spec_features(spec, table, features_cfg, cache, not_predicted, world, progress)
    classes = metrics["classes"] if task == "classification" else None
    data = Utterances.from_table(table, speech, text, frames_per_second=spec.fps, classes=classes)
    model = spec_model(spec, data, settings)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"{run_dir / CHECKPOINT}: the weights do not fit the model rebuilt from metrics.json "
                         f"({first})") from None
    model.to(torch_device)

    rows = np.arange(len(table))
    if spec.segmented:
        seg = segment_length(settings, spec.fps)
        items = EvalItems(data, rows, settings.eval_batch_size, seg, int(round(settings.segment_hop_test * spec.fps)),
                          settings.short_segments, max_frames=settings.eval_max_frames)
        if items.skipped_rows:
            not_predicted["shorter than one segment"] = int(items.skipped_rows)
    else:
        items = utterance_items(model, data, rows, settings)  # waves for an online-SSL run
    output = predict(model, items, torch_device, world, settings.amp)
    names = [Path(p).name for p in table["path"].to_numpy()[items.rows]]
    if task == "classification":
        frame = pd.DataFrame({"FileName": names,
                              "EmoClass": [classes[i] for i in output["probs"].argmax(axis=1)]})
    else:
        scale = metrics.get("data", {}).get("avd_range")
        if not scale:
            raise ValueError(f"{run_dir / 'metrics.json'}: the run records no A/V/D scale (data.avd_range): train "
                             "it again with this version of sercore, or with --set avd_range=[lo,hi]")
        lo, hi = float(scale[0]), float(scale[1])
        values = np.clip(lo + output["avd"] * (hi - lo), lo, hi)
        frame = pd.DataFrame({"FileName": names, "EmoAct": values[:, 0], "EmoVal": values[:, 1],
                              "EmoDom": values[:, 2]})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    if not_predicted:
        counts = ", ".join(f"{reason}: {n}" for reason, n in not_predicted.items())
        warnings.warn(f"{out}: {sum(not_predicted.values())} utterance(s) of {split} have no prediction ({counts}); "
                      "a challenge submission needs every file", stacklevel=2)
    return {"out": str(out), "split": split, "format": list(frame.columns), "written": len(frame),
            "not_predicted": not_predicted}


def run(args: argparse.Namespace) -> int:
    summary = predict_split(args.run, args.corpus, args.split, args.out, cache_dir=args.cache,
                            device=args.device, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="write a trained run's predictions for one split (challenge submission format)",
        description="Predict every utterance of one split of a corpus (labelled or not, e.g. MSP-Podcast Test3) "
                    "with a trained run's best-dev weights; writes FileName,EmoClass (categories) or "
                    "FileName,EmoAct,EmoVal,EmoDom on the corpus's scale (attributes).")
    parser.add_argument("--run", required=True, help="the --out folder of a finished `train` run")
    parser.add_argument("--corpus", required=True, help="corpus folder or manifest CSV holding the split")
    parser.add_argument("--split", required=True, help="which split to predict, e.g. Test3")
    parser.add_argument("--out", required=True, help="the CSV file to write (not inside the corpus)")
    parser.add_argument("--cache", default=None, help="feature cache folder (default: the profile's, else the "
                                                      "user cache)")
    parser.add_argument("--device", default="auto", help="torch device (default: %(default)s: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
