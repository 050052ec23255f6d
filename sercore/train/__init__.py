"""Training and evaluation for the five studies.

    train_run(study, corpus, out_dir, profile="default", mechanism=None, seed=0, resume=True, **overrides)
        -> the metrics dict also written to out_dir/metrics.json (see sercore.train.run)

Pieces: settings (the profile's train section), datasets (table + features -> batches, the deterministic
sampler), trainer (fit with dev selection and exact-resume checkpoints), distributed (torchrun / DDP),
cli (`python -m sercore train`).
"""

from sercore.train.datasets import CropItems, EpochSampler, EvalItems, SegmentItems, Utterances
from sercore.train.run import STUDIES, train_run
from sercore.train.settings import TrainSettings, resolve
from sercore.train.trainer import Trainer, class_weights, predict

__all__ = ["STUDIES", "CropItems", "EpochSampler", "EvalItems", "SegmentItems", "TrainSettings", "Trainer",
           "Utterances", "class_weights", "predict", "resolve", "train_run"]
