"""The settings of one training run: the `train:` section of a profile, then per-study changes, then overrides.

A profile's train section holds the keys of TrainSettings, plus an optional `by_study:` mapping from a study
name to keys that replace the base ones for that study (the key-sparse paper used SGD + cosine, for example).
Overrides (train_run(**overrides), CLI --set key=value) come last. An unknown key fails listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from sercore.profiles import section


@dataclass
class TrainSettings:
    # optimisation (paper: AdamW lr 1e-4, weight decay 0.01, batch 32, 20 epochs)
    epochs: int = 20
    batch_size: int = 32           # global batch: split across processes under torchrun
    lr: float = 1e-4
    weight_decay: float = 0.01
    optimizer: str = "adamw"       # adamw | adam | sgd
    momentum: float = 0.9          # sgd only
    schedule: str = "plateau"      # plateau: x lr_factor after `patience` dev checks without gain; cosine; constant
    lr_factor: float = 0.5
    patience: int = 2
    eval_every: int = 2000         # steps between dev checks (and checkpoints); also one at the last step
    max_steps: int | None = None   # cap on optimizer steps (None: epochs decide)
    grad_clip: float | None = None
    class_weights: bool = True     # inverse-frequency weights for the classification loss
    amp: str | None = None         # None (fp32) or "bf16" autocast
    device: str = "auto"           # auto (cuda when available) | cpu | cuda | cuda:N
    progress: bool = True          # tqdm bar with loss and the last dev metric
    # data
    crop_seconds: float = 5.5      # random training crop, repetition-padded when shorter
    eval_batch_size: int = 16
    segment_seconds: float = 2.0   # segment models (area CNN)
    segment_hop_train: float = 1.0
    segment_hop_test: float = 0.4
    short_segments: str = "skip"   # utterances shorter than one segment: skip (paper) | pad
    vtlp_copies: int = 0           # area study: VTLP-warped copies of each Train utterance (log-Mel models)
    classes: list | None = None    # class codes in index order; None: the corpus's own set
    avd_range: list | None = None  # [lo, hi] of the corpus's A/V/D scale; None: known for MSP-Podcast/IEMOCAP
    cache_dir: str | None = None   # feature cache; None: features.cache_dir, else default_cache_dir()
    # evaluation
    n_boot: int = 1000             # bootstrap resamples for the 95 % intervals
    dev_split: str = "Development"


KEYS = tuple(f.name for f in fields(TrainSettings))


def check_keys(keys, where: str) -> None:
    unknown = sorted(set(keys) - set(KEYS))
    if unknown:
        raise KeyError(f"{where}: unknown train setting(s) {', '.join(unknown)}; valid: {', '.join(KEYS)}")


def resolve(profile: str, study: str, overrides: dict | None = None) -> TrainSettings:
    """TrainSettings from the profile's train section, its by_study[study] entry, then overrides."""
    base = section(profile, "train")
    by_study = base.pop("by_study", None) or {}
    check_keys(base, f"profile {profile!r}, train section")
    values = dict(base)
    if study in by_study:
        check_keys(by_study[study], f"profile {profile!r}, train.by_study.{study}")
        values.update(by_study[study])
    if overrides:
        check_keys(overrides, "overrides")
        values.update(overrides)
    return TrainSettings(**values)


def as_dict(settings: TrainSettings) -> dict:
    return dataclasses.asdict(settings)
