"""Hostile inputs for features, the cache, audio decoding and atomic writes (issue 8, items 1, 8, 10, 16, 17).

Every bad file is built here by hand: float WAVs holding NaN or Inf, a FLAC whose body bytes are overwritten
after its header, float audio peaking at 3.0, swapped / old-format / NaN cache entries, read-only folders.
"""

import errno
import hashlib
import io
import json
import os
import stat
import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.data.audio import FLOAT_PEAK, MISSING, NON_FINITE, UNREADABLE, AudioError, read_audio
from sercore.features import CacheWarning, LogMelEncoder, default_cache_dir, extract
from sercore.features.cache import MAGIC, OLD_MAGIC, decode_array, sha256_file
from sercore.features.extraction import NON_FINITE_FEATURES
from sercore.provenance import atomic_write_text

SR = 16000


def tone(seconds=0.6, freq=220.0, amplitude=0.3):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def nan_wave(value=np.nan):
    wave = tone()
    wave[1234] = value
    return wave


def corrupt_flac(path):
    """A FLAC whose header reads (inspect_audio passes) but whose body does not decode."""
    sf.write(path, tone(1.0), SR)
    blob = bytearray(path.read_bytes())
    for i in range(200, len(blob)):
        blob[i] = (blob[i] * 7 + 13) % 256
    path.write_bytes(bytes(blob))
    return path


def table_of(paths, splits=None):
    return pd.DataFrame({"utt_id": [f"u{i}" for i in range(len(paths))], "path": [str(p) for p in paths],
                         "split": splits or ["Train"] * len(paths)})


def hostile_table(folder):
    files = {"good": folder / "good.wav", "nan": folder / "nan.wav", "inf": folder / "inf.wav",
             "flac": folder / "body.flac", "missing": folder / "gone.wav", "peak": folder / "loud.wav"}
    sf.write(files["good"], tone(), SR, subtype="PCM_16")
    sf.write(files["nan"], nan_wave(), SR, subtype="FLOAT")
    sf.write(files["inf"], nan_wave(np.inf), SR, subtype="FLOAT")
    corrupt_flac(files["flac"])
    sf.write(files["peak"], 10.0 * tone(), SR, subtype="FLOAT")  # peak 3.0
    return table_of(list(files.values()))


def cache_arrays(folder):
    """Every array stored under a cache folder, decoded with the key its file name gives."""
    return [decode_array(path.read_bytes(), path.stem) for path in sorted(folder.rglob("*.feat"))]


# ---------------------------------------------------------------- item 1: non-finite audio

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_read_audio_refuses_non_finite_samples_naming_the_file(tmp_path, value):
    path = tmp_path / "bad.wav"
    sf.write(path, nan_wave(value), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"bad\.wav: non-finite samples \(NaN or Inf\).*sample 1234") as error:
        read_audio(path)
    assert error.value.reason == NON_FINITE and "\n" not in str(error.value)


def test_float_peaks_above_one_are_kept_unscaled_and_flagged(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, 10.0 * tone(), SR, subtype="FLOAT")
    flags = set()
    wave = read_audio(path, flags=flags)
    assert flags == {FLOAT_PEAK} and np.abs(wave).max() == pytest.approx(3.0, rel=1e-4)
    quiet = set()
    sf.write(tmp_path / "pcm.wav", tone(), SR, subtype="PCM_16")
    read_audio(tmp_path / "pcm.wav", flags=quiet)
    assert quiet == set()


# ---------------------------------------------------------------- item 8: one bad file never stops extract

def test_extract_skips_and_counts_every_bad_row(tmp_path):
    table = hostile_table(tmp_path)
    cache = tmp_path / "cache"
    features = extract(table, "logmel", cache, progress=False)
    assert features.failed == {1: NON_FINITE, 2: NON_FINITE, 3: UNREADABLE, 4: MISSING}
    stats = features.stats
    assert dict(stats.failed) == {NON_FINITE: 2, UNREADABLE: 1, MISSING: 1}
    assert stats.examples[UNREADABLE] == [str(tmp_path / "body.flac")]
    assert stats.float_peaks == 1 and (stats.hits, stats.misses) == (0, 6)
    assert [f is None for f in features] == [False, True, True, True, True, False]
    assert all(np.isfinite(features[i]).all() for i in (0, 5))
    text = str(stats)
    assert "failed 2: non-finite samples (NaN or Inf)" in text and "1 float files with samples above 1" in text
    stored = cache_arrays(cache)
    assert len(stored) == 2 and all(np.isfinite(a).all() for a in stored), "only the two good rows are cached"

    again = extract(table, "logmel", cache, progress=False)
    assert again.failed == features.failed and (again.stats.hits, again.stats.misses) == (2, 4)
    np.testing.assert_array_equal(again[5], features[5])


def test_extract_raises_one_clear_error_when_every_row_fails(tmp_path):
    sf.write(tmp_path / "a.wav", nan_wave(), SR, subtype="FLOAT")
    table = table_of([tmp_path / "a.wav", corrupt_flac(tmp_path / "b.flac")])
    with pytest.raises(ValueError, match=r"no row could be encoded with logmel: 2 failed .*a\.wav: non-finite"):
        extract(table, "logmel", tmp_path / "cache", progress=False)


class NaNForLoudEncoder(LogMelEncoder):
    """Log-Mel, except NaN for waves louder than 0.5: features that break after a clean decode."""

    def __call__(self, wave):
        out = super().__call__(wave)
        return out * np.nan if np.abs(wave).max() > 0.5 else out


def test_non_finite_features_are_counted_and_never_cached(tmp_path):
    sf.write(tmp_path / "quiet.wav", tone(), SR, subtype="PCM_16")
    sf.write(tmp_path / "loud.wav", tone(amplitude=0.9), SR, subtype="PCM_16")
    features = extract(table_of([tmp_path / "quiet.wav", tmp_path / "loud.wav"]), NaNForLoudEncoder(),
                       tmp_path / "cache", progress=False)
    assert features.failed == {1: NON_FINITE_FEATURES} and features[1] is None
    assert len(cache_arrays(tmp_path / "cache")) == 1


# ---------------------------------------------------------------- item 17 and item 1: entries on load

def test_cached_nan_entry_is_a_miss_and_replaced(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), SR, subtype="PCM_16")
    table = table_of([tmp_path / "a.wav"])
    first = extract(table, "logmel", tmp_path / "cache", progress=False)
    (entry,) = sorted((tmp_path / "cache").rglob("*.feat"))
    buffer = io.BytesIO()  # a well-formed entry (right key, right checksum) whose array holds NaN
    np.save(buffer, np.full((3, 80), np.nan, dtype=np.float32))
    payload = buffer.getvalue()
    entry.write_bytes(MAGIC + bytes.fromhex(entry.stem) + hashlib.sha256(payload).digest() + payload)
    with pytest.warns(CacheWarning, match="NaN or Inf"):
        again = extract(table, "logmel", tmp_path / "cache", progress=False)
    assert (again.stats.hits, again.stats.corrupt) == (0, 1)
    np.testing.assert_array_equal(again[0], first[0])
    assert np.isfinite(cache_arrays(tmp_path / "cache")[0]).all(), "the entry was rewritten"


def test_swapped_entries_are_refused_recomputed_and_rewritten(tmp_path):
    sf.write(tmp_path / "a.wav", tone(freq=220.0), SR, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", tone(freq=3000.0), SR, subtype="PCM_16")
    table = table_of([tmp_path / "a.wav", tmp_path / "b.wav"])
    first = extract(table, "logmel", tmp_path / "cache", progress=False)
    one, two = sorted((tmp_path / "cache").rglob("*.feat"))
    blob_one, blob_two = one.read_bytes(), two.read_bytes()
    one.write_bytes(blob_two)
    two.write_bytes(blob_one)
    with pytest.warns(CacheWarning, match="moved or swapped"):
        again = extract(table, "logmel", tmp_path / "cache", progress=False)
    assert (again.stats.hits, again.stats.misses, again.stats.corrupt) == (0, 2, 2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert extract(table, "logmel", tmp_path / "cache", progress=False).stats.hits == 2


def test_old_format_entries_are_recomputed_with_one_warning(tmp_path):
    sf.write(tmp_path / "a.wav", tone(), SR, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", tone(freq=900.0), SR, subtype="PCM_16")
    table = table_of([tmp_path / "a.wav", tmp_path / "b.wav"])
    extract(table, "logmel", tmp_path / "cache", progress=False)
    entries = sorted((tmp_path / "cache").rglob("*.feat"))
    for entry in entries:
        payload = entry.read_bytes()[len(MAGIC) + 32 + 32:]
        entry.write_bytes(OLD_MAGIC + hashlib.sha256(payload).digest() + payload)  # the key-less format
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert extract(table, "logmel", tmp_path / "cache", progress=False).stats.corrupt == 2
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1 and "old cache format" in messages[0], "one warning for the folder, not per file"
    assert all(entry.read_bytes()[:len(MAGIC)] == MAGIC for entry in entries)


# ---------------------------------------------------------------- item 10: read-only places

def make_read_only(folder) -> bool:
    """chmod the folder tree read-only; False when that does not stop this user writing (root)."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return not os.access(folder, os.W_OK)


def make_writable(folder):
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _refuse_writes(monkeypatch):
    def read_only_file_system(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr("sercore.features.cache.atomic_write_bytes", read_only_file_system)


@pytest.mark.parametrize("how", ["chmod 0555", "read-only file system"])
def test_read_only_cache_serves_hits_and_computes_misses_with_one_warning(tmp_path, monkeypatch, how):
    waves = [tone(freq=f) for f in (200.0, 400.0, 800.0, 1600.0)]
    for i, wave in enumerate(waves):
        sf.write(tmp_path / f"{i}.wav", wave, SR, subtype="PCM_16")
    table = table_of([tmp_path / f"{i}.wav" for i in range(4)])
    cache = tmp_path / "ro-cache"
    extract(table.iloc[:2], "logmel", cache, progress=False)
    if how == "chmod 0555":
        if not make_read_only(cache):
            make_writable(cache)
            pytest.skip("chmod does not stop this user from writing (running as root)")
    else:
        _refuse_writes(monkeypatch)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            features = extract(table, "logmel", cache, progress=False)
            extract(table, "logmel", cache, progress=False)  # a second call in the process: no new warning
        messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
        assert len(messages) == 1 and str(cache) in messages[0] and "cannot be written" in messages[0]
        stats = features.stats
        assert (stats.hits, stats.misses, stats.unsaved) == (2, 2, 2) and not features.failed
        assert "2 not saved (cache folder not writable)" in str(stats)
        assert len(list(cache.rglob("*.feat"))) == 2, "nothing was added to the read-only folder"
        reference = extract(table, "logmel", None, progress=False)
        for a, b in zip(features, reference):
            np.testing.assert_array_equal(a, b)
    finally:
        make_writable(cache)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SERCORE_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("SERCORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sercore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sercore"


def test_sha256_file_is_memoised_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"first")
    digest = sha256_file(path)
    assert digest == hashlib.sha256(b"first").hexdigest()
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"other")  # same size; put the old mtime back: the memo must answer, not a new hash
    os.utime(path, ns=(mtime, mtime))
    assert sha256_file(path) == digest
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert sha256_file(path) == hashlib.sha256(b"other").hexdigest()


# ---------------------------------------------------------------- item 16: atomic writes keep the umask's mode

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_write_gives_the_mode_open_would(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "out.txt", "hello\n")
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("hello\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


# ---------------------------------------------------------------- items 1, 8, 10 together: a whole run

def test_train_run_on_a_read_only_corpus_drops_nan_files_and_counts_them(tmp_path):
    from sercore.train import train_run

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    rows, labels = [], ["N", "H", "S", "A"]
    for i in range(16):
        split = "Train" if i < 10 else "Development" if i < 13 else "Test1"
        wave = tone(0.8, freq=150.0 * (1 + i % 4)) + 0.01 * rng.standard_normal(int(0.8 * SR)).astype(np.float32)
        bad = i in (3, 11)  # one Train file and one Development file hold a NaN
        if bad:
            wave[500] = np.nan
        sf.write(corpus / f"u{i}.wav", wave, SR, subtype="FLOAT" if bad else "PCM_16")
        rows.append(f"u{i}.wav,{labels[i % 4]},{split},spk{i % 3}")
    (corpus / "manifest.csv").write_text("path,label,split,speaker\n" + "\n".join(rows) + "\n")
    before = sorted(p.name for p in corpus.iterdir())
    out = tmp_path / "run"
    make_read_only(corpus)  # as root the mode does not bind; the listing below still checks nothing was added
    try:
        with pytest.warns(UserWarning, match="2 of 16 utterances left out"):
            metrics = train_run("fusion", corpus / "manifest.csv", out, profile="smoke", seed=0, progress=False,
                                epochs=1, eval_every=2, n_boot=10, **{"model.text": False})
    finally:
        make_writable(corpus)
    assert sorted(p.name for p in corpus.iterdir()) == before, "nothing was written inside the corpus"
    data = json.loads((out / "metrics.json").read_text())["data"]
    assert data["excluded"][f"at extraction: {NON_FINITE}"] == 2
    assert data["extraction_failures"][f"at extraction: {NON_FINITE}"] == [str(corpus / "u3.wav"),
                                                                            str(corpus / "u11.wav")]
    assert data["cache_dir"] == str(default_cache_dir())
    assert data["rows"] == {"Train": 9, "Development": 2, "Test1": 3}
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 5 and "u11" not in set(predictions["utt_id"])
    probs = predictions.filter(like="prob_").to_numpy()
    assert probs.size and np.isfinite(probs).all()
    assert metrics["finished"]


def test_features_command_prints_the_failures_and_finishes(tmp_path, capsys):
    from sercore.cli import main

    sf.write(tmp_path / "good.wav", tone(), SR, subtype="PCM_16")
    sf.write(tmp_path / "nan.wav", nan_wave(), SR, subtype="FLOAT")
    corrupt_flac(tmp_path / "body.flac")
    (tmp_path / "m.csv").write_text("path,label\ngood.wav,N\nnan.wav,H\nbody.flac,S\n")
    assert main(["features", "--corpus", str(tmp_path / "m.csv"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"failed 1: {NON_FINITE} (e.g. {tmp_path / 'nan.wav'})" in out
    assert f"failed 1: {UNREADABLE} (e.g. {tmp_path / 'body.flac'})" in out
    assert f"cache: {default_cache_dir()};" in out and "x80" in out


def test_audio_too_short_for_the_ssl_model_is_a_counted_row(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from sercore.features.ssl import TOO_SHORT

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=2, vocab_size=8)
    transformers.Wav2Vec2Model(config).eval().save_pretrained(tmp_path / "model")
    sf.write(tmp_path / "ok.wav", tone(0.5), SR, subtype="PCM_16")
    sf.write(tmp_path / "blip.wav", tone(0.005), SR, subtype="PCM_16")  # 80 samples: no CNN frame
    features = extract(table_of([tmp_path / "ok.wav", tmp_path / "blip.wav"]), f"ssl:{tmp_path / 'model'}",
                       tmp_path / "cache", progress=False, device="cpu")
    assert features.failed == {1: TOO_SHORT} and features[0].shape[:2] == (2, 24)
