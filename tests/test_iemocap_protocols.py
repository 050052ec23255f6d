"""IEMOCAP protocols comparable with the toolkits (issue 9, section 4), on a tiny hand-built corpus in the
published layout: the dev protocols (s3prl random, SpeechBrain speaker, EmoBox none, whole session), the
5,531 check, non-speech token stripping, the parent of IEMOCAP_full_release, and the folds runner."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercore.data import detect_layout, load_corpus, load_iemocap
from sercore.data.iemocap import protocol

CODES = ("neu", "ang", "sad", "exc", "hap", "fru")  # fru is dropped (not 4-class)


def write_iemocap(root: Path, per_speaker: int = 6, seconds: float = 0.3) -> Path:
    """Five sessions, one improvised dialog each, per_speaker utterances per gender (codes cycling through
    CODES), transcripts with a [LAUGHTER] token on the first utterance of each speaker."""
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        dialog = f"Ses0{k}F_impro01"
        base = root / f"Session{k}"
        wav_dir = base / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True)
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (base / "dialog" / "transcriptions").mkdir(parents=True)
        labels, transcripts = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for letter in "FM":
            for i in range(per_speaker):
                utt = f"{dialog}_{letter}{i:03d}"
                sf.write(wav_dir / f"{utt}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
                         16000)
                labels += [f"[{i}.0 - {i + 1}.0]\t{utt}\t{CODES[i % len(CODES)]}\t[2.5000, 3.0000, 3.5000]",
                           "C-E2:\tNeutral;\t()", ""]
                text = "[LAUGHTER] well  okay [BREATHING]" if i == 0 else f"sentence {i}"
                transcripts.append(f"{utt} [{i:07.4f}-{i + 1:07.4f}]: {text}")
        (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(labels) + "\n")
        (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(transcripts) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_iemocap(tmp_path_factory.mktemp("iemocap"))


def _sessions(table, split):
    return set(table[table.split == split].utt_id.str[4].astype(int))


def test_default_is_s3prl_random_twenty_percent_of_the_four_other_sessions(corpus):
    table, report = load_iemocap(corpus, fold=2)
    # 12 utterances per session, 10 of them 4-class (fru dropped): 40 in sessions 1, 3, 4, 5
    assert _sessions(table, "Test") == {2} and (table.split == "Test").sum() == 10
    assert _sessions(table, "Train") | _sessions(table, "Development") == {1, 3, 4, 5}
    assert (table.split == "Development").sum() == 40 - int(0.8 * 40) == 8
    assert "dev=random, s3prl-like" in report.notes[0] and "seed 0" in report.notes[0]
    again, _ = load_iemocap(corpus, fold=2)
    assert again.split.tolist() == table.split.tolist()  # seeded: the same draw every time
    other, _ = load_iemocap(corpus, fold=2, dev_seed=1)
    assert other.split.tolist() != table.split.tolist()
    half, _ = load_iemocap(corpus, fold=2, dev_fraction=0.5)
    assert (half.split == "Development").sum() == 20


def test_speechbrain_protocol_splits_the_test_session_by_speaker(corpus):
    table, report = load_iemocap(corpus, fold=3, dev="speaker")
    assert set(table[table.split == "Test"].speaker) == {"Ses03_F"}
    assert set(table[table.split == "Development"].speaker) == {"Ses03_M"}
    assert _sessions(table, "Train") == {1, 2, 4, 5}
    assert "Test = Session3 Female, Development = Session3 Male" in report.notes[0]
    swapped, _ = load_iemocap(corpus, fold=3, dev="speaker", test_gender="Male")
    assert set(swapped[swapped.split == "Test"].speaker) == {"Ses03_M"}


def test_emobox_protocol_has_no_development_and_session_protocol_stays(corpus):
    table, report = load_iemocap(corpus, fold=5, dev="none")
    assert set(table.split) == {"Train", "Test"} and _sessions(table, "Train") == {1, 2, 3, 4}
    assert "no Development" in report.notes[0]
    table, report = load_iemocap(corpus, fold=5, dev="session")
    assert _sessions(table, "Development") == {1} and _sessions(table, "Train") == {2, 3, 4}
    # dev_session given alone implies the session protocol (the earlier signature keeps its meaning)
    table, _ = load_iemocap(corpus, fold=5, dev_session=3)
    assert _sessions(table, "Development") == {3}


@pytest.mark.parametrize("options, message", [
    ({"dev": "bogus"}, "dev must be one of random, speaker, none, session"),
    ({"dev": "random", "dev_session": 2}, "dev_session=2 applies to dev='session' only"),
    ({"dev_fraction": 1.0}, "dev_fraction must be a number in \\(0, 1\\)"),
    ({"dev": "speaker", "test_gender": "F"}, "test_gender must be Female or Male"),
    ({"fold": 6}, "fold must be one of 1..5"),
])
def test_bad_protocol_options_fail_in_one_line(corpus, options, message):
    with pytest.raises(ValueError, match=message):
        load_iemocap(corpus, **options)


def test_protocol_resolves_what_metrics_record():
    assert protocol(fold=1) == {"fold": 1, "dev": "random", "like": "s3prl", "test_session": 1,
                                "train_sessions": [2, 3, 4, 5], "dev_fraction": 0.2, "dev_seed": 0}
    assert protocol(fold=5, dev="session")["dev_session"] == 1


def test_four_class_count_other_than_5531_is_noted(corpus):
    table, report = load_iemocap(corpus)
    assert len(table) == 50
    assert any("50 four-class utterances" in n and "5,531" in n for n in report.notes)
    _, report = load_iemocap(corpus, happy="exc")  # a variant: no comparison with the full release
    assert not any("5,531" in n for n in report.notes)


def test_strip_nonspeech_tokens_is_an_option_and_counted(corpus):
    table, report = load_iemocap(corpus)
    assert table.set_index("utt_id").transcript["Ses01F_impro01_F000"] == "[LAUGHTER] well  okay [BREATHING]"
    table, report = load_iemocap(corpus, strip_nonspeech=True)
    assert table.set_index("utt_id").transcript["Ses01F_impro01_F000"] == "well okay"
    assert table.set_index("utt_id").transcript["Ses01F_impro01_F001"] == "sentence 1"
    assert report.repaired["non-speech tokens ([LAUGHTER], [BREATHING], ...) stripped from transcript"] == 10


def test_parent_of_the_full_release_is_read_with_a_note(tmp_path):
    write_iemocap(tmp_path / "IEMOCAP_full_release", per_speaker=2)
    assert detect_layout(tmp_path) == "iemocap"
    table, report = load_corpus(tmp_path, fold=1, dev="none")
    assert len(table) == 20 and _sessions(table, "Test") == {1}
    assert any("read IEMOCAP_full_release/ inside it" in n for n in report.notes)
    write_iemocap(tmp_path / "copy2", per_speaker=1)
    with pytest.raises(FileNotFoundError, match="several folders that do \\(IEMOCAP_full_release, copy2\\)"):
        load_iemocap(tmp_path)


# -- training runs: the protocol in metrics.json, EmoBox's refusal, folds.json -----------------------------

FAST = {"max_steps": 2, "eval_every": 1, "n_boot": 10, "progress": False, "device": "cpu", "crop_seconds": 0.5,
        "batch_size": 4, "model.text": False}


def test_run_records_protocol_and_emobox_needs_a_selection_split(tmp_path):
    from sercore.train import train_run

    corpus = write_iemocap(tmp_path / "corpus", per_speaker=4)
    common = {**FAST, "cache_dir": str(tmp_path / "cache")}
    metrics = train_run("fusion", corpus, tmp_path / "run", profile="smoke", **common)
    assert metrics["protocol"]["dev"] == "random" and metrics["protocol"]["like"] == "s3prl"
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["protocol"] == metrics["protocol"] and written["selection"]["split"] == "Development"
    with pytest.raises(ValueError, match="corpus.dev=none .* set dev_split=Test"):
        train_run("fusion", corpus, tmp_path / "emobox", profile="smoke", **common, **{"corpus.dev": "none"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "expected split Development absent": the protocol has none
        emobox = train_run("fusion", corpus, tmp_path / "emobox", profile="smoke", dev_split="Test", **common,
                           **{"corpus.dev": "none"})
    assert emobox["selection"]["split"] == "Test" and emobox["protocol"]["dev"] == "none"
    assert emobox["absent_splits"] == []
    assert set(emobox["splits"]) == {"Test"}


def test_folds_cli_writes_mean_and_spread_over_folds(tmp_path, capsys):
    from sercore.cli import main

    corpus = write_iemocap(tmp_path / "corpus", per_speaker=4)
    out = tmp_path / "folds"
    sets = [f"--set={k}={v}" for k, v in {**FAST, "cache_dir": str(tmp_path / "cache")}.items()]
    assert main(["train", "--study", "fusion", "--corpus", str(corpus), "--profile", "smoke", "--out", str(out),
                 "--folds", "1-3", "--quiet", *sets]) == 0
    folds = json.loads((out / "folds.json").read_text())
    assert folds["folds"] == [1, 2, 3] and folds["protocol"]["dev"] == "random"
    assert folds["protocol"] == {"dev": "random", "like": "s3prl", "dev_fraction": 0.2, "dev_seed": 0}
    assert folds["selection_split"] == "Development"
    per_fold = [json.loads((out / f"fold{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    assert [m["protocol"]["test_session"] for m in per_fold] == [1, 2, 3]
    values = [m["splits"]["Test"]["macro_f1"]["value"] for m in per_fold]
    stats = folds["splits"]["Test"]["macro_f1"]
    assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values, ddof=1))
    assert (stats["min"], stats["max"], stats["n"]) == (min(values), max(values), 3)
    assert set(folds["splits"]) == {"Development", "Test"}
    assert json.loads(capsys.readouterr().out)["splits"]["Test"]["macro_f1"]["mean"] == pytest.approx(stats["mean"])


def test_folds_are_refused_for_other_layouts_and_bad_ranges(tmp_path):
    from sercore.train.folds import parse_folds, train_folds

    assert parse_folds("1-5") == [1, 2, 3, 4, 5] and parse_folds("2,4") == [2, 4]
    for bad in ("0-3", "1-7", "a", "1,1"):
        with pytest.raises(ValueError, match="--folds"):
            parse_folds(bad)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    with pytest.raises(ValueError, match="not in the IEMOCAP layout"):
        train_folds("fusion", manifest, tmp_path / "out", [1])
    with pytest.raises(ValueError, match="drop corpus.fold"):
        train_folds("fusion", manifest, tmp_path / "out", [1], **{"corpus.fold": 2})
