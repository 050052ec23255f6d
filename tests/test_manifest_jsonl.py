"""JSON-lines manifests in EmoBox's metadata format (data/<corpus>/fold_<k>/*.jsonl: key, wav, emo, length,
...), read through the same row checks and line accounting as a CSV manifest (issue 9, section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sercore.data import detect_layout, load_corpus, load_manifest


def _wav(path: Path, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32), 16000)


def _emobox(key: str, wav: str, emo, **extra) -> str:
    """One line as EmoBox writes it (data/iemocap/fold_1/iemocap_test_fold_1.jsonl)."""
    return json.dumps({"key": key, "dataset": "iemocap", "wav": wav, "type": "raw", "sample_rate": 16000,
                       "num_frame": 4800.0, "task": "category", "length": 0.3, "emo": emo, "channel": 1, **extra})


def test_emobox_lines_are_read_relative_to_audio_root(tmp_path):
    root = tmp_path / "EmoBox"
    wavs = [f"downloads/iemocap/Session1/sentences/wav/Ses01F_impro04/Ses01F_impro04_F00{i}.wav" for i in range(3)]
    for wav in wavs:
        _wav(root / wav)
    manifest = root / "data" / "iemocap" / "fold_1" / "iemocap_test_fold_1.jsonl"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("\n".join(_emobox(f"iemocap-{Path(w).stem}", w, emo) for w, emo in
                                  zip(wavs, ("neu", "ang", "hap"))) + "\n")
    assert detect_layout(manifest) == "manifest"
    table, report = load_corpus(manifest, audio_root=root)
    assert table.utt_id.tolist() == [f"iemocap-Ses01F_impro04_F00{i}" for i in range(3)]
    assert table.label.tolist() == ["neu", "ang", "hap"]
    assert table.path.tolist() == [str((root / w).resolve()) for w in wavs]
    assert set(table.split) == {"Train"} and any("no split key" in n for n in report.notes)
    assert report.accounts["iemocap_test_fold_1.jsonl"] == {"total": 3, "kept": 3, "skipped": 0, "blank": 0}
    assert not any("keys ignored" in n for n in report.notes)  # EmoBox's own keys are known
    # without audio_root the paths start at the manifest's folder, where the audio is not
    table, report = load_manifest(manifest)
    assert len(table) == 0 and report.skipped["audio file missing"] == 3


def test_every_jsonl_line_is_accounted_for(tmp_path):
    for name in ("a", "b", "c", "d", "e", "f", "g"):
        _wav(tmp_path / f"{name}.wav")
    lines = [
        _emobox("a", "a.wav", "neu", split="Development", speaker="s1", gender="F", arousal=3, transcript=" hi "),
        "",
        '{"key": "broken", "wav": ',                                  # not JSON
        '["a.wav", "neu"]',                                           # JSON but not an object
        _emobox("b", "b.wav", "sad", type="feature"),                 # a feature file, not audio
        _emobox("c", "c.wav", "ang", start_time=0.0, end_time=0.2),   # a segment of a longer file
        _emobox("d", "d.wav", "hap", length="long"),                  # length not a number
        _emobox("e", "e.wav", None),                                  # no class label: kept, counted
        json.dumps({"key": "f", "emo": "neu"}),                       # no wav
        _emobox("g", "g.wav", "neu", split="Validation"),             # unknown split value
        _emobox("a", "a.wav", "neu"),                                 # duplicate key
        json.dumps({"wav": "missing.wav", "emo": "neu", "speaker_id": 3}),
    ]
    path = tmp_path / "m.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n" + b'{"key": "x\xff", "wav": "a.wav", "emo": "neu"}\n')
    table, report = load_manifest(path)
    assert table.utt_id.tolist() == ["a", "e"]
    row = table.iloc[0]
    assert (row.split, row.speaker, row.gender, row.arousal, row.transcript) == ("Development", "s1", "Female",
                                                                                  3.0, "hi")
    assert table.label.iloc[1] is None and report.repaired["no class label (kept with label None)"] == 1
    assert report.skipped == {
        "malformed row (not valid JSON)": 1, "malformed row (not a JSON object)": 1,
        "type is not raw (a feature file, not audio)": 1,
        "segment of a longer file (start_time/end_time): not cut by sercore": 1,
        "malformed row (length not a number > 0)": 1, "malformed row (no wav path)": 1,
        "unknown split value (expected Train, Development, Test or Test<name>)": 1, "duplicate utt_id": 1,
        "audio file missing": 1, "line not valid UTF-8 (encoding problem: re-save the file as UTF-8)": 1}
    account = report.accounts["m.jsonl"]
    assert account == {"total": 13, "kept": 2, "skipped": 10, "blank": 1}
    assert account["kept"] + account["skipped"] + account["blank"] == account["total"] == len(lines) + 1
    assert any(n == "keys ignored: speaker_id" for n in report.notes)


def test_jsonl_classes_and_missing_files_fail_clearly(tmp_path):
    _wav(tmp_path / "a.wav")
    path = tmp_path / "m.jsonl"
    path.write_text(_emobox("a", "a.wav", "fru") + "\n")
    table, report = load_manifest(path, classes=["neu", "ang"])
    assert len(table) == 0 and report.skipped["unknown class code"] == 1
    with pytest.raises(FileNotFoundError, match="m2.jsonl not found: expected a JSON-lines file"):
        load_manifest(tmp_path / "m2.jsonl")
    with pytest.raises(FileNotFoundError, match="audio_root .* is not a folder"):
        load_manifest(path, audio_root=tmp_path / "nowhere")
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ValueError, match="not a manifest: expected a .csv file or a .jsonl file"):
        detect_layout(tmp_path / "m.json")


def test_csv_manifest_takes_audio_root_too(tmp_path):
    _wav(tmp_path / "audio" / "x.wav")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "m.csv").write_text("path,label\nx.wav,neu\n")
    table, report = load_manifest(tmp_path / "lists" / "m.csv", audio_root=tmp_path / "audio")
    assert table.utt_id.tolist() == ["x"] and table.path.iloc[0] == str((tmp_path / "audio" / "x.wav").resolve())
    assert report.accounts["m.csv"] == {"total": 1, "kept": 1, "skipped": 0, "blank": 0}
