"""`python -m sercore predict` (issue 9, section 3): a trained run's predictions for a split, labelled or not,
in the challenge's formats. Each test trains a smoke-profile run of a few steps on a tiny MSP-layout corpus
built in tmp_path, with Test3 audio listed only in Partitions.txt, then predicts it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.cli import main
from sercore.data import generate_corpus, load_corpus
from sercore.predict import predict_split
from sercore.train import train_run

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
FAST = {"max_steps": 2, "eval_every": 1, "n_boot": 10, "progress": False, "device": "cpu", "crop_seconds": 0.5,
        "batch_size": 4}
CODES = "NHASNHXO"  # X (no agreement) and O (other) carry real A/V/D ratings
UNLABELLED = "unlabelled (Test3): never trained or scored"


def _corpus(root):
    rng = np.random.default_rng(0)
    rows, partitions = [HEADER], []
    for split, n in (("Train", 8), ("Development", 8), ("Test1", 8)):
        for i in range(n):
            name = f"MSP-PODCAST_{split}_{i:04d}.wav"
            avd = (1 + (i % 7), 7 - (i % 7), 4)
            rows.append(f"{name},{CODES[i]},{avd[0]},{avd[1]},{avd[2]},{i % 3},{('Female', 'Male')[i % 2]},{split}")
            partitions.append(f"{split}; {name}")
    for i in range(3):
        partitions.append(f"Test3; MSP-PODCAST_test3_{i:04d}.wav")
    (root / "Audios").mkdir(parents=True)
    (root / "Labels").mkdir()
    names = [r.split(",")[0] for r in rows[1:]] + [p.split("; ")[1] for p in partitions[-3:]]
    for name in names:
        sf.write(root / "Audios" / name, (0.1 * rng.standard_normal(4800)).astype(np.float32), 16000)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")
    (root / "Partitions.txt").write_text("\n".join(partitions) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("msp") / "corpus")


@pytest.fixture(scope="module")
def dimensional(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("dim") / "run"
    return out, train_run("dimensional", corpus, out, profile="smoke", seed=0, **FAST)


def test_dimensional_run_keeps_x_and_o_and_counts_test3(dimensional):
    _, metrics = dimensional
    # X and O rows have finite A/V/D: every Train row is used, none is left out for its class
    assert metrics["data"]["rows"] == {"Train": 8, "Development": 8, "Test1": 8}
    assert metrics["data"]["excluded"] == {UNLABELLED: 3}
    assert "Test3" not in metrics["splits"] and metrics["data"]["avd_range"] == [1.0, 7.0]


def test_predict_writes_attributes_on_the_1_to_7_scale(dimensional, corpus, tmp_path):
    run_dir, _ = dimensional
    out = tmp_path / "test3.csv"
    summary = predict_split(run_dir, corpus, "Test3", out, device="cpu")
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["FileName", "EmoAct", "EmoVal", "EmoDom"] == summary["format"]
    assert sorted(frame.FileName) == [f"MSP-PODCAST_test3_{i:04d}.wav" for i in range(3)]
    values = frame[["EmoAct", "EmoVal", "EmoDom"]].to_numpy()
    assert np.isfinite(values).all() and (values >= 1).all() and (values <= 7).all()
    assert summary["written"] == 3 and summary["not_predicted"] == {}
    # a labelled split too, and the mapping is the run's own: lo + p (hi - lo) of its predictions.csv
    predict_split(run_dir, corpus, "Test1", tmp_path / "test1.csv", device="cpu")
    mine = pd.read_csv(tmp_path / "test1.csv").set_index("FileName")
    ran = pd.read_csv(run_dir / "predictions.csv")
    ran = ran[ran.split == "Test1"].set_index("utt_id")
    for column, name in (("EmoAct", "arousal"), ("EmoVal", "valence"), ("EmoDom", "dominance")):
        expected = np.clip(1 + 6 * ran[f"pred_{name}"].to_numpy(), 1, 7)
        got = mine.loc[[f"{u}.wav" for u in ran.index], column].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_predict_categories_from_the_cli(corpus, tmp_path, capsys):
    run_dir = tmp_path / "cat"
    metrics = train_run("fusion", corpus, run_dir, profile="smoke", seed=0, **FAST, **{"model.text": False})
    # the loader leaves X and O out of classification (its report counts them); Test3 is counted here
    assert metrics["data"]["excluded"] == {UNLABELLED: 3}
    assert "class X (no agreement) not in the class set" in metrics["data"]["load_report"]
    out = tmp_path / "sub" / "test3.csv"
    assert main(["predict", "--run", str(run_dir), "--corpus", str(corpus), "--split", "Test3", "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 3
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["FileName", "EmoClass"] and len(frame) == 3
    assert set(frame.EmoClass) <= set(metrics["classes"])
    # the classes are the argmax of the model's probabilities: the same as predictions.csv on a labelled split
    main(["predict", "--run", str(run_dir), "--corpus", str(corpus), "--split", "Test1", "--out",
          str(tmp_path / "t1.csv"), "--device", "cpu", "--quiet"])
    mine = pd.read_csv(tmp_path / "t1.csv").set_index("FileName")["EmoClass"]
    ran = pd.read_csv(run_dir / "predictions.csv")
    ran = ran[ran.split == "Test1"]
    assert len(mine) == 8 and len(ran) == 6  # X and O are predicted, never scored
    assert [mine[f"{u}.wav"] for u in ran.utt_id] == list(ran.pred)


def test_predict_refusals_are_one_line(dimensional, corpus, tmp_path, capsys):
    run_dir, _ = dimensional
    args = ["predict", "--run", str(run_dir), "--corpus", str(corpus), "--device", "cpu", "--quiet"]
    assert main(args + ["--split", "Test9", "--out", str(tmp_path / "x.csv")]) == 2
    assert "no utterances in split 'Test9' (splits: Development, Test1, Test3, Train)" in capsys.readouterr().err
    assert main(args + ["--split", "Test3", "--out", str(corpus / "x.csv")]) == 2
    assert "lies inside the corpus" in capsys.readouterr().err and not (corpus / "x.csv").exists()
    assert main(["predict", "--run", str(tmp_path), "--corpus", str(corpus), "--split", "Test3", "--out",
                 str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "metrics.json not found" in err and len(err.strip().splitlines()) == 1


def test_predict_a_segment_model_one_row_per_utterance(tmp_path):
    """The area-cnn path: an utterance is cut into 2 s windows at the test hop and predicted as the mean softmax of
    its windows, so predict writes one row per utterance (not per window), the class of predictions.csv."""
    corpus = generate_corpus(tmp_path / "corpus", profile="smoke", n_utterances=40, workers=1, progress=False)
    table, _ = load_corpus(corpus)
    test1 = table[table.split == "Test1"]
    # windows of 2 s at the test hop of 0.4 s: an utterance of 2.4 s or more has several
    durations = [sf.info(p).duration for p in test1.path]
    assert len(test1) >= 3 and min(durations) > 2.0 and max(durations) >= 2.4
    run_dir = tmp_path / "area"
    metrics = train_run("area-cnn", corpus, run_dir, profile="smoke", seed=0, max_steps=2, eval_every=1, n_boot=10,
                        progress=False, device="cpu", batch_size=4)
    assert metrics["finished"]
    out = tmp_path / "test1.csv"
    summary = predict_split(run_dir, corpus, "Test1", out, device="cpu")
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["FileName", "EmoClass"] == summary["format"]
    assert summary["not_predicted"] == {} and summary["written"] == len(frame) == len(test1) > 0
    assert frame.FileName.is_unique and set(frame.FileName) == {Path(p).name for p in test1.path}
    ran = pd.read_csv(run_dir / "predictions.csv")
    ran = ran[ran.split == "Test1"]
    assert len(ran) == len(test1)  # training's own evaluation: one row per utterance too
    mine = frame.set_index("FileName")["EmoClass"]
    assert [mine[f"{u}.wav"] for u in ran.utt_id] == list(ran.pred)
    assert set(mine) <= set(metrics["classes"])
    # a file no longer than one window has no prediction: left out, counted and warned about
    short = Path(test1.path.iloc[0])
    wave, rate = sf.read(short)
    sf.write(short, wave[:int(1.5 * rate)], rate)
    with pytest.warns(UserWarning, match="1 utterance.s. of Test1 have no prediction .shorter than one segment: 1."):
        summary = predict_split(run_dir, corpus, "Test1", out, device="cpu")
    assert summary["not_predicted"] == {"shorter than one segment": 1} and summary["written"] == len(test1) - 1
    assert short.name not in set(pd.read_csv(out).FileName)


def test_the_readmes_gpu_train_and_submission_commands_parse_and_name_the_profiles_settings():
    import shlex
    from pathlib import Path

    from sercore.cli import build_parser
    from sercore.profiles import load_profile

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("On a GPU (", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(c) for c in block.replace("\\\n", " ").strip().splitlines()]  # joined continuations
    assert [c[3] for c in commands] == ["train", "predict"]
    parser = build_parser()
    train, submit = (parser.parse_args(c[3:]) for c in commands)
    paper = load_profile(train.profile)
    for assignment in train.set:
        section, key = assignment.split("=", 1)[0].split(".")
        assert key in paper[section], assignment
    assert submit.run == train.out and submit.split == "Test3" and submit.corpus == train.corpus
