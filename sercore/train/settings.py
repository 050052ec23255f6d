"""The settings of one training run: the `train:` section of a profile, then per-study changes, then overrides.

A profile's train section holds the keys of TrainSettings, plus an optional `by_study:` mapping from a study
name to keys that replace the base ones for that study (the key-sparse paper used SGD + cosine, for example).
Overrides (train_run(**overrides), CLI --set key=value) come last. An unknown key fails listing the valid ones.

Every value is checked when a TrainSettings is made (so in `resolve` too): its type (a bool is not a number,
a float is not an int; an int is accepted for a float and stored as a float) and its range or choices, see
RULES. A bad value fails at once with one line naming the key, the value and what is allowed, e.g.
"train setting crop_seconds=0: must be a number > 0 (seconds per training crop)", instead of a run that
"finishes" without having trained (epochs=0, max_steps=0) or ignores the setting (amp=fp16).
"""

from __future__ import annotations

import dataclasses
import math
import re
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
    cosine_per: str = "step"       # cosine only: anneal per optimizer step, or per epoch (the KS code)
    cosine_eta_min_ratio: float = 0.0  # cosine only: the floor eta_min = ratio x lr (KS code: 0.001)
    lr_factor: float = 0.5
    patience: int = 2
    eval_every: int = 2000         # steps between dev checks (and checkpoints); also one at the last step
    max_steps: int | None = None   # cap on optimizer steps (None: epochs decide)
    grad_clip: float | None = None
    class_weights: bool = True     # inverse-frequency weights for the classification loss
    amp: str | None = None         # None (fp32) or "bf16" autocast (fp16 needs loss scaling: not implemented)
    device: str = "auto"           # auto (cuda when available) | cpu | cuda | cuda:N
    progress: bool = True          # tqdm bar with loss and the last dev metric
    # data
    crop_seconds: float = 5.5      # training crop, see train_crop
    train_crop: str = "random"     # random: random crop, repetition-padded; first: the first crop_seconds, zero-padded
    eval_batch_size: int = 16      # at most this many items per evaluation batch ...
    eval_max_frames: int = 32768   # ... and at most this many padded frames (batch x longest); see EvalItems
    segment_seconds: float = 2.0   # segment models (area CNN)
    segment_hop_train: float = 1.0
    segment_hop_test: float = 0.4
    short_segments: str = "skip"   # skip utterances of at most one segment (the code) | pad shorter ones
    vtlp_copies: int = 0           # area study: VTLP-warped copies of each Train utterance (log-Mel models)
    vtlp_warp: str = "nlpaug"      # how copies are warped: nlpaug (the area code's VtlpAug) | textbook
    classes: list | None = None    # class codes in index order; None: the corpus's own set
    avd_range: list | None = None  # [lo, hi] of the corpus's A/V/D scale; None: known for MSP-Podcast/IEMOCAP
    cache_dir: str | None = None   # feature cache; None: features.cache_dir, else default_cache_dir()
    # evaluation
    n_boot: int = 1000             # bootstrap resamples for the 95 % intervals
    dev_split: str = "Development"

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name)))


# key -> (kind, bound or choices, what the value means). kinds: int (>= bound), pos (number > 0), nonneg
# (number >= 0), unit (0 < x <= 1), frac (0 <= x < 1), choice, bool, str; "|None" also allows None.
RULES = {
    "epochs": ("int", 1, "passes over Train"),
    "batch_size": ("int", 1, "global training batch"),
    "lr": ("pos", None, "learning rate"),
    "weight_decay": ("nonneg", None, "weight decay"),
    "optimizer": ("choice", ("adamw", "adam", "sgd"), "optimizer"),
    "momentum": ("frac", None, "SGD momentum"),
    "schedule": ("choice", ("plateau", "cosine", "constant"), "learning-rate schedule"),
    "cosine_per": ("choice", ("step", "epoch"), "what one cosine step is"),
    "cosine_eta_min_ratio": ("frac", None, "cosine floor as a share of lr"),
    "lr_factor": ("unit", None, "plateau multiplier of the learning rate"),
    "patience": ("int", 1, "dev checks without gain before the plateau cut"),
    "eval_every": ("int", 1, "steps between dev checks"),
    "max_steps": ("int|None", 1, "cap on optimizer steps; null for none"),
    "grad_clip": ("pos|None", None, "gradient-norm clip; null for none"),
    "class_weights": ("bool", None, "inverse-frequency class weights"),
    "amp": ("choice|None", ("bf16",), "mixed precision; null for fp32"),
    "device": ("device", None, "the torch device; auto: cuda when available"),
    "progress": ("bool", None, "progress bar"),
    "crop_seconds": ("pos", None, "seconds per training crop"),
    "train_crop": ("choice", ("random", "first"), "which frames a training crop takes"),
    "eval_batch_size": ("int", 1, "items per evaluation batch"),
    "eval_max_frames": ("int", 1, "padded frames per evaluation batch"),
    "segment_seconds": ("pos", None, "seconds per segment"),
    "segment_hop_train": ("pos", None, "seconds between training segments"),
    "segment_hop_test": ("pos", None, "seconds between test segments"),
    "short_segments": ("choice", ("skip", "pad"), "utterances of at most one segment"),
    "vtlp_copies": ("int", 0, "VTLP copies per Train utterance"),
    "vtlp_warp": ("choice", ("nlpaug", "textbook"), "VTLP warp of the copies (sercore.features.vtlp)"),
    "classes": ("classes", None, "class codes in index order; null for the corpus's own"),
    "avd_range": ("range", None, "the corpus's A/V/D scale; null for the known one"),
    "cache_dir": ("str|None", None, "feature cache folder; null for the default"),
    "n_boot": ("int", 0, "bootstrap resamples; 0 for no intervals"),
    "dev_split": ("str", None, "the split to select on"),
}
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_value(key: str, value):
    """The value of train setting `key` (an int stored as a float for a float key), or ValueError saying
    what is allowed (see the module docstring)."""
    kind, bound, meaning = RULES[key]
    base, _, optional = kind.partition("|")
    if optional and value is None:
        return None

    def bad(allowed: str):
        return ValueError(f"train setting {key}={value!r}: must be {allowed}{' or null' if optional else ''} "
                          f"({meaning})")

    if base == "int":
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= bound):
            raise bad(f"an integer >= {bound}")
        return value
    if base in ("pos", "nonneg", "unit", "frac"):
        ok = _number(value) and {"pos": lambda x: x > 0, "nonneg": lambda x: x >= 0,
                                 "unit": lambda x: 0 < x <= 1, "frac": lambda x: 0 <= x < 1}[base](value)
        if not ok:
            raise bad({"pos": "a number > 0", "nonneg": "a number >= 0", "unit": "a number in (0, 1]",
                       "frac": "a number in [0, 1)"}[base])
        return float(value)
    if base == "choice":
        if value not in bound:
            raise bad("one of " + ", ".join(bound))
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "str":
        if not (isinstance(value, str) and value.strip()):
            raise bad("a non-empty string")
        return value
    if base == "device":
        if not (isinstance(value, str) and _DEVICE.match(value)):
            raise bad("auto, cpu, cuda or cuda:N")
        return value
    if base == "classes":
        if value is None:
            return None
        if not (isinstance(value, (list, tuple)) and len(value) >= 2 and len(set(map(str, value))) == len(value)
                and all(isinstance(c, str) and c for c in value)):
            raise bad("a list of at least two distinct class codes")
        return list(value)
    if base == "range":
        if value is None:
            return None
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_number, value))
                and value[1] > value[0]):
            raise bad("[lo, hi] with lo < hi")
        return [float(v) for v in value]
    raise AssertionError(f"no rule kind {kind!r}")


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
