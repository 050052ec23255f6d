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
from test_train_toy import make_toy_data  # noqa: E402

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


# -- tiny real runs: a manifest corpus of short noise files ------------------------------------------------

FAST = {"max_steps": 2, "eval_every": 1, "n_boot": 10, "progress": False, "device": "cpu", "crop_seconds": 0.5,
        "batch_size": 4, "model.text": False}
SPLIT_ROWS = {"Train": 8, "Development": 4, "Test1": 4}


def write_corpus(root: Path, splits=SPLIT_ROWS, classes=("ang", "hap"), seconds=0.3) -> Path:
    """A manifest CSV with `splits` rows each, labels cycling through `classes`; returns the CSV path."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    lines = ["path,label,split,speaker,gender"]
    for split, n in splits.items():
        for i in range(n):
            name = f"wav/{split}_{i}.wav"
            sf.write(root / name, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
            lines.append(f"{name},{classes[i % len(classes)]},{split},spk{i % 2},{('Female', 'Male')[i % 2]}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "manifest.csv"


def run(corpus, out, **changes):
    from sercore.train import train_run

    return train_run("fusion", corpus, out, profile="smoke", seed=0,
                     **{**FAST, "cache_dir": str(out.parent / "cache"), **changes})


# -- item 2: stale finished runs and checkpoints -------------------------------------------------------------

def test_unchanged_rerun_is_reused_and_an_edited_label_retrains(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    first = run(corpus, tmp_path / "run")
    keys = {k: first["provenance"][k] for k in ("data_key", "code_key")}
    assert all(len(v) == 64 for v in keys.values())
    assert first["data"]["rows"]["Train"] == 8
    written = (tmp_path / "run" / "metrics.json").stat().st_mtime_ns
    again = run(corpus, tmp_path / "run")
    assert again == first and (tmp_path / "run" / "metrics.json").stat().st_mtime_ns == written

    # same path, same parameters, one label changed and two Train rows removed: a new run, trained afresh
    lines = corpus.read_text().splitlines()
    lines[1] = lines[1].replace(",ang,", ",hap,")
    del lines[2:4]
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="other parameters, data or code; not resumed"):
        edited = run(corpus, tmp_path / "run")
    assert edited["provenance"]["data_key"] != keys["data_key"]
    assert edited["provenance"]["code_key"] == keys["code_key"]
    assert edited["data"]["rows"]["Train"] == 6 and edited["training"]["resumed_at_step"] is None


def test_changed_audio_bytes_change_the_data_key(tmp_path):
    import soundfile as sf

    from sercore.data import load_corpus
    from sercore.train.run import data_key

    corpus = write_corpus(tmp_path / "corpus")
    table, _ = load_corpus(corpus)
    before = data_key(table)
    assert data_key(table) == before
    sf.write(table.path[0], np.zeros(4800, dtype=np.float32), 16000)
    changed = data_key(table)
    assert changed != before
    Path(table.path[1]).unlink()  # a vanished file is keyed too; extraction, not the key, reports it
    assert data_key(table) not in (before, changed)


def test_code_key_covers_the_training_code_not_the_book(tmp_path, monkeypatch):
    import sercore.train.run as run_module
    from sercore import source_key

    package = tmp_path / "sercore"
    for name in ("__init__.py", "metrics.py", "book.py", "train/__init__.py", "train/run.py", "train/cli.py"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(f"# {name}\n")
    (package / "train" / "run.py").write_text("from sercore import metrics\n")  # the key follows imports
    monkeypatch.setattr(source_key, "PACKAGE", package)
    key = run_module.code_key()
    (package / "book.py").write_text("# edited\n")
    (package / "train" / "cli.py").write_text("# edited\n")
    assert run_module.code_key() == key
    (package / "metrics.py").write_text("# edited\n")
    assert run_module.code_key() != key


def test_resume_checkpoint_is_used_only_for_the_same_data(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    run(corpus, tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.json"
    metrics.unlink()  # as if killed after its last checkpoint: unchanged data resumes from it
    assert run(corpus, tmp_path / "run")["training"]["resumed_at_step"] == 2
    metrics.unlink()
    corpus.write_text(corpus.read_text().replace(",hap,Train", ",ang,Train", 1))
    with pytest.warns(UserWarning, match="other parameters, data or code; not resumed, moved to last.pt.stale"):
        redone = run(corpus, tmp_path / "run")
    assert redone["training"]["resumed_at_step"] is None and redone["training"]["steps"] == 2
    assert (tmp_path / "run" / "checkpoints" / "last.pt.stale").is_file()


# -- item 17: corrupt checkpoint, --retrain, recorded device and cache --------------------------------------

def test_truncated_last_checkpoint_is_moved_aside_and_training_starts_over(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    whole = run(corpus, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.warns(UserWarning, match=r"last\.pt: unreadable checkpoint .*moved to last\.pt\.corrupt, training "
                                         r"starts over from step 0"):
        redone = run(corpus, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.pt.corrupt").is_file()
    assert redone["training"]["resumed_at_step"] is None
    assert redone["splits"] == whole["splits"]  # from scratch, deterministic: the same results


def test_retrain_ignores_a_finished_run_and_no_resume_does_not(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    first = run(corpus, tmp_path / "run")
    assert run(corpus, tmp_path / "run", resume=False)["provenance"]["created"] == first["provenance"]["created"]
    metrics = tmp_path / "run" / "metrics.json"
    written = metrics.stat().st_mtime_ns
    again = run(corpus, tmp_path / "run", retrain=True)
    assert metrics.stat().st_mtime_ns != written and again["training"]["resumed_at_step"] is None
    assert again["splits"] == first["splits"]


def test_cli_help_documents_resume_and_retrain():
    from sercore.cli import build_parser

    parser = build_parser()
    text = " ".join(parser._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--retrain" in text and "--no-resume" in text and "a finished run is still not retrained" in text
    args = parser.parse_args(["train", "--study", "fusion", "--corpus", "c", "--out", "o", "--retrain"])
    assert args.retrain and not args.no_resume


def test_provenance_records_the_device_used_and_no_unused_cache(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    metrics = run(corpus, tmp_path / "run")
    assert metrics["provenance"]["device"]["torch_device"] == "cpu"
    parameters = metrics["provenance"]["parameters"]
    assert "cache_dir" not in parameters["train"] and "cache_dir" not in parameters["features"]
    # where the cache lies changes no result: another cache folder reuses the finished run
    assert run(corpus, tmp_path / "run", cache_dir=str(tmp_path / "elsewhere")) == metrics


# -- item 4: degenerate corpora ------------------------------------------------------------------------------

def test_one_class_corpus_is_refused_naming_the_class(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", classes=("ang",))
    with pytest.raises(ValueError, match=r"Train has only ang: 8 rows; a classifier needs at least two classes"):
        run(corpus, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_corpus_without_test_splits_records_them_absent(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", splits={"Train": 8, "Development": 4})
    with pytest.warns(UserWarning, match=r"expected split\(s\) Test\* absent"):
        metrics = run(corpus, tmp_path / "run")
    assert metrics["absent_splits"] == ["Test*"] and set(metrics["splits"]) == {"Development"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["absent_splits"] == ["Test*"]


def test_absent_splits_by_layout():
    from sercore.train.run import absent_splits

    assert absent_splits("msp-podcast", ["Train", "Development", "Test1"]) == ["Test2"]
    assert absent_splits("iemocap", ["Train", "Development", "Test"]) == []
    assert absent_splits("manifest", ["Train", "Development", "Test-B"]) == []


# -- item 9: one long utterance in an evaluated split ------------------------------------------------------

class AttentionToy(torch.nn.Module):
    """Softmax self-attention over the frames -> masked mean -> logits: quadratic in T without chunking."""

    def __init__(self, dim: int = 8, n_classes: int = 4):
        from sercore.attention.softmax import SoftmaxAttention

        super().__init__()
        self.mixer = SoftmaxAttention(dim, 2)
        self.out = torch.nn.Linear(dim, n_classes)

    def forward(self, batch):
        mask = batch["speech_mask"]
        h = self.mixer(batch["speech"], mask) * mask[..., None]
        return {"logits": self.out(h.sum(1) / mask.sum(1, keepdim=True))}


def long_item_data():
    data = make_toy_data(splits={"Train": 4, "Development": 40})
    rows = data.rows("Development", "label")
    long_row = rows[7]
    data.speech[long_row] = np.random.default_rng(1).normal(size=(3000, 8)).astype(np.float32)
    return data, rows, long_row


def test_eval_batches_respect_the_frame_cap_and_keep_the_order():
    from sercore.train.datasets import EvalItems

    data, rows, long_row = long_item_data()
    items = EvalItems(data, rows, batch_size=16, max_frames=600)
    seen = []
    for batch in items.batches():
        frames = batch["speech"].shape[0] * batch["speech"].shape[1]
        positions = batch["utt_index"].tolist()
        assert frames <= 600 or positions == [7]  # only the long item, alone, exceeds the cap
        assert len(positions) <= 16
        seen += positions
    assert sorted(seen) == list(range(len(rows))) and items.n_batches() > len(rows) // 16
    assert EvalItems(data, rows, batch_size=16).n_batches() == 3  # without a cap: batch_size alone


def test_capped_evaluation_gives_the_same_predictions_in_row_order(monkeypatch):
    import sercore.attention.softmax as softmax
    from sercore.train.datasets import EvalItems
    from sercore.train.trainer import predict

    data, rows, long_row = long_item_data()
    torch.manual_seed(0)
    model = AttentionToy()
    scores = []

    def recording(core):  # the explicit (reference) and the SDPA core ("auto" on the CPU) alike
        def recorded(q, k, v, *args, **kwargs):
            scores.append(q.shape[0] * q.shape[2] * k.shape[2])  # query x key scores per head
            return core(q, k, v, *args, **kwargs)
        return recorded

    for name in ("explicit_attention", "sdpa_attention"):
        monkeypatch.setattr(softmax, name, recording(getattr(softmax, name)))
    capped = predict(model, EvalItems(data, rows, batch_size=16, max_frames=600), torch.device("cpu"))["probs"]
    assert max(scores) <= softmax.QUERY_CHUNK * 3000  # the long item: query blocks, never 3000 x 3000
    monkeypatch.undo()
    # the reference: each utterance alone, with gradients on (the unchunked softmax path)
    alone = []
    for r in rows:
        x = torch.from_numpy(np.asarray(data.speech[r], dtype=np.float32))[None]
        out = model({"speech": x, "speech_mask": torch.ones(x.shape[:2], dtype=torch.bool)})["logits"]
        alone.append(torch.softmax(out, -1).detach().numpy()[0])
    np.testing.assert_allclose(capped, np.stack(alone), atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_query_chunked_softmax_equals_the_single_pass(causal):
    from sercore.attention.softmax import QUERY_CHUNK, SoftmaxAttention

    torch.manual_seed(0)
    mixer = SoftmaxAttention(16, 2, causal=causal)
    t = QUERY_CHUNK * 2 + 300
    x = torch.randn(3, t, 16)
    mask = torch.ones(3, t, dtype=torch.bool)
    mask[1, 1500:] = False
    mask[2] = False  # a sample with no real frame: zeros, not NaN
    single = mixer(x, mask).detach()  # gradients on: one pass, [B, H, T, T] scores
    with torch.no_grad():
        chunked = mixer(x, mask)
    torch.testing.assert_close(chunked, single, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(chunked).all() and (chunked[2] == 0).all()


def test_keysparse_auto_evaluates_long_inputs_memory_linear_on_the_cpu(monkeypatch):
    """Item 9 for key-sparse: a long no-grad call takes the memory-linear form, with the same output."""
    import torch

    from sercore.attention import keysparse as ks

    torch.manual_seed(0)
    layer = ks.KeySparseAttention(16, 2, keep_rate=0.5).eval()
    x = torch.randn(1, ks.LONG_QUERIES + 40, 16)
    mask = torch.ones(1, x.shape[1], dtype=torch.bool)
    used = []
    original = ks.memory_linear_keysparse
    monkeypatch.setattr(ks, "memory_linear_keysparse", lambda *a, **k: used.append(1) or original(*a, **k))
    with torch.no_grad():
        out = layer(x, mask)
        assert used, "auto did not take the memory-linear form for a long no-grad input"
        layer.mode = "reference"
        reference = layer(x, mask)
    assert torch.allclose(out, reference, atol=1e-5, rtol=1e-4)
    used.clear()
    layer.mode = "auto"
    layer(x[:, :64], mask[:, :64])  # short, or with gradients: the materialized reference as before
    assert not used
