"""Hostile corpus inputs (issue 8): every line of a labels file and every audio file ends kept, repaired
or skipped by reason, or the load is refused with one line naming the file. Each test builds the bad
input by hand in tmp_path (soundfile and plain text) and asserts the documented outcome."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercore.cli import main
from sercore.data import inspect_audio, load_iemocap, load_manifest, load_msp_podcast
from sercore.data.iemocap import NO_LABEL
from sercore.data.msp_podcast import NO_ROW
from sercore.data.table import MIN_AUDIO_SECONDS, NOT_UTF8

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
QUOTE = "malformed row (unbalanced quote; a field cannot span lines)"
SHORT = f"audio shorter than {MIN_AUDIO_SECONDS * 1000:g} ms (one analysis window)"
TRUNCATED = "truncated file (header says more frames than the file holds; read as what it holds)"


def _tone(path, samples=8000, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.3 * np.sin(np.arange(samples) * 2 * np.pi * 220 / rate), rate)
    return path


def _truncate(path, keep=0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def _msp(root, rows, names=None, raw=None):
    """An MSP-Podcast folder: a 0.5 s tone and a transcript per name, the labels file from rows (or raw bytes)."""
    for name in names if names is not None else [r.split(",")[0] for r in rows]:
        _tone(root / "Audios" / name)
        (root / "Transcripts").mkdir(exist_ok=True)
        (root / "Transcripts" / f"{Path(name).stem}.txt").write_text("words\n")
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    path = root / "Labels" / "labels_consensus.csv"
    path.write_bytes(raw if raw is not None else ("\n".join([HEADER] + rows) + "\n").encode())
    return root


def _rows(n, start=0, split="Train"):
    return [f"u{i:03d}.wav,N,4.0,4.0,4.0,{i % 3},Female,{split}" for i in range(start, start + n)]


# ---------------------------------------------------------------- item 5: a quote cannot swallow lines

def test_unterminated_quote_costs_one_line_msp(tmp_path):
    rows = _rows(10)
    rows[3] = 'u003.wav,"N,4.0,4.0,4.0,0,Female,Train'
    rows.insert(6, "")
    table, report = load_msp_podcast(_msp(tmp_path, rows, names=[f"u{i:03d}.wav" for i in range(10)]))
    assert len(table) == report.kept == 9 and "u003" not in set(table.utt_id)
    assert report.skipped[QUOTE] == 1 and report.examples[f"skipped: {QUOTE}"] == ["line 5"]
    assert report.accounts["Labels/labels_consensus.csv"] == {"total": 11, "kept": 9, "skipped": 1, "blank": 1}
    # its audio was named by the skipped line only: not counted a second time as unlabelled
    assert report.accounts["Audios/"] == {"total": 10, "kept": 9, "named by a skipped row": 1,
                                          "named by no row (skipped)": 0}


def test_unterminated_quote_costs_one_line_manifest(tmp_path):
    for i in range(4):
        _tone(tmp_path / f"a{i}.wav")
    lines = ["path,label,transcript", "a0.wav,N,hello", 'a1.wav,N,"she said, hi', "a2.wav,N,fine", "",
             'a3.wav,N,"quoted, with ""inner"" quotes"']
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    table, report = load_manifest(tmp_path / "m.csv")
    assert table.utt_id.tolist() == ["a0", "a2", "a3"]
    assert table.transcript.iloc[2] == 'quoted, with "inner" quotes'
    assert report.skipped == {QUOTE: 1} and report.examples[f"skipped: {QUOTE}"] == ["line 3"]
    assert report.accounts["m.csv"] == {"total": 5, "kept": 3, "skipped": 1, "blank": 1}


# ---------------------------------------------------------------- item 6: audio without a label line

def _session(root, k, dialogs, lines=None):
    """Session k with a 0.5 s wav per utterance id of dialogs; EmoEvaluation text per dialog from lines."""
    base = root / f"Session{k}"
    (base / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (base / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
    for dialog, utts in dialogs.items():
        for utt in utts:
            _tone(base / "sentences" / "wav" / dialog / f"{utt}.wav")
        if lines is not None and dialog in lines:
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_bytes(lines[dialog])
        (base / "dialog" / "transcriptions" / f"{dialog}.txt").write_text(
            "".join(f"{utt} [000.0000-001.0000]: text\n" for utt in utts))
    return base


def _evaluation(*entries, header=True):
    out = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""] if header else []
    for utt, code, vad in entries:
        out += [f"[1.0 - 2.0]\t{utt}\t{code}\t[{vad}]", "C-E2:\tNeutral;\t()"]
    return ("\n".join(out) + "\n").encode()


def _two_sessions(tmp_path, lines):
    ids = {f"Ses0{k}F_impro01": [f"Ses0{k}F_impro01_{g}00{i}" for g in "FM" for i in range(2)] for k in (1, 2)}
    _session(tmp_path, 1, {"Ses01F_impro01": ids["Ses01F_impro01"]}, lines)
    _session(tmp_path, 2, {"Ses02F_impro01": ids["Ses02F_impro01"]},
             {"Ses02F_impro01": _evaluation(*[(u, "neu", "2.5, 2.5, 2.5") for u in ids["Ses02F_impro01"]])})
    return ids["Ses01F_impro01"]


def test_iemocap_leading_whitespace_line_is_read(tmp_path):
    utts = _two_sessions(tmp_path, {})
    text = _evaluation(*[(u, "ang", "2.0, 4.0, 3.0") for u in utts]).replace(b"\n[", b"\n   [")
    (tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_bytes(text)
    table, report = load_iemocap(tmp_path, fold=1, dev_session=2)
    assert set(table[table.split == "Test"].utt_id) == set(utts) and report.n_skipped == 0


@pytest.mark.parametrize("case", ["empty", "truncated", "missing", "utf16 without BOM"])
def test_iemocap_audio_without_label_line_is_counted(tmp_path, case):
    utts = _two_sessions(tmp_path, {})
    full = _evaluation(*[(u, "sad", "2.0, 2.0, 2.0") for u in utts])
    text = {"empty": b"", "truncated": full[: full.index(utts[2].encode()) + 10], "missing": None,
            "utf16 without BOM": full.decode().encode("utf-16-le")}[case]
    if text is not None:
        (tmp_path / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_bytes(text)
    table, report = load_iemocap(tmp_path, fold=1, dev_session=2)
    unreadable = "text file unreadable (mostly NUL bytes: UTF-16 without a byte-order mark?)"
    assert report.skipped.get(unreadable, 0) == (case == "utf16 without BOM")  # the file, not the run
    kept = {"truncated": 2}.get(case, 0)
    assert (table.split == "Test").sum() == kept
    # truncated: line of utts[2] is cut inside the id ("malformed row"; its id no longer names its wav),
    # utts[3] has no line at all: both wavs are counted once each
    malformed = {"truncated": 1}.get(case, 0)
    assert report.skipped.get("malformed row", 0) == malformed
    assert report.skipped[NO_LABEL] == 4 - kept
    audio = report.accounts["Session*/sentences/wav/"]
    assert audio["total"] == 8 == sum(audio[k] for k in ("kept", "named by a skipped row",
                                                         "named by no row (skipped)"))
    assert audio["named by no row (skipped)"] == 4 - kept


def test_msp_audio_without_labels_row_is_counted(tmp_path):
    root = _msp(tmp_path, _rows(3), names=[f"u{i:03d}.wav" for i in range(5)])
    (root / "Audios" / "notes.txt").write_text("not audio, but a file under Audios/ all the same")
    (root / "Audios" / "._u000.wav").write_bytes(b"mac resource fork")
    table, report = load_msp_podcast(root)
    assert report.kept == 3 and report.skipped == {NO_ROW: 3}
    assert sorted(report.examples[f"skipped: {NO_ROW}"]) == ["Audios/notes.txt", "Audios/u003.wav",
                                                            "Audios/u004.wav"]
    assert report.accounts["Audios/"] == {"total": 6, "kept": 3, "named by a skipped row": 0,
                                          "named by no row (skipped)": 3}
    assert "Audios/: 1 file with a name starting with \".\" (not audio: macOS ._ copies, editor files) " \
           "left out" in report.notes


# ---------------------------------------------------------------- item 7: encodings, line by line

def test_non_utf8_line_is_skipped_and_counted(tmp_path):
    raw = ("\n".join([HEADER] + _rows(4)) + "\n").encode().replace(b"u002.wav,N", b"u002.wav,N\xff")
    table, report = load_msp_podcast(_msp(tmp_path, [], names=[f"u{i:03d}.wav" for i in range(4)], raw=raw))
    assert report.kept == 3 and report.skipped[NOT_UTF8] == 1
    assert report.examples[f"skipped: {NOT_UTF8}"] == ["line 4"]
    _tone(tmp_path / "m" / "a.wav")
    (tmp_path / "m" / "m.csv").write_bytes(b"path,label\na.wav,N\nb\xe9.wav,N\r\n")
    table, report = load_manifest(tmp_path / "m" / "m.csv")
    assert table.utt_id.tolist() == ["a"] and report.skipped == {NOT_UTF8: 1}
    assert report.accounts["m.csv"] == {"total": 2, "kept": 1, "skipped": 1, "blank": 0}


def test_utf16_files_are_read_and_noted(tmp_path):
    text = "\r\n".join([HEADER] + _rows(3)) + "\r\n"
    table, report = load_msp_podcast(_msp(tmp_path / "msp", [], names=[f"u{i:03d}.wav" for i in range(3)],
                                          raw=text.encode("utf-16")))
    assert report.kept == 3 and report.n_skipped == 0
    assert "labels_consensus.csv: read as UTF-16 (it starts with a UTF-16 byte-order mark)" in report.notes
    _tone(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_bytes("path,label\na.wav,N\n".encode("utf-16"))
    assert load_manifest(tmp_path / "m.csv")[0].utt_id.tolist() == ["a"]
    (tmp_path / "bare.csv").write_bytes("path,label\na.wav,N\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"bare\.csv: mostly NUL bytes.*re-save it as UTF-8") as error:
        load_manifest(tmp_path / "bare.csv")
    assert "\n" not in str(error.value)


def test_transcript_bad_bytes_are_counted(tmp_path):
    root = _msp(tmp_path / "msp", _rows(2))
    (root / "Transcripts" / "u001.txt").write_bytes(b"caf\xe9 au lait\n")
    table, report = load_msp_podcast(root)
    reason = "transcript not valid UTF-8 (bad bytes replaced)"
    assert report.repaired == {reason: 1} and table.transcript.iloc[1] == "caf\ufffd au lait"
    utts = _two_sessions(tmp_path / "iemocap", {"Ses01F_impro01": _evaluation(
        *[(u, "neu", "2.5, 2.5, 2.5") for u in ["Ses01F_impro01_F000", "Ses01F_impro01_F001"]])})
    (tmp_path / "iemocap" / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_bytes(
        f"{utts[0]} [000.0000-001.0000]: caf\xe9\n{utts[1]} [000.0000-001.0000]: fine\n".encode("latin-1"))
    table, report = load_iemocap(tmp_path / "iemocap", fold=1, dev_session=2)
    assert report.repaired == {reason: 1}
    assert table.set_index("utt_id").loc[utts[0], "transcript"] == "caf\ufffd"


# ---------------------------------------------------------------- item 17: audio, scales, names, splits

def test_truncated_wav_is_detected_and_counted(tmp_path):
    for subtype in ("PCM_16", "FLOAT"):
        path = tmp_path / f"{subtype}.wav"
        sf.write(str(path), np.zeros((16000, 2)), 16000, subtype=subtype)
        assert inspect_audio(path).header_frames is None and not inspect_audio(path).truncated
        info = inspect_audio(_truncate(path))
        assert info.truncated and info.header_frames == 16000 and 7900 < info.frames < 8000
    root = _msp(tmp_path / "msp", _rows(2))
    _truncate(root / "Audios" / "u001.wav")
    table, report = load_msp_podcast(root)
    assert report.kept == 2 and report.repaired == {TRUNCATED: 1}
    (example,) = report.examples[f"repaired: {TRUNCATED}"]
    assert re.fullmatch(r"u001\.wav \(header says 8000 frames, file holds about 39\d\d\)", example)


def test_audio_shorter_than_one_window_is_skipped(tmp_path):
    root = _msp(tmp_path, _rows(3))
    _tone(root / "Audios" / "u000.wav", samples=1)
    _tone(root / "Audios" / "u001.wav", samples=399)
    _tone(root / "Audios" / "u002.wav", samples=400)  # exactly one window: kept
    table, report = load_msp_podcast(root)
    assert table.utt_id.tolist() == ["u002"] and report.skipped == {SHORT: 2}
    assert "u000.wav (1 samples)" in report.examples[f"skipped: {SHORT}"]


def test_avd_outside_scale_becomes_nan(tmp_path):
    rows = ["a.wav,A,8.0,2.0,5.5,1,Female,Train", "b.wav,S,0.5,,7.0,1,Female,Train", "c.wav,N,1,7,4,1,Male,Train"]
    table, report = load_msp_podcast(_msp(tmp_path / "msp", rows))
    t = table.set_index("utt_id")
    assert np.isnan(t.loc["a", "arousal"]) and t.loc["a", "valence"] == 2.0 and t.loc["a", "label"] == "A"
    assert np.isnan(t.loc["b", "arousal"]) and t.loc["b", "dominance"] == 7.0
    assert (t.loc["c", "arousal"], t.loc["c", "valence"]) == (1.0, 7.0)
    assert report.repaired == {"A/V/D outside 1..7 (set to NaN)": 2}  # b's empty valence is no repair
    utt = "Ses01F_impro01_F000"
    _two_sessions(tmp_path / "iemocap", {"Ses01F_impro01": _evaluation((utt, "ang", "2.0, 6.0, 3.0"))})
    table, report = load_iemocap(tmp_path / "iemocap", fold=1, dev_session=2)
    row = table.set_index("utt_id").loc[utt]
    assert np.isnan(row.arousal) and (row.valence, row.dominance, row.label) == (2.0, 3.0, "ang")
    assert report.repaired == {"A/V/D outside 1..5 (set to NaN)": 1}
    _tone(tmp_path / "m" / "a.wav")
    (tmp_path / "m" / "m.csv").write_text("path,label,arousal\na.wav,N,9.5\n")
    assert load_manifest(tmp_path / "m" / "m.csv")[0].arousal.tolist() == [9.5]  # no scale known


def test_filename_outside_audios_is_skipped(tmp_path):
    outside = _tone(tmp_path / "secret.wav")
    root = tmp_path / "corpus"
    rows = ["../secret.wav,N,4,4,4,1,Female,Train", f"{outside},N,4,4,4,1,Female,Train",
            "sub/../../secret.wav,N,4,4,4,1,Female,Train", "sub/ok.wav,N,4,4,4,1,Female,Train"]
    table, report = load_msp_podcast(_msp(root, rows, names=["sub/ok.wav"]))
    assert table.utt_id.tolist() == ["ok"] and report.skipped == {"FileName outside Audios/": 3}
    assert "line 2 ('../secret.wav')" in report.examples["skipped: FileName outside Audios/"]


def test_manifest_split_values(tmp_path):
    names = ["train", "dev", "test", "test1", "testb", "bogus", "validation", "lower", "empty"]
    for name in names:
        _tone(tmp_path / f"{name}.wav")
    splits = ["Train", "Development", "Test", "Test1", "TestB", "Bogus", "Validation", "train", ""]
    (tmp_path / "m.csv").write_text("path,label,split\n" + "".join(
        f"{name}.wav,N,{split}\n" for name, split in zip(names, splits)))
    table, report = load_manifest(tmp_path / "m.csv")
    assert dict(zip(table.utt_id, table.split)) == {"train": "Train", "dev": "Development", "test": "Test",
                                                    "test1": "Test1", "testb": "TestB", "empty": "Train"}
    reason = "unknown split value (expected Train, Development, Test or Test<name>)"
    assert report.skipped == {reason: 3} and report.repaired == {"empty split cell (set to Train)": 1}
    assert "bogus.wav ('Bogus')" in report.examples[f"skipped: {reason}"]


def test_shared_stem_says_which_file_was_kept(tmp_path):
    rows = ["x.wav,N,4,4,4,1,Female,Train", "x.flac,N,4,4,4,1,Female,Train", "x.wav,N,4,4,4,1,Female,Train"]
    _msp(tmp_path, rows, names=["x.wav"])
    sf.write(str(tmp_path / "Audios" / "x.flac"), np.zeros(8000), 16000)
    table, report = load_msp_podcast(tmp_path)
    assert table.path.tolist() == [str(tmp_path / "Audios" / "x.wav")]
    shared = "two FileNames share a stem (the utt_id; the first row is kept)"
    assert report.skipped == {shared: 1, "duplicate FileName": 1}
    assert report.examples[f"skipped: {shared}"] == ["x.flac (stem x: x.wav kept, x.flac skipped)"]
    assert report.examples["skipped: duplicate FileName"] == ["x.wav (line 4; line 2 kept)"]
    # x.flac was named by a skipped row: not also counted as audio without a row
    assert report.accounts["Audios/"] == {"total": 2, "kept": 1, "named by a skipped row": 1,
                                          "named by no row (skipped)": 0}


def test_msp_release_before_1_11(tmp_path):
    root = _msp(tmp_path, ["a.wav,N,4,4,4,1,Female,Validation", "b.wav,N,4,4,4,1,Female,Train"])
    (root / "Labels" / "labels_consensus.csv").rename(root / "Labels" / "labels_concensus.csv")
    from sercore.data import load_corpus

    table, report = load_corpus(root)
    assert dict(zip(table.utt_id, table.split)) == {"a": "Development", "b": "Train"}
    assert report.repaired == {"Split_Set Validation (the pre-1.11 name; set to Development)": 1}
    assert any("labels_concensus.csv (the name releases before 1.11 use)" in n for n in report.notes)


# ---------------------------------------------------------------- corrupted corpora: the accounting adds up

def _files_on_disk(folder, suffix=""):
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
               and p.name.endswith(suffix))


def test_corrupted_msp_corpus_accounts_for_every_line_and_file(tmp_path, capsys):
    root = tmp_path / "msp"
    good = _rows(12)
    rows = good[:4] + [
        'q.wav,"N,4,4,4,1,Female,Train',           # unbalanced quote: this line only
        "", "  ",                                  # blank
        "enc.wav,N,4,4,4,1,Fem\udcffale,Train",    # not UTF-8 (written as a raw 0xff byte below)
        "trunc.wav,H,5,5,5,2,Male,Development",    # truncated wav: kept, repaired
        "tiny.wav,S,2,2,2,2,Male,Test1",           # 1 sample: skipped
        "scale.wav,A,9,2,5,2,Male,Test1",          # arousal 9 > 7: NaN, repaired
        "../outside.wav,N,4,4,4,2,Male,Train",     # escapes Audios/
        "u000.flac,N,4,4,4,2,Male,Train",          # shares the stem u000
        "gone.wav,N,4,4,4,2,Male,Train",           # no audio
        "other.wav,O,4,4,4,2,Male,Train",          # class O
        "short.wav,N,4",                           # 3 fields
    ] + good[4:]
    names = [f"u{i:03d}.wav" for i in range(12)] + ["q.wav", "enc.wav", "trunc.wav", "tiny.wav", "scale.wav",
                                                    "u000.flac", "other.wav", "test3_a.wav", "test3_b.wav"]
    raw = ("\n".join([HEADER] + rows) + "\n").encode("utf-8", errors="surrogateescape")
    _msp(root, [], names=names, raw=raw)
    _tone(tmp_path / "outside.wav")
    _truncate(root / "Audios" / "trunc.wav")
    _tone(root / "Audios" / "tiny.wav", samples=1)
    (root / "Transcripts" / "u001.txt").write_bytes(b"na\xefve\n")
    table, report = load_msp_podcast(root)

    physical = raw.count(b"\n") - 1  # data lines after the header
    lines = report.accounts["Labels/labels_consensus.csv"]
    assert lines["total"] == physical == len(rows) == lines["kept"] + lines["skipped"] + lines["blank"]
    assert (lines["kept"], lines["blank"]) == (len(table), 2) and len(table) == 14
    audio = report.accounts["Audios/"]
    assert audio["total"] == _files_on_disk(root / "Audios") == len(names)
    assert audio["total"] == audio["kept"] + audio["named by a skipped row"] + audio["named by no row (skipped)"]
    assert (audio["kept"], audio["named by no row (skipped)"]) == (14, 2) and report.skipped[NO_ROW] == 2
    assert report.n_skipped == lines["skipped"] + audio["named by no row (skipped)"]
    assert report.skipped[QUOTE] == report.skipped[NOT_UTF8] == report.skipped[SHORT] == 1
    assert report.repaired[TRUNCATED] == report.repaired["A/V/D outside 1..7 (set to NaN)"] == 1
    assert report.repaired["transcript not valid UTF-8 (bad bytes replaced)"] == 1
    assert main(["corpus", str(root)]) == 0
    printed = capsys.readouterr().out
    assert f"note: Labels/labels_consensus.csv: {physical} data lines after the header: 14 kept, " in printed
    assert f"note: Audios/: {len(names)} audio files: 14 kept," in printed


def test_corrupted_iemocap_corpus_accounts_for_every_line_and_file(tmp_path, capsys):
    def ids(dialog, n):
        return [f"{dialog}_{g}{i:03d}" for i in range(n) for g in "FM"]

    d1, d2, d3, d4 = "Ses01F_impro01", "Ses01M_script01_1", "Ses01F_impro02", "Ses01M_impro03"
    good = ids(d1, 4)
    text = _evaluation(*[(u, c, "2.5, 2.5, 2.5") for u, c in zip(good, ["neu", "ang", "sad", "hap", "exc",
                                                                         "fru", "neu", "ang"])])
    text = text.replace(f"\n[1.0 - 2.0]\t{good[1]}".encode(), f"\n  [1.0 - 2.0]\t{good[1]}".encode())  # indented
    text = text.replace(f"{good[2]}\tsad\t[2.5, 2.5, 2.5]".encode(), f"{good[2]}\tsad\t[2.5, 6.5, 2.5]".encode())
    text = text.replace(f"{good[3]}\thap".encode(), f"{good[3]}\th\xe4p".encode("latin-1"))  # not UTF-8
    text += b"stray words in the file\n"
    d2_ids = ids(d2, 2)
    full = _evaluation(*[(u, "neu", "3, 3, 3") for u in d2_ids])
    truncated = full[: full.index(d2_ids[2].encode()) - 4]  # cut inside the time stamp of the third line
    _session(tmp_path, 1, {d1: good, d2: d2_ids, d3: ids(d3, 1), d4: ids(d4, 1)},
             {d1: text, d2: truncated, d3: b""})  # d3: empty EmoEvaluation, d4: none at all
    _tone(tmp_path / "Session1" / "sentences" / "wav" / d1 / f"{good[0]}.wav", samples=1)
    _truncate(tmp_path / "Session1" / "sentences" / "wav" / d1 / f"{good[6]}.wav")
    dev = ids("Ses02F_impro01", 2)
    _session(tmp_path, 2, {"Ses02F_impro01": dev}, {"Ses02F_impro01": _evaluation(
        *[(u, "neu", "2, 2, 2") for u in dev]).decode().replace("\n", "\r\n").encode("utf-16")})
    table, report = load_iemocap(tmp_path, fold=1, dev_session=2)

    physical = sum(p.read_bytes().decode("utf-16" if p.read_bytes()[:2] == b"\xff\xfe" else "latin-1")
                   .count("\n") for p in tmp_path.glob("Session*/dialog/EmoEvaluation/*.txt"))
    lines = report.accounts["EmoEvaluation files"]
    assert lines["total"] == physical + 1  # + the truncated file's unterminated last line
    assert lines["total"] == lines["kept"] + lines["skipped"] + lines["header/evaluator"] + lines["blank"]
    # d1: the indented line, the 6.5 (NaN), exc, the truncated wav, M003; d2: the first two; Session2: 4
    assert lines["kept"] == len(table) == 5 + 2 + 4
    audio = report.accounts["Session*/sentences/wav/"]
    assert audio["total"] == _files_on_disk(tmp_path, ".wav") == 8 + 4 + 2 + 2 + 4
    assert audio["total"] == audio["kept"] + audio["named by a skipped row"] + audio["named by no row (skipped)"]
    # d2's last two utterances (line cut, then none), d3 and d4 entirely: audio without a label line
    assert audio["named by no row (skipped)"] == report.skipped[NO_LABEL] == 2 + 2 + 2
    assert report.n_skipped == lines["skipped"] + audio["named by no row (skipped)"]
    assert report.skipped[NOT_UTF8] == report.skipped[SHORT] == 1
    assert report.skipped["malformed row (not an utterance, evaluator or header line)"] == 1
    assert report.skipped["malformed row"] == 1 and report.skipped["class fru not in the 4-class set"] == 1
    assert report.repaired[TRUNCATED] == report.repaired["A/V/D outside 1..5 (set to NaN)"] == 1
    assert any("read as UTF-16" in note for note in report.notes)
    assert main(["corpus", str(tmp_path)]) == 0
    assert f"note: Session*/sentences/wav/: {audio['total']} audio files:" in capsys.readouterr().out


def test_an_unfinished_generated_corpus_is_refused_by_the_loader(tmp_path):
    from sercore.data import load_corpus
    from sercore.data.synth import MARKER

    root = tmp_path / "half"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n", encoding="utf-8")
    (root / MARKER).write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="did not finish"):
        load_corpus(root)
