"""`python -m sercore train`: one training run (sercore.train.train_run) from the command line, or one per
IEMOCAP fold with --folds (sercore.train.folds.train_folds, which writes folds.json)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The library's own lists (both modules are light: no torch, so --help stays fast).
from sercore.attention import NAMES as MECHANISMS
from sercore.studies import STUDIES

EPILOG = f"""\
studies:     {', '.join(STUDIES)}
mechanisms:  {', '.join(MECHANISMS)}  (the token mixer; for fusion the sequence mixers, not area)

--set key=value (repeatable), value parsed as YAML, numbers as numbers (3, 1e-4, true, [1, 7], null):
  a train setting        epochs=2  batch_size=16  lr=3e-4  eval_every=50  max_steps=100  n_boot=200
                         crop_seconds=3  device=cpu  amp=bf16  classes=[N,H,A,S]  avd_range=[1,7]
                         eval_max_frames=32768 (padded frames per evaluation batch; a longer utterance
                         is evaluated alone). Each value is checked: a bad one stops with what is allowed.
  model.<option>         an option of sercore.models.build_model, e.g. model.speech=logmel model.width=256
  features.<key>[.<key>] the profile's features section, e.g. features.ssl_model_dir=/models/wavlm-large
  corpus.<option>        an option of sercore.data.load_corpus, e.g. corpus.fold=2 (IEMOCAP)

IEMOCAP protocols (corpus.dev; metrics.json "protocol" records the one used):
  random (default, s3prl)  Train = the 4 other sessions minus a seeded random 20 % (corpus.dev_fraction,
                           corpus.dev_seed), which is Development
  speaker (SpeechBrain)    Train = the 4 other sessions; Test = the test session's Female speaker
                           (corpus.test_gender), Development = its other speaker
  none (EmoBox)            Train = the 4 other sessions, no Development: needs dev_split=Test (selects on Test)
  session                  Development = one whole other session (corpus.dev_session), Train = the other 3
  --folds 1-5   one run per fold into OUT/fold<k>/, then OUT/folds.json: per split and metric the mean,
                std (ddof=1), min and max over the folds

writes OUT/metrics.json, OUT/predictions.csv and OUT/checkpoints/; an interrupted run resumes from its
last checkpoint and ends exactly as an uninterrupted one; a finished run with the same parameters, the same
corpus content (table and audio) and the same sercore code is not trained again (its metrics come back).
A checkpoint of other parameters, data or code, or an unreadable one, is moved aside (last.pt.stale,
last.pt.corrupt) with a warning and training starts over.
  --no-resume   do not resume from a checkpoint (a finished run is still returned as it is)
  --retrain     train afresh: ignore a finished metrics.json and any checkpoint

several GPUs or nodes (DistributedDataParallel; batch_size is the global batch, split across processes):
  torchrun --nproc_per_node=N -m sercore train --study fusion --corpus PATH --out DIR ...
  torchrun --nnodes=M --node_rank=K --master_addr=HOST --master_port=PORT --nproc_per_node=N -m sercore train ...
on CPUs torchrun uses the gloo backend, on GPUs nccl.

example:
  python -m sercore train --study fusion --mechanism kda --corpus data/demo-smoke --profile smoke --out runs/kda
"""


def run(args: argparse.Namespace) -> int:
    from sercore.profiles import parse_assignments
    from sercore.train.folds import parse_folds, train_folds
    from sercore.train.run import train_run

    overrides = parse_assignments(args.set)
    if args.quiet:
        overrides["progress"] = False
    if args.folds:
        folds = train_folds(args.study, args.corpus, args.out, parse_folds(args.folds), profile=args.profile,
                            mechanism=args.mechanism, seed=args.seed, resume=not args.no_resume,
                            retrain=args.retrain, **overrides)
        summary = {split: {k: {s: v[s] for s in ("mean", "std", "min", "max")} for k, v in m.items()}
                   for split, m in folds["splits"].items()}
        print(json.dumps({"out": str(args.out), "folds.json": str(Path(args.out) / "folds.json"),
                          "protocol": folds["protocol"], "splits": summary}, indent=2))
        return 0
    metrics = train_run(args.study, args.corpus, args.out, profile=args.profile, mechanism=args.mechanism,
                        seed=args.seed, resume=not args.no_resume, retrain=args.retrain,
                        **overrides)
    summary = {split: {k: v["value"] for k, v in m.items() if isinstance(v, dict) and "value" in v}
               for split, m in metrics["splits"].items()}
    print(json.dumps({"out": str(args.out), "corpus_kind": metrics["corpus_kind"], "splits": summary,
                      "absent_splits": metrics.get("absent_splits", [])}, indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train and evaluate one model (any of the five studies)",
        description="Train one model on a corpus, select it on the Development split, evaluate it on every "
                    "other split, and write metrics (with 95 % bootstrap intervals) and predictions.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, choices=STUDIES, help="which study's model to train")
    parser.add_argument("--mechanism", default=None, choices=MECHANISMS,
                        help="attention mechanism (default: the study's own)")
    parser.add_argument("--corpus", required=True, help="corpus folder (MSP-Podcast or IEMOCAP layout, or a "
                                                        "generated one) or a manifest CSV")
    parser.add_argument("--profile", default="default", help="smoke, default, paper, or a YAML file (default: "
                                                             "%(default)s)")
    parser.add_argument("--out", required=True, help="output folder for this run")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (see below)")
    parser.add_argument("--no-resume", action="store_true",
                        help="ignore an existing checkpoint in --out; a finished run is still not retrained")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even if --out holds a finished run of the same parameters, data and "
                             "code (ignores its metrics.json and checkpoints)")
    parser.add_argument("--folds", default=None, metavar="K-L",
                        help="IEMOCAP: run these folds (e.g. 1-5 or 1,3) into OUT/fold<k> and write OUT/folds.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
