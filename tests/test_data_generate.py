"""The generated demonstration corpus: layout, determinism, splits, variants, prosody, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.cli import main
from sercore.data.synth import LOCALIZED_SECONDS
from sercore.data import CLASSES, generate_corpus, load_corpus, load_segments, prosody_summary, read_audio
from sercore.data.espeak import Prosody, Synthesizer
from sercore.data.msp_layout import LABELS_HEADER
from sercore.data.speakers import SEEN_SPEAKERS, UNSEEN_SPEAKERS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke-profile corpus (200 utterances), MSP-Podcast layout, generated once for this module."""
    return generate_corpus(tmp_path_factory.mktemp("smoke"), profile="smoke", progress=False)


def _manifest(root):
    return json.loads((root / "corpus.json").read_text())


def test_msp_layout_files_and_manifest(smoke):
    meta = _manifest(smoke)
    assert "generated demonstration corpus" in meta["description"]
    assert meta["seed"] == 0 and meta["variant"] == "standard" and meta["layout"] == "msp-podcast"
    assert meta["provenance"]["parameters"]["class_profiles"]["S"]["rate"] < 170
    assert meta["utterances"] == 200
    for key in ("label", "speaker", "split"):
        assert sum(meta["counts"][key].values()) == 200
    lines = (smoke / "Labels" / "labels_consensus.csv").read_text().splitlines()
    assert lines[0] == LABELS_HEADER and len(lines) == 201
    wavs = sorted((smoke / "Audios").glob("*.wav"))
    assert len(wavs) == 200
    assert len(list((smoke / "Transcripts").glob("*.txt"))) == 200
    assert not list(smoke.rglob("*.tmp")), "atomic writes left temporary files"


def test_audio_is_16k_mono_speech(smoke):
    for wav in sorted((smoke / "Audios").glob("*.wav"))[:12]:
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        wave = read_audio(wav)
        assert 1.0 < wave.size / 16000 < 8.0
        assert np.sqrt(np.mean(wave ** 2)) > 0.01, f"{wav.name} is (nearly) silent"


def test_slower_rate_gives_longer_speech():
    synth = Synthesizer()
    text = "The report has four sections and a short appendix."
    slow = synth.synthesize(text, "en-us+f2", Prosody(rate=110))
    fast = synth.synthesize(text, "en-us+f2", Prosody(rate=260))
    assert np.abs(fast).max() > 1000 and np.abs(slow).max() > 1000
    assert slow.size > 1.6 * fast.size


def test_splits_speakers_and_imbalance(smoke):
    table, _ = load_corpus(smoke)
    test2 = table[table.split == "Test2"]
    others = table[table.split != "Test2"]
    assert set(test2.speaker) == {s.id for s in UNSEEN_SPEAKERS}
    assert set(others.speaker) == {s.id for s in SEEN_SPEAKERS}
    assert set(test2.speaker).isdisjoint(others.speaker)
    assert set(table.gender) == {"Female", "Male"}
    # Train is balanced; Test2 is not (neutral most frequent, every class present)
    train_counts = table[table.split == "Train"].label.value_counts()
    assert set(train_counts.index) == set(CLASSES) and train_counts.max() - train_counts.min() <= 1
    test2_counts = test2.label.value_counts()
    assert set(test2_counts.index) == set(CLASSES) and test2_counts["N"] >= 3 * test2_counts["F"]
    assert {"Train", "Development", "Test1", "Test2"} == set(table.split)


def _noise_floor(path):
    """Quietest frames relative to the loudest: high when noise fills the pauses."""
    wave = read_audio(path)
    frames = wave[: wave.size // 400 * 400].reshape(-1, 400)
    rms = np.sqrt((frames ** 2).mean(axis=1)) + 1e-9
    return np.percentile(rms, 5) / np.percentile(rms, 95)


def test_test2_has_added_noise(smoke):
    table, _ = load_corpus(smoke)
    clean = [_noise_floor(p) for p in table[table.split == "Train"].path[:10]]
    noisy = [_noise_floor(p) for p in table[table.split == "Test2"].path[:10]]
    assert np.median(noisy) > 10 * np.median(clean)


def test_transcripts_mix_emotional_and_shared_neutral_sentences(smoke):
    from sercore.data.sentences import EMOTIONAL, NEUTRAL

    table, _ = load_corpus(smoke)
    emotional = table.apply(lambda r: r.transcript in EMOTIONAL[r.label], axis=1)
    neutral = table.transcript.isin(NEUTRAL)
    assert (emotional | neutral).all()
    assert 0.25 < emotional.mean() < 0.55  # text helps on part of the data only
    assert table[neutral].label.nunique() == len(CLASSES)


def test_determinism_and_worker_independence(tmp_path):
    a = generate_corpus(tmp_path / "a", n_utterances=24, seed=3, workers=1, progress=False)
    b = generate_corpus(tmp_path / "b", n_utterances=24, seed=3, workers=2, progress=False)
    c = generate_corpus(tmp_path / "c", n_utterances=24, seed=4, workers=1, progress=False)
    labels = "Labels/labels_consensus.csv"
    assert (a / labels).read_bytes() == (b / labels).read_bytes()
    assert (a / labels).read_bytes() != (c / labels).read_bytes()
    names = sorted(p.name for p in (a / "Audios").glob("*.wav"))
    for name in names[:3] + names[-3:]:  # the last ones are Test2: noise must be deterministic too
        assert (a / "Audios" / name).read_bytes() == (b / "Audios" / name).read_bytes()


def test_refuses_to_overwrite_and_rejects_unknown_options(tmp_path):
    (tmp_path / "keep.txt").write_text("not a corpus")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_corpus(tmp_path, n_utterances=8, progress=False)
    with pytest.raises(FileExistsError, match="no corpus.json"):
        generate_corpus(tmp_path, n_utterances=8, progress=False, overwrite=True)
    with pytest.raises(ValueError, match="unknown variant"):
        generate_corpus(tmp_path / "x", variant="short")
    with pytest.raises(ValueError, match="unknown layout"):
        generate_corpus(tmp_path / "x", layout="ravdess")


def test_regenerating_with_overwrite_replaces_the_corpus(tmp_path):
    generate_corpus(tmp_path, n_utterances=40, workers=1, progress=False)
    generate_corpus(tmp_path, n_utterances=16, workers=1, progress=False, overwrite=True)
    assert len(list((tmp_path / "Audios").glob("*.wav"))) == 16


def test_prosody_summary_orders_classes_as_designed(smoke):
    table, _ = load_corpus(smoke)
    clean = table[table.split != "Test2"]
    summary = prosody_summary(clean)
    f0 = summary["f0_vs_speaker_st"]
    assert f0["A"] > f0["S"] + 2 and f0["H"] > f0["S"] + 2 and f0["U"] > f0["N"]
    per_word = summary["seconds_per_word"]
    assert per_word["S"] > 1.3 * per_word["H"]
    female = prosody_summary(clean[clean.gender == "Female"])["median_f0_hz"]
    assert female["A"] > female["S"] and female["H"] > female["S"]
    assert female.min() > 120  # female voices tracked in their range, no octave collapse


def test_localized_variant_records_the_emotional_segment(tmp_path):
    root = generate_corpus(tmp_path, variant="localized", n_utterances=24, workers=1, progress=False)
    table, _ = load_corpus(root)
    segments = load_segments(root).set_index("utt_id")
    assert set(segments.index) == set(table.utt_id)
    durations = {row.utt_id: sf.info(row.path).duration for row in table.itertuples()}
    for utt_id, seg in segments.iterrows():
        assert 0 <= seg.seg_start < seg.seg_end <= durations[utt_id] + 1e-3
        assert 0.4 < seg.seg_end - seg.seg_start < 4.0
        # the whole file fits the ks-transformer's fixed input of 460 frames (4.6 s)
        assert LOCALIZED_SECONDS[0] - 1e-3 <= durations[utt_id] <= LOCALIZED_SECONDS[1] + 1e-3 < 4.6
        assert seg.duration == pytest.approx(durations[utt_id], abs=1e-3)
    # the phrase sits at different places: near the start and towards the end both occur
    relative = segments.seg_start / segments.duration
    assert relative.min() < 0.15 and relative.max() > 0.45
    # neutral speech around it: most transcripts name a neutral sentence as well as the phrase
    assert (table.transcript.str.split().str.len() > 8).mean() > 0.5


def test_long_form_lengths_are_exact(tmp_path):
    root = generate_corpus(tmp_path, variant="long-form", n_utterances=1, workers=2, progress=False)
    table, _ = load_corpus(root)
    durations = sorted(sf.info(p).duration for p in table.path)
    assert durations == [10.0, 30.0, 60.0]  # smoke profile lengths, one file each
    assert set(table.split) == {"Test1"}
    longest = table.loc[table.path.map(lambda p: sf.info(p).duration).idxmax()]
    assert len(longest.transcript.split()) > 60  # many sentences joined


def test_iemocap_layout_files(tmp_path):
    root = generate_corpus(tmp_path, layout="iemocap", n_utterances=60, workers=1, progress=False)
    meta = _manifest(root)
    assert meta["counts"]["session"] == {str(k): 12 for k in range(1, 6)}
    evaluation = sorted((root / "Session1" / "dialog" / "EmoEvaluation").glob("*.txt"))
    assert evaluation
    text = evaluation[0].read_text()
    assert text.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]")
    first = next(line for line in text.splitlines() if line.startswith("["))
    fields = first.split("\t")
    assert len(fields) == 4 and fields[1].startswith("Ses01") and fields[2] in meta["counts"]["label"]
    transcript = (root / "Session1" / "dialog" / "transcriptions" / evaluation[0].name).read_text()
    assert transcript.startswith(f"{fields[1]} [")
    wav = root / "Session1" / "sentences" / "wav" / fields[1].rsplit("_", 1)[0] / f"{fields[1]}.wav"
    assert sf.info(str(wav)).samplerate == 16000


def test_cli_generate_and_corpus(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--profile", "smoke", "--out", str(out), "--n-utterances", "16",
                 "--workers", "1", "--seed", "1"]) == 0
    assert (out / "corpus.json").is_file()
    capsys.readouterr()
    assert main(["corpus", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per label:" in printed and "per speaker:" in printed and "per split:" in printed
    assert "16 utterances kept" in printed and "generated demonstration corpus" in printed
    table = pd.read_csv(out / "Labels" / "labels_consensus.csv")
    assert len(table) == 16


def test_reuse_keeps_an_identical_corpus_and_regenerates_a_different_one(tmp_path):
    out = generate_corpus(tmp_path / "c", profile="smoke", n_utterances=12, progress=False)
    labels = out / "Labels" / "labels_consensus.csv"
    stamp = labels.stat().st_mtime_ns
    assert generate_corpus(out, profile="smoke", n_utterances=12, progress=False, reuse=True) == out
    assert labels.stat().st_mtime_ns == stamp, "same parameters: nothing rewritten"
    generate_corpus(out, profile="smoke", n_utterances=12, seed=1, progress=False, reuse=True)
    assert json.loads((out / "corpus.json").read_text())["seed"] == 1
