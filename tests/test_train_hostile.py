"""Hostile inputs to training (issue 8): settings that would run but mean nothing, numbers the command line
misreads, stale or corrupt results and checkpoints, degenerate corpora, one very long evaluation utterance.

Each test builds the bad input and asserts the documented outcome: the refusal message, the count or note
in metrics.json, or a result unchanged from the well-behaved case. Real runs use a tiny manifest corpus of
short noise files written into tmp_path (a few seconds each)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toy import ToyModel, make_toy_data, toy_settings  # noqa: E402

from sercore.profiles import parse_assignments, parse_value  # noqa: E402
from sercore.train.settings import KEYS, RULES, TrainSettings, resolve  # noqa: E402


# -- item 14: --set numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("3e-4", 3e-4), ("1e-4", 1e-4), ("1.0e30", 1e30), ("3.0e-3", 3e-3),
                                         ("-2e3", -2000.0), ("7", 7), ("true", True), ("null", None),
                                         ("[1, 7]", [1, 7]), ("bf16", "bf16"), ("1e", "1e")])
def test_set_values_parse_numbers_as_numbers(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_set_assignments_refuse_a_missing_equals_sign():
    assert parse_assignments(["lr=3e-4", "epochs=2", "lr=1e-3"]) == {"lr": 1e-3, "epochs": 2}
    with pytest.raises(ValueError, match="--set expects KEY=VALUE, got 'lr'"):
        parse_assignments(["lr"])


def test_train_cli_passes_lr_3e_4_as_a_float(monkeypatch, tmp_path):
    import sercore.train.run as run_module
    from sercore.cli import build_parser

    seen = {}

    def fake_train_run(study, corpus, out, **kwargs):
        seen.update(kwargs)
        return {"splits": {}, "corpus_kind": "user corpus"}

    monkeypatch.setattr(run_module, "train_run", fake_train_run)
    args = build_parser().parse_args(["train", "--study", "fusion", "--corpus", "c", "--out", str(tmp_path),
                                      "--set", "lr=3e-4", "--set", "weight_decay=1.0e-2", "--quiet"])
    assert args.func(args) == 0
    assert seen["lr"] == 3e-4 and isinstance(seen["lr"], float) and seen["weight_decay"] == 0.01
    resolve("smoke", "fusion", {"lr": seen["lr"]})  # and it is a valid setting now


def test_features_cli_set_parses_numbers(tmp_path):
    from sercore.cli import build_parser
    from sercore.features.cli import _settings

    args = build_parser().parse_args(["features", "--corpus", "c", "--set", "floor=1e-8", "--set", "f_max=7.6e3"])
    settings, _ = _settings(args)
    assert settings["floor"] == 1e-8 and settings["f_max"] == 7600.0


def test_profiles_read_exponent_floats(tmp_path):
    from sercore.profiles import load_profile

    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lr: 3e-4\n  epochs: 2\n", encoding="utf-8")
    assert load_profile(path)["train"] == {"lr": 3e-4, "epochs": 2}
    assert resolve(path, "fusion").lr == 3e-4


# -- item 3: settings that run but mean nothing --------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("crop_seconds", 0, "train setting crop_seconds=0: must be a number > 0 (seconds per training crop)"),
    ("epochs", 0, "train setting epochs=0: must be an integer >= 1"),
    ("max_steps", 0, "train setting max_steps=0: must be an integer >= 1 or null"),
    ("lr_factor", -1, "train setting lr_factor=-1: must be a number in (0, 1]"),
    ("amp", "fp16", "train setting amp='fp16': must be one of bf16 or null"),
    ("epochs", True, "train setting epochs=True: must be an integer"),
    ("batch_size", 2.0, "train setting batch_size=2.0: must be an integer >= 1"),
    ("lr", "3e-4", "train setting lr='3e-4': must be a number > 0"),
    ("lr", float("nan"), "train setting lr=nan: must be a number > 0"),
    ("eval_every", -5, "train setting eval_every=-5: must be an integer >= 1"),
    ("optimizer", "lamb", "train setting optimizer='lamb': must be one of adamw, adam, sgd"),
    ("schedule", "linear", "train setting schedule='linear': must be one of plateau, cosine, constant"),
    ("short_segments", "drop", "train setting short_segments='drop': must be one of skip, pad"),
    ("device", "gpu", "train setting device='gpu': must be auto, cpu, cuda or cuda:N"),
    ("momentum", 1.5, "train setting momentum=1.5: must be a number in [0, 1)"),
    ("grad_clip", 0, "train setting grad_clip=0: must be a number > 0 or null"),
    ("class_weights", 1, "train setting class_weights=1: must be true or false"),
    ("classes", ["N"], "train setting classes=['N']: must be a list of at least two distinct class codes"),
    ("avd_range", [7, 1], "train setting avd_range=[7, 1]: must be [lo, hi] with lo < hi"),
    ("n_boot", -1, "train setting n_boot=-1: must be an integer >= 0"),
    ("eval_max_frames", 0, "train setting eval_max_frames=0: must be an integer >= 1"),
])
def test_bad_train_settings_are_refused_in_one_line(key, value, message):
    with pytest.raises(ValueError) as caught:
        resolve("smoke", "fusion", {key: value})
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text


def test_every_setting_has_a_rule_and_the_profiles_pass():
    assert set(RULES) == set(KEYS)
    for profile in ("smoke", "default", "paper"):
        for study in ("fusion", "ks-transformer", "area-cnn", "multitask", "dimensional"):
            resolve(profile, study)
    settings = TrainSettings(lr=1, max_steps=None, amp="bf16", device="cuda:1")
    assert settings.lr == 1.0 and isinstance(settings.lr, float)  # 1 and 1.0 make the same run


@pytest.mark.parametrize("settings, message", [
    ({"n_mels": 0}, "log-Mel setting n_mels=0: must be an integer >= 1"),
    ({"n_mels": True}, "log-Mel setting n_mels=True: must be an integer >= 1"),
    ({"hop_ms": 0}, "log-Mel setting hop_ms=0.0: must be a number > 0"),
    ({"win_ms": -25}, "log-Mel setting win_ms=-25.0: must be a number > 0"),
    ({"n_fft": 256}, "log-Mel setting n_fft=256: must be null or an integer >= the window (400 samples)"),
    ({"f_min": 4000, "f_max": 3000}, "log-Mel setting f_max=3000: must be null or a number in (4000.0, 8000.0]"),
    ({"f_max": 9000}, "log-Mel setting f_max=9000: must be null or a number in (0.0, 8000.0]"),
    ({"n_mels": 400}, "log-Mel setting n_mels=400: must be at most what n_fft=512 resolves"),
    ({"floor": 0}, "log-Mel setting floor=0.0: must be a number > 0"),
    ({"log": "log2"}, "log-Mel setting log='log2': must be 'ln' or 'log10'"),
])
def test_bad_log_mel_settings_are_refused_by_the_encoder(settings, message):
    from sercore.features import LogMelEncoder

    with pytest.raises(ValueError) as caught:
        LogMelEncoder(**settings)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    LogMelEncoder(n_mels=128, n_fft=800, win_ms=50, hop_ms=25, log="log10")  # the area setting is fine
