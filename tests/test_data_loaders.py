"""Corpus loaders: the generated corpus read back in both layouts, and every kind of bad input."""

import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from sercore.data import (COLUMNS, AudioError, detect_layout, generate_corpus, inspect_audio, load_corpus,
                          load_iemocap, load_manifest, load_msp_podcast, read_audio)
from sercore.data.msp_layout import LABELS_HEADER


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("msp"), profile="smoke", progress=False)


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("iemocap"), profile="smoke", layout="iemocap",
                           n_utterances=150, progress=False)


def _counts(root):
    return json.loads((root / "corpus.json").read_text())["counts"]


def _tone(path, seconds=0.5, rate=16000, channels=1, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
    return path


# ---------------------------------------------------------------- the generated corpus, read back

def test_msp_loader_reads_generated_corpus(msp):
    table, report = load_msp_podcast(msp)
    counts = _counts(msp)
    assert tuple(table.columns) == COLUMNS
    assert dict(Counter(table.label)) == counts["label"]
    assert dict(Counter(table.speaker)) == counts["speaker"]
    assert dict(Counter(table.split)) == counts["split"]
    assert report.kept == len(table) == 200 and report.n_skipped == 0 and report.n_repaired == 0
    assert table.utt_id.is_unique
    assert table[["arousal", "valence", "dominance"]].apply(lambda c: c.between(1, 7)).all().all()
    row = table.iloc[0]
    assert row.transcript == (msp / "Transcripts" / f"{row.utt_id}.txt").read_text().strip() != ""
    assert set(table.gender) == {"Female", "Male"}
    # arousal follows the class prototypes: anger above sadness
    means = table.groupby("label").arousal.mean()
    assert means["A"] > means["S"] + 1.5


def test_iemocap_loader_reads_generated_corpus(iemocap):
    counts = _counts(iemocap)
    table, report = load_iemocap(iemocap, fold=1, dev="session")
    assert tuple(table.columns) == COLUMNS
    expected = {"ang": counts["label"].get("ang", 0), "neu": counts["label"].get("neu", 0),
                "sad": counts["label"].get("sad", 0),
                "hap": counts["label"].get("hap", 0) + counts["label"].get("exc", 0)}
    assert dict(Counter(table.label)) == expected
    dropped = {code: n for code, n in counts["label"].items() if code not in ("ang", "neu", "sad", "hap", "exc")}
    assert dropped, "the generated IEMOCAP corpus must contain codes the loader drops"
    for code, n in dropped.items():
        assert report.skipped[f"class {code} not in the 4-class set"] == n
    assert report.kept + report.n_skipped == sum(counts["label"].values())
    assert set(table.speaker) == set(counts["speaker"])
    assert all(table.gender == table.speaker.str[-1].map({"F": "Female", "M": "Male"}))
    # fold 1: Session1 is Test, Session2 Development, the rest Train
    assert set(table[table.split == "Test"].speaker) == {"Ses01_F", "Ses01_M"}
    assert set(table[table.split == "Development"].speaker) == {"Ses02_F", "Ses02_M"}
    assert set(table[table.split == "Train"].speaker.str[:5]) == {"Ses03", "Ses04", "Ses05"}
    assert any("Test = Session1, Development = Session2" in note for note in report.notes)
    assert (table.transcript != "").all()
    assert table[["arousal", "valence", "dominance"]].apply(lambda c: c.between(1, 5)).all().all()


def test_iemocap_folds_partition_sessions(iemocap):
    tests = []
    for fold in range(1, 6):
        table, _ = load_iemocap(iemocap, fold=fold, dev="session", check_audio=False)
        test = table[table.split == "Test"]
        assert set(test.speaker.str[:5]) == {f"Ses0{fold}"}
        assert set(table[table.split == "Development"].speaker.str[:5]) == {f"Ses0{fold % 5 + 1}"}
        tests += list(test.utt_id)
    assert len(tests) == len(set(tests)) == len(load_iemocap(iemocap, check_audio=False)[0])
    table, report = load_iemocap(iemocap, fold=3, dev_session=1)
    assert set(table[table.split == "Development"].speaker.str[:5]) == {"Ses01"}
    with pytest.raises(ValueError, match="fold"):
        load_iemocap(iemocap, fold=6)
    with pytest.raises(ValueError, match="dev_session"):
        load_iemocap(iemocap, fold=2, dev_session=2)


def test_iemocap_happy_variants(iemocap):
    counts = _counts(iemocap)["label"]
    table, report = load_iemocap(iemocap, happy="exc", check_audio=False)
    assert (table.label == "hap").sum() == counts["exc"]
    assert report.skipped["class hap not in the 4-class set"] == counts["hap"]


def test_load_corpus_detects_layouts(msp, iemocap, tmp_path):
    assert detect_layout(msp) == "msp-podcast" and detect_layout(iemocap) == "iemocap"
    table, report = load_corpus(iemocap, fold=2)
    assert set(table[table.split == "Test"].speaker.str[:5]) == {"Ses02"}
    assert "generated demonstration corpus" in str(report)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{_tone(tmp_path / 'a.wav')},N\n")
    assert detect_layout(manifest) == "manifest" and len(load_corpus(manifest)[0]) == 1
    with pytest.raises(FileNotFoundError, match="expected"):
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no known corpus layout"):
        load_corpus(tmp_path / "empty")


# ---------------------------------------------------------------- read_audio and headers

def test_read_audio_repairs_rate_and_channels(tmp_path):
    wave = read_audio(_tone(tmp_path / "a.wav", seconds=1.0, rate=44100, channels=2))
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size == 16000
    assert 0.25 < np.abs(wave).max() < 0.35  # the average of two equal channels, not their sum
    assert read_audio(_tone(tmp_path / "b.wav", seconds=1.0, rate=22050)).size == 16000


def test_read_audio_errors_name_the_file(tmp_path):
    (tmp_path / "garbage.wav").write_bytes(b"this is not a wav file at all")
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0), 16000)
    for name, reason in (("missing.wav", "missing"), ("garbage.wav", "unreadable"), ("empty.wav", "empty")):
        with pytest.raises(AudioError, match=reason) as error:
            read_audio(tmp_path / name)
        assert name in str(error.value)
        with pytest.raises(AudioError, match=reason):
            inspect_audio(tmp_path / name)


# ---------------------------------------------------------------- bad input, MSP-Podcast layout

def _bad_msp(root):
    (root / "Audios").mkdir(parents=True)
    (root / "Transcripts").mkdir()
    (root / "Labels").mkdir()
    for name in ("good", "noscript", "o", "x", "z", "dup", "avd", "split", "gender"):
        _tone(root / "Audios" / f"{name}.wav")
        (root / "Transcripts" / f"{name}.txt").write_text(f"text of {name}\n")
    (root / "Transcripts" / "noscript.txt").unlink()
    _tone(root / "Audios" / "rate.wav", rate=44100)
    _tone(root / "Audios" / "stereo.wav", channels=2)
    for name in ("rate", "stereo"):
        (root / "Transcripts" / f"{name}.txt").write_text(f"text of {name}\n")
    (root / "Audios" / "garbage.wav").write_bytes(b"RIFF junk that is not audio")
    sf.write(str(root / "Audios" / "empty.wav"), np.zeros(0), 16000)
    rows = [LABELS_HEADER,
            "good.wav,A,5.0,2.0,5.5,7,Female,Train",
            "noscript.wav,H,5.0,6.0,4.0,7,Female,Train",
            "rate.wav,S,2.0,2.0,3.0,8,Male,Development",
            "stereo.wav,N,4.0,4.0,4.0,8,Male,Test1",
            "missing.wav,N,4.0,4.0,4.0,8,Male,Test1",
            "garbage.wav,N,4.0,4.0,4.0,8,Male,Test1",
            "empty.wav,N,4.0,4.0,4.0,8,Male,Test1",
            "o.wav,O,4.0,4.0,4.0,8,Male,Train",
            "x.wav,X,4.0,4.0,4.0,8,Male,Train",
            "z.wav,Z,4.0,4.0,4.0,8,Male,Train",
            "avd.wav,N,high,4.0,4.0,8,Male,Train",
            "split.wav,N,4.0,4.0,4.0,8,Male,Bogus",
            "short.wav,N,4.0",
            ",N,4.0,4.0,4.0,8,Male,Train",
            "dup.wav,C,4.0,3.0,4.0,9,Unknown,Test2",
            "dup.wav,C,4.0,3.0,4.0,9,Unknown,Test2",
            "gender.wav,D,4.0,3.0,,9,Robot,Test3",
            ""]
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows))
    return root


def test_msp_bad_inputs_are_repaired_or_skipped_and_counted(tmp_path):
    table, report = load_msp_podcast(_bad_msp(tmp_path))
    assert sorted(table.utt_id) == ["dup", "gender", "good", "noscript", "rate", "stereo"]
    assert report.kept == 6
    assert report.skipped == {
        "audio file missing": 1, "unreadable audio": 1, "empty audio (0 samples)": 1,
        "class O (other) not in the class set": 1, "class X (no agreement) not in the class set": 1,
        "unknown class code": 1, "malformed row (A/V/D not a number)": 1,
        "malformed row (Split_Set not one of Train, Development, Test1, Test2, Test3)": 1,
        "malformed row (3 fields, header has 8)": 1, "malformed row (empty FileName)": 1,
        "duplicate FileName": 1}
    assert report.repaired == {"sample rate 44100 Hz (resampled to 16000 Hz on read)": 1,
                               "2 channels (averaged to mono on read)": 1,
                               "transcript missing (set to \"\")": 1,
                               "unknown gender value (set to None)": 1}
    text = str(report)
    assert "missing.wav" in text and "garbage.wav" in text and "z.wav ('Z')" in text and "line 14" in text
    by_id = table.set_index("utt_id")
    assert by_id.loc["noscript", "transcript"] == "" and by_id.loc["good", "transcript"] == "text of good"
    assert by_id.loc["dup", "gender"] is None and by_id.loc["dup", "speaker"] == "9"
    assert np.isnan(by_id.loc["gender", "dominance"]) and by_id.loc["gender", "split"] == "Test3"
    # the repaired rows really are readable at 16 kHz mono
    assert read_audio(by_id.loc["rate", "path"]).size == 8000
    assert read_audio(by_id.loc["stereo", "path"]).ndim == 1


def test_msp_check_audio_off_only_checks_existence(tmp_path):
    table, report = load_msp_podcast(_bad_msp(tmp_path), check_audio=False)
    assert {"garbage", "empty", "rate", "stereo"} <= set(table.utt_id)
    assert report.skipped["audio file missing"] == 1
    assert "unreadable audio" not in report.skipped and not any("sample rate" in r for r in report.repaired)


def test_msp_all_classes_option(tmp_path):
    table, report = load_msp_podcast(_bad_msp(tmp_path), classes=("N", "A", "H", "S", "C", "U", "D", "F", "O", "X"))
    assert {"o", "x"} <= set(table.utt_id) and "unknown class code" in report.skipped


def test_msp_missing_root_labels_or_columns_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: expected an MSP-Podcast folder"):
        load_msp_podcast(tmp_path / "absent")
    (tmp_path / "Audios").mkdir()
    with pytest.raises(FileNotFoundError, match="labels_consensus.csv"):
        load_msp_podcast(tmp_path)
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\na.wav,N\n")
    with pytest.raises(ValueError, match="header lacks EmoAct"):
        load_msp_podcast(tmp_path)


# ---------------------------------------------------------------- bad input, IEMOCAP layout

def test_iemocap_bad_inputs(tmp_path):
    for session in range(1, 6):
        base = tmp_path / f"Session{session}"
        dialog = f"Ses0{session}F_impro01"
        wav_dir = base / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True)
        (base / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (base / "dialog" / "transcriptions").mkdir(parents=True)
        for name in ("F000", "M000", "F001", "M001", "F002"):
            _tone(wav_dir / f"{dialog}_{name}.wav")
        (wav_dir / f"{dialog}_M002.wav").write_bytes(b"garbage")
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", "",
                 f"[1.0 - 2.0]\t{dialog}_F000\tneu\t[2.5000, 2.5000, 2.5000]", "C-E2:\tNeutral;\t()",
                 f"[2.0 - 3.0]\t{dialog}_M000\texc\t[4.0000, 4.5000, 3.0000]",
                 f"[3.0 - 4.0]\t{dialog}_F001\tfru\t[2.0000, 3.5000, 3.5000]",
                 f"[4.0 - 5.0]\t{dialog}_M001\twow\t[2.0000, 3.5000, 3.5000]",
                 f"[5.0 - 6.0]\t{dialog}_F002\tang",
                 f"[6.0 - 7.0]\t{dialog}_M002\tsad\t[1.5000, 2.0000, 2.0000]",
                 f"[7.0 - 8.0]\t{dialog}_F003\tsad\t[1.5000, 2.0000, 2.0000]"]
        (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (base / "dialog" / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 mac junk")
        (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            f"{dialog}_F000 [001.0000-002.0000]: Hello there.\n")
    table, report = load_iemocap(tmp_path, fold=4)
    assert report.kept == len(table) == 10  # F000 (neu) and M000 (exc -> hap) per session
    assert sorted(Counter(table.label).items()) == [("hap", 5), ("neu", 5)]
    assert report.skipped == {"class fru not in the 4-class set": 5, "unknown class code": 5,
                              "malformed row": 5, "unreadable audio": 5, "audio file missing": 5}
    assert report.repaired == {"transcript missing (set to \"\")": 5}
    row = table[table.utt_id == "Ses01F_impro01_M000"].iloc[0]
    assert (row.speaker, row.gender, row.label) == ("Ses01_M", "Male", "hap")
    assert (row.valence, row.arousal, row.dominance) == (4.0, 4.5, 3.0)  # the triple is [V, A, D]
    assert table[table.utt_id == "Ses01F_impro01_F000"].transcript.iloc[0] == "Hello there."
    assert "Ses01F_impro01_M001 ('wow')" in str(report)


def test_iemocap_missing_root_or_sessions_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: expected an IEMOCAP folder"):
        load_iemocap(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no IEMOCAP sessions"):
        load_iemocap(tmp_path)
    (tmp_path / "Session2" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (tmp_path / "Session1" / "dialog" / "EmoEvaluation").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="Session3.*Test session"):
        load_iemocap(tmp_path, fold=3)


# ---------------------------------------------------------------- bad input, CSV manifest

def test_manifest_paths_defaults_and_bad_rows(tmp_path):
    (tmp_path / "audio").mkdir()
    _tone(tmp_path / "audio" / "one.wav")
    _tone(tmp_path / "audio" / "two.wav", rate=8000)
    absolute = _tone(tmp_path / "three.wav", channels=2)
    (tmp_path / "audio" / "bad.wav").write_bytes(b"nope")
    rows = ["path,label,arousal,speaker,gender,transcript,extra",
            "audio/one.wav,happy,0.8,s1,f,hello,1",
            "audio/two.wav,sad,,s2,Male,,2",
            f"{absolute},,0.5,s3,alien,,3",
            "audio/missing.wav,sad,0.1,s1,F,,4",
            "audio/bad.wav,sad,0.1,s1,F,,5",
            "audio/one.wav,angry,x,s1,F,,6",
            "audio/one.wav,happy,0.8,s1,F,,7",
            "audio/one.wav,happy"]
    csv_path = tmp_path / "manifest.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    table, report = load_manifest(csv_path)
    assert tuple(table.columns) == COLUMNS
    assert list(table.utt_id) == ["audio/one", "audio/two", "three"]
    assert table.path.tolist() == [str(tmp_path / "audio" / "one.wav"), str(tmp_path / "audio" / "two.wav"),
                                   str(absolute)]
    assert table.label.tolist() == ["happy", "sad", None]
    assert table.gender.tolist() == ["Female", "Male", None]
    assert table.split.unique().tolist() == ["Train"] and np.isnan(table.valence).all()
    assert table.transcript.tolist() == ["hello", "", ""]
    assert report.skipped == {"audio file missing": 1, "unreadable audio": 1,
                              "malformed row (A/V/D not a number)": 1, "duplicate utt_id": 1,
                              "malformed row (2 fields, header has 7)": 1}
    assert report.repaired == {"sample rate 8000 Hz (resampled to 16000 Hz on read)": 1,
                               "2 channels (averaged to mono on read)": 1,
                               "no class label (kept with label None)": 1,
                               "unknown gender value (set to None)": 1}
    assert any("every row is in split 'Train'" in note for note in report.notes)
    assert any("columns ignored: extra" in note for note in report.notes)
    table, report = load_manifest(csv_path, classes={"happy", "sad"})
    assert "angry" not in set(table.label) and report.skipped["unknown class code"] == 0  # angry row was malformed
    (tmp_path / "m2.csv").write_text("path,label,split\naudio/one.wav,calm,Test\naudio/two.wav,sad,Train\n")
    table, report = load_manifest(tmp_path / "m2.csv", classes={"sad"})
    assert table.utt_id.tolist() == ["audio/two"] and report.skipped == {"unknown class code": 1}


def test_manifest_missing_file_or_columns_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a CSV file with columns path, label"):
        load_manifest(tmp_path / "absent.csv")
    (tmp_path / "m.csv").write_text("file,emotion\na.wav,N\n")
    with pytest.raises(ValueError, match="header lacks path, label"):
        load_manifest(tmp_path / "m.csv")
