"""The trainer on the toy problem: it learns, resumes exactly, stops on NaN, survives stale temp files, and
fit_and_evaluate writes the results files."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toy import ToyModel, make_toy_data, toy_settings  # noqa: E402

from sercore.metrics import macro_f1  # noqa: E402
from sercore.provenance import seed_everything  # noqa: E402
from sercore.train.datasets import CropItems, EvalItems  # noqa: E402
from sercore.train.run import fit_and_evaluate  # noqa: E402
from sercore.train.trainer import Plateau, Trainer, class_weights, predict  # noqa: E402


def make_trainer(tmp_path, data, seed=0, callbacks=(), model=None, fingerprint="toy", **changes):
    settings = toy_settings(**changes)
    seed_everything(seed)
    model = model or ToyModel()
    train = CropItems(data, data.rows("Train", "label"), int(settings.crop_seconds * 100), seed)
    dev = EvalItems(data, data.rows("Development", "label"), settings.eval_batch_size)
    return Trainer(model, train, dev, settings, task="classification", checkpoint_dir=tmp_path / "ckpt", seed=seed,
                   fingerprint=fingerprint, callbacks=callbacks)


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def callback(s, loss):
        if s == step:
            raise Interrupt(f"stopped at step {s}")
    return callback


def test_class_weights_inverse_frequency():
    # n = 4 items, K = 2 classes present: w_c = 4 / (2 n_c) -> 4/6 and 4/2; class 2 absent -> 0
    w = class_weights(np.array([0, 0, 0, 1, -1]), 3)
    assert w.tolist() == pytest.approx([2 / 3, 2.0, 0.0])


def test_plateau_halves_after_patience_checks_without_gain():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau = Plateau(opt, factor=0.5, patience=2)
    lrs = []
    for improved in (True, False, False, False, True, False, False):
        plateau.check(improved)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_trainer_learns_a_separable_problem(tmp_path):
    data = make_toy_data()
    trainer = make_trainer(tmp_path, data)
    summary = trainer.fit()
    assert summary["steps"] == 4 * 6 and len(summary["history"]) == 5  # checks at 5,10,15,20 and the last step
    test = EvalItems(data, data.rows("Test1", "label"), 16)
    pred = predict(trainer.model, test, torch.device("cpu"))["probs"].argmax(1)
    assert macro_f1(data.label[test.rows], pred) > 0.9  # chance is 0.25
    assert (tmp_path / "ckpt" / "last.pt").is_file() and (tmp_path / "ckpt" / "best.pt").is_file()


def test_resume_ends_exactly_as_an_uninterrupted_run(tmp_path):
    data = make_toy_data()
    whole = make_trainer(tmp_path / "a", data)
    expected = whole.fit()

    with pytest.raises(Interrupt):
        make_trainer(tmp_path / "b", data, callbacks=[interrupt_at(13)]).fit()  # last checkpoint: step 10
    resumed = make_trainer(tmp_path / "b", data, seed=0)
    result = resumed.fit()
    assert result["resumed_at_step"] == 10
    for key in ("steps", "best_step", "best_dev", "history"):
        assert result[key] == expected[key], key
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    # best.pt is the same weights as well
    assert all(torch.equal(a, b) for a, b in zip(torch.load(tmp_path / "a/ckpt/best.pt")["model"].values(),
                                                 torch.load(tmp_path / "b/ckpt/best.pt")["model"].values()))


def test_nan_loss_stops_with_the_step(tmp_path):
    class NanAfter(ToyModel):
        calls = 0

        def loss(self, batch, outputs, class_weights=None):
            self.calls += 1
            value = super().loss(batch, outputs, class_weights)
            return value * float("nan") if self.calls == 7 else value

    with pytest.raises(FloatingPointError, match=r"at step 7 \(epoch 1, batch 0"):
        make_trainer(tmp_path, make_toy_data(), model=NanAfter()).fit()


def test_stale_temp_file_does_not_break_resume(tmp_path):
    data = make_toy_data()
    with pytest.raises(Interrupt):
        make_trainer(tmp_path, data, callbacks=[interrupt_at(12)]).fit()
    ckpt = tmp_path / "ckpt"
    # what a run killed in the middle of torch.save leaves behind: a truncated temp file beside last.pt
    stale = ckpt / ".last.pt.k3j2h1.tmp"
    stale.write_bytes((ckpt / "last.pt").read_bytes()[:100])
    resumed = make_trainer(tmp_path, data)
    summary = resumed.fit()
    assert summary["resumed_at_step"] == 10 and summary["steps"] == 24
    assert not stale.exists()


def test_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    data = make_toy_data()
    trainer = make_trainer(tmp_path, data)
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == 10 and "optimizer" in obj:
            real_save(obj, path)  # bytes reach the temp file, then the "crash" before the rename
            raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert state["step"] == 5
    assert not list((tmp_path / "ckpt").glob(".*.tmp"))


def test_checkpoint_of_another_run_is_set_aside_not_resumed(tmp_path):
    data = make_toy_data()
    with pytest.raises(Interrupt):
        make_trainer(tmp_path, data, callbacks=[interrupt_at(6)]).fit()
    with pytest.warns(UserWarning, match="other parameters, data or code; not resumed, moved to last.pt.stale"):
        summary = make_trainer(tmp_path, data, fingerprint="other").fit()
    assert summary["resumed_at_step"] is None and summary["steps"] == 24
    assert (tmp_path / "ckpt" / "last.pt.stale").is_file()
    fresh = make_trainer(tmp_path, data, fingerprint="other")
    fresh.resume = False
    assert fresh.fit()["resumed_at_step"] is None


def test_regression_selects_on_ccc(tmp_path):
    data = make_toy_data()
    settings = toy_settings(lr=0.05, epochs=6)
    seed_everything(0)
    train = CropItems(data, data.rows("Train", "avd"), 50, 0)
    dev = EvalItems(data, data.rows("Development", "avd"), 16)
    trainer = Trainer(ToyModel(regression=True), train, dev, settings, task="regression",
                      checkpoint_dir=tmp_path, seed=0)
    summary = trainer.fit()
    assert summary["best_dev"] > 0.8  # CCC mean; A/V/D are functions of the class here


def test_fit_and_evaluate_writes_metrics_and_predictions(tmp_path):
    data = make_toy_data()
    seed_everything(0)
    info = {"study": "toy", "corpus": "in memory", "corpus_kind": "user corpus", "data": {"note": "toy"}}
    out = fit_and_evaluate(ToyModel(), data, toy_settings(), task="classification", segmented=False,
                           out_dir=tmp_path, seed=0, parameters={"p": 1}, fingerprint="f", info=info)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == out and saved["finished"] and saved["corpus_kind"] == "user corpus"
    assert set(saved["splits"]) == {"Development", "Test1"}
    for split in saved["splits"].values():
        low, high = split["macro_f1"]["ci95"]
        assert low <= split["macro_f1"]["value"] <= high
        assert len(split["confusion"]) == 4
    assert saved["provenance"]["parameters"] == {"p": 1} and saved["provenance"]["seed"] == 0
    assert {"git_sha", "versions", "device"} <= set(saved["provenance"])
    assert saved["wall_time_s"] > 0 and saved["data"]["note"] == "toy"
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predictions.columns[:4]) == ["utt_id", "split", "label", "pred"]
    assert len(predictions) == 48
    probs = predictions[[f"prob_{c}" for c in ("ang", "hap", "neu", "sad")]].to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    test = predictions[predictions.split == "Test1"]
    assert saved["splits"]["Test1"]["accuracy"]["value"] == pytest.approx((test.label == test.pred).mean())
