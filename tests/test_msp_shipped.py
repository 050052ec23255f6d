"""MSP-Podcast as it is shipped (issue 9, section 3): the JSON labels file, Test3 audio listed only in the
partition file, the Audios/Audios/ nesting, and X / O rows kept for the attribute (dimensional) task. Each
test builds a tiny corpus by hand in tmp_path in the published formats and asserts the documented outcome."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercore.data import load_corpus, load_msp_podcast
from sercore.data.corpus import detect_layout
from sercore.data.msp_podcast import ALL_CODES, NO_ROW, PARTITION_LINE

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"


def _tone(path, samples=8000, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.3 * np.sin(np.arange(samples) * 2 * np.pi * 220 / rate), rate)


def _corpus(root: Path, rows, audio=None, partitions=None, json_labels=False, audio_dir="Audios") -> Path:
    """Audio for every row's FileName (and `audio`), the labels as CSV or as the JSON object keyed by FileName,
    and optionally a Partitions.txt."""
    names = [r.split(",")[0] for r in rows] + list(audio or [])
    for name in names:
        _tone(root / audio_dir / name)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    if json_labels:
        keys = HEADER.split(",")
        entries = {}
        for r in rows:
            cells = r.split(",")
            value = dict(zip(keys[1:], cells[1:]))
            for k in ("EmoAct", "EmoVal", "EmoDom"):  # numbers in the JSON, as the releases have them
                value[k] = float(value[k])
            entries[cells[0]] = value
        (root / "Labels" / "labels_consensus.json").write_text(json.dumps(entries, indent=1))
    else:
        (root / "Labels" / "labels_consensus.csv").write_text("\n".join([HEADER] + rows) + "\n")
    if partitions is not None:
        (root / "Partitions.txt").write_text("\n".join(partitions) + "\n")
    return root


ROWS = ["a.wav,N,4,3,5,1,Female,Train", "b.wav,H,6,6,4,2,Male,Development", "c.wav,X,2,5,3,1,Female,Train",
        "d.wav,O,5,2,6,2,Male,Test1"]


def test_json_labels_when_only_file(tmp_path):
    root = _corpus(tmp_path, ROWS, json_labels=True)
    assert detect_layout(root) == "msp-podcast"
    table, report = load_corpus(root)
    assert list(table.utt_id) == ["a", "b"] and list(table.split) == ["Train", "Development"]
    assert table.loc[0, ["arousal", "valence", "dominance"]].tolist() == [4.0, 3.0, 5.0]
    assert table.loc[1, "speaker"] == "2" and table.loc[1, "gender"] == "Male"
    assert report.skipped == {"class X (no agreement) not in the class set": 1,
                              "class O (other) not in the class set": 1}
    assert report.accounts["Labels/labels_consensus.json"] == {"total": 4, "kept": 2, "skipped": 2}
    assert any("labels_consensus.json (no labels_consensus.csv)" in n for n in report.notes)
    # the same corpus as CSV gives the same table
    csv_table, _ = load_msp_podcast(_corpus(tmp_path / "csv", ROWS))
    assert csv_table.drop(columns="path").equals(table.drop(columns="path"))


def test_json_duplicate_key_and_malformed_entries_are_counted(tmp_path):
    root = _corpus(tmp_path, ROWS[:2], json_labels=True, audio=["e.wav"])
    path = root / "Labels" / "labels_consensus.json"
    text = path.read_text().rstrip()[:-1]  # reopen the object
    text += (',\n "a.wav": {"EmoClass": "S", "EmoAct": 2, "EmoVal": 2, "EmoDom": 2, "SpkrID": "1", '
             '"Gender": "Female", "Split_Set": "Train"},\n "e.wav": {"EmoClass": "N"},\n "f.wav": 3}')
    path.write_text(text)
    table, report = load_msp_podcast(root)
    assert list(table.utt_id) == ["a", "b"] and table.loc[0, "label"] == "N"  # the first a.wav is kept
    assert report.skipped["duplicate FileName"] == 1
    assert report.skipped["malformed entry (lacks EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set)"] == 1
    assert report.skipped["malformed entry (not an object)"] == 1
    lines = report.accounts["Labels/labels_consensus.json"]
    assert lines == {"total": 5, "kept": 2, "skipped": 3}
    # e.wav is named by a skipped entry: not counted again as audio without a row
    assert report.accounts["Audios/"] == {"total": 3, "kept": 2, "named by a skipped row": 1,
                                          "named by no row (skipped)": 0}


def test_invalid_json_is_one_line_naming_file_line_and_column(tmp_path):
    root = _corpus(tmp_path, ROWS[:1], json_labels=True)
    path = root / "Labels" / "labels_consensus.json"
    path.write_text('{\n "a.wav": {"EmoClass": "N",,}\n}')
    with pytest.raises(ValueError) as caught:
        load_msp_podcast(root)
    message = str(caught.value)
    assert message.startswith(f"{path}:2:") and "not valid JSON" in message and "\n" not in message
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match="expected a JSON object keyed by FileName, found a list"):
        load_msp_podcast(root)


def test_test3_audio_listed_in_partitions_is_kept_unlabelled(tmp_path):
    test3 = ["MSP-PODCAST_test3_0001.wav", "MSP-PODCAST_test3_0002.wav"]
    partitions = ["Train; a.wav", "Development; b.wav", "Test3; MSP-PODCAST_test3_0001.wav",
                  "Test3; MSP-PODCAST_test3_0002.wav", "Test3; missing.wav", "Test3", "Test1; d.wav", ""]
    root = _corpus(tmp_path, ROWS, audio=test3 + ["stray.wav"], partitions=partitions)
    table, report = load_msp_podcast(root)
    t3 = table[table.split == "Test3"]
    assert sorted(t3.utt_id) == ["MSP-PODCAST_test3_0001", "MSP-PODCAST_test3_0002"]
    assert t3.label.isna().all() and t3[["arousal", "valence", "dominance"]].isna().all().all()
    assert set(t3.speaker) == {"Unknown"} and t3.gender.isna().all()
    assert report.kept == len(table) == 4  # a, b, and the two Test3 files
    assert report.skipped["audio file missing"] == 1 and report.skipped[PARTITION_LINE] == 1
    assert report.accounts["Partitions.txt"] == {"total": 8, "with a labels row": 3, "kept unlabelled": 2,
                                                 "skipped": 2, "blank": 1}
    # every audio file: kept (4), named by a skipped labels row (c, d: X and O), or named by no row (stray)
    assert report.accounts["Audios/"] == {"total": 7, "kept": 4, "named by a skipped row": 2,
                                          "named by no row (skipped)": 1}
    assert report.examples[f"skipped: {NO_ROW}"] == ["Audios/stray.wav"]
    assert any("2 file(s) without a labels row kept unlabelled (Test3: 2)" in n for n in report.notes)


def test_partition_file_other_spellings_and_split_disagreement(tmp_path):
    root = _corpus(tmp_path, ROWS[:2], audio=["t3.wav"])
    (root / "Labels" / "Partition.txt").write_text("a.wav; Test1\nt3.wav;Test3\n")  # FileName first, no space
    table, report = load_msp_podcast(root)
    assert dict(zip(table.utt_id, table.split)) == {"a": "Train", "b": "Development", "t3": "Test3"}
    assert any("1 file(s) listed in another split than their labels row's Split_Set (Split_Set kept)" in n
               for n in report.notes)


def test_test3_named_audio_without_partition_file_is_noted(tmp_path):
    root = _corpus(tmp_path, ROWS[:2], audio=["MSP-PODCAST_test3_0001.wav"])
    table, report = load_msp_podcast(root)
    assert len(table) == 2 and report.skipped[NO_ROW] == 1
    assert any("1 file(s) named *test3* have no labels row and there is no Partitions.txt" in n
               for n in report.notes)


def test_nested_audios_folder_is_read_with_a_note(tmp_path):
    root = _corpus(tmp_path, ROWS[:2], audio_dir="Audios/Audios")
    table, report = load_msp_podcast(root)
    assert list(table.utt_id) == ["a", "b"] and "audio file missing" not in report.skipped
    assert Path(table.loc[0, "path"]).parent == root.resolve() / "Audios" / "Audios"
    assert any("nests the audio folder in itself; audio read from Audios/Audios/" in n for n in report.notes)
    assert report.accounts["Audios/Audios/"]["kept"] == 2
    # audio in Audios/ itself: the nested folder is not read, and the report says why its files have no row
    _tone(root / "Audios" / "a.wav")
    _tone(root / "Audios" / "b.wav")
    table, report = load_msp_podcast(root)
    assert Path(table.loc[0, "path"]).parent == root.resolve() / "Audios"
    assert report.skipped[NO_ROW] == 2 and any("Audios/Audios/ exists beside audio" in n for n in report.notes)


def test_all_codes_keep_x_and_o_with_their_attributes(tmp_path):
    table, report = load_msp_podcast(_corpus(tmp_path, ROWS), classes=ALL_CODES)
    assert list(table.label) == ["N", "H", "X", "O"] and not report.skipped
    assert table.loc[2, ["arousal", "valence", "dominance"]].tolist() == [2.0, 5.0, 3.0]
    assert not math.isnan(table.loc[3, "arousal"])


def test_run_load_options_and_unlabelled_counts(tmp_path):
    from sercore.train.run import _usable_rows, load_options

    assert load_options("regression", "msp-podcast", {}) == {"classes": ALL_CODES}
    assert load_options("regression", "msp-podcast", {"classes": ["N", "H"]}) == {"classes": ["N", "H"]}
    assert load_options("classification", "msp-podcast", {}) == {} == load_options("regression", "iemocap", {})
    root = _corpus(tmp_path, ROWS + ["e.wav,N,,,,1,Female,Test1"], audio=["t.wav"],
                   partitions=["Test3; t.wav"])
    table, _ = load_msp_podcast(root, classes=ALL_CODES)
    usable, excluded = _usable_rows(table, "regression", None)
    assert list(table.utt_id[usable]) == ["a", "b", "c", "d"]
    assert excluded == {"missing arousal/valence/dominance": 1, "unlabelled (Test3): never trained or scored": 1}
    usable, excluded = _usable_rows(table, "classification", ("N", "H"))
    assert list(table.utt_id[usable]) == ["a", "b", "e"]
    assert excluded == {"label X": 1, "label O": 1, "unlabelled (Test3): never trained or scored": 1}
