"""sercore.features: log-Mel against independent computations, VTLP, the disk cache and `extract`."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore.features import (CacheWarning, LogMelEncoder, extract, frame_count, hz_to_mel, log_mel,
                              mel_filterbank, mel_to_hz, power_spectrogram, vtlp, vtlp_spectrogram, vtlp_wave,
                              warp_frequencies)
from sercore.features.cache import FeatureCache, decode_array, encode_array

SR = 16000


def tone(freq, seconds=1.0, amplitude=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0, f1, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))).astype(np.float32)


def peak_hz(wave):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return spectrum.argmax() * SR / wave.size


# ---------------------------------------------------------------- log-Mel

def _independent_filterbank(sr, n_fft, n_mels, htk, slaney_norm):
    """librosa's published formulas, written out with loops (no sercore code)."""
    def to_mel(f):
        if htk:
            return 2595.0 * math.log10(1.0 + f / 700.0)
        return f * 3.0 / 200.0 if f < 1000.0 else 15.0 + math.log(f / 1000.0) * 27.0 / math.log(6.4)

    def to_hz(m):
        if htk:
            return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
        return m * 200.0 / 3.0 if m < 15.0 else 1000.0 * math.exp((m - 15.0) * math.log(6.4) / 27.0)

    top = to_mel(sr / 2)
    edges = [to_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    weights = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            w = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
            weights[m, k] = w * (2.0 / (hi - lo) if slaney_norm else 1.0)
    return weights


@pytest.mark.parametrize("scale,norm", [("slaney", "slaney"), ("htk", None), ("slaney", None)])
@pytest.mark.parametrize("n_fft,n_mels", [(512, 80), (800, 128)])
def test_filterbank_matches_the_published_formulas(scale, norm, n_fft, n_mels):
    ours = mel_filterbank(SR, n_fft, n_mels, scale=scale, norm=norm)
    theirs = _independent_filterbank(SR, n_fft, n_mels, htk=scale == "htk", slaney_norm=norm == "slaney")
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)
    assert (ours.sum(axis=1) > 0).all(), "every band must cover at least one FFT bin"


def test_mel_scale_known_values():
    # Slaney: 3/200 mel per Hz below 1 kHz (librosa documents hz_to_mel(60) = 0.9); HTK: 1000 Hz ~ 1000 mel.
    np.testing.assert_allclose(hz_to_mel([60, 110, 220, 440]), [0.9, 1.65, 3.3, 6.6], rtol=1e-6)
    assert hz_to_mel(1000, "htk") == pytest.approx(1000.0, abs=0.02)
    assert hz_to_mel(1000) == pytest.approx(15.0)
    freqs = np.array([0, 50, 999, 1000, 1001, 4000, 8000.0])
    for scale in ("slaney", "htk"):
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs, scale), scale), freqs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize("freq", [250.0, 700.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_lands_in_the_band_containing_it(freq, norm):
    features = log_mel(tone(freq), norm=norm)
    loudest = int(np.median(features.argmax(axis=1)))
    edges = mel_to_hz(np.linspace(0, hz_to_mel(SR / 2), 80 + 2))
    assert edges[loudest] < freq < edges[loudest + 2], (loudest, edges[loudest:loudest + 3])
    if norm is None:  # unnormalised triangles peak at 1: the loudest band is the one centred nearest the tone
        assert loudest == int(np.argmin(np.abs(hz_to_mel(edges[1:-1]) - hz_to_mel(freq))))


@pytest.mark.parametrize("n_samples", [1, 159, 160, 161, 16000, 16123, 48000])
def test_frame_count_is_one_plus_samples_over_hop(n_samples):
    wave = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    assert log_mel(wave).shape == (1 + n_samples // 160, 80) == (frame_count(n_samples, 160), 80)


def test_area_attention_setting_gives_128_by_81_for_two_seconds():
    features = log_mel(chirp(100, 7000, 2.0), n_mels=128, n_fft=800, win_ms=50, hop_ms=25, log="log10")
    assert features.shape == (81, 128) and features.dtype == np.float32


def test_power_spectrum_matches_a_direct_dft():
    wave = np.random.default_rng(0).standard_normal(3000).astype(np.float64)
    n_fft, hop, win = 512, 160, 400
    ours = power_spectrogram(wave, n_fft, hop, win)
    padded = np.concatenate([np.zeros(n_fft // 2), wave, np.zeros(n_fft // 2)])
    n = np.arange(n_fft)
    window = np.zeros(n_fft)
    window[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann, centred
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), n) / n_fft)
    for t in (0, 7, ours.shape[0] - 1):
        frame = padded[t * hop: t * hop + n_fft] * window
        np.testing.assert_allclose(ours[t], np.abs(dft @ frame) ** 2, rtol=2e-3, atol=1e-2)


def test_log_base_and_floor():
    wave = chirp(200, 3000)
    np.testing.assert_allclose(log_mel(wave, log="log10"), log_mel(wave) / np.log(10), rtol=1e-5, atol=1e-5)
    silence = log_mel(np.zeros(4000, dtype=np.float32), floor=1e-8)
    np.testing.assert_allclose(silence, np.log(1e-8), rtol=1e-6)


def test_log_mel_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        log_mel(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="log"):
        log_mel(tone(440), log="log2")
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 100), dtype=np.float32))


# ---------------------------------------------------------------- VTLP

def test_warp_is_piecewise_linear_and_fixes_the_band_edges():
    freqs = np.linspace(0, SR / 2, 1001)
    np.testing.assert_allclose(warp_frequencies(freqs, 1.0), freqs, atol=1e-9)
    for factor in (0.8, 0.9, 1.1, 1.2):
        warped = warp_frequencies(freqs, factor)
        boundary = 4800 * min(factor, 1) / factor
        below = freqs <= boundary
        np.testing.assert_allclose(warped[below], factor * freqs[below])
        assert warped[0] == 0 and warped[-1] == pytest.approx(SR / 2)
        assert np.all(np.diff(warped) > 0)
        upper = warp_frequencies(np.array([boundary, boundary + 1e-6]), factor)
        assert upper[1] - upper[0] < 1e-4  # continuous at the boundary


@pytest.mark.parametrize("factor", [0.5, 0.79, 1.21, 2.0, float("nan"), float("inf")])
def test_invalid_factors_raise(factor):
    with pytest.raises(ValueError, match="VTLP factor"):
        vtlp(tone(440), factor)
    with pytest.raises(ValueError, match="VTLP factor"):
        vtlp_spectrogram(np.ones((3, 257)), factor)


def test_factor_one_is_the_identity():
    wave = chirp(100, 6000) + tone(440, amplitude=0.1)
    spec = power_spectrogram(wave, 512, 160, 400)
    np.testing.assert_allclose(vtlp(spec, 1.0), spec, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vtlp(wave, 1.0), wave, atol=1e-5)


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.2])
def test_tone_moves_to_factor_times_its_frequency(factor):
    wave = tone(1000.0)
    warped = vtlp_wave(wave, factor)
    assert warped.shape == wave.shape
    assert peak_hz(warped) == pytest.approx(factor * 1000.0, abs=SR / 1024)  # within one STFT bin
    spec = power_spectrogram(wave, 512, 160, 400)
    moved = vtlp_spectrogram(spec, factor)
    bin_hz = SR / 512
    assert np.median(moved.argmax(axis=1)) * bin_hz == pytest.approx(factor * 1000.0, abs=bin_hz)
    # Re-binning only moves energy: the total of each frame is unchanged.
    np.testing.assert_allclose(moved.sum(axis=1), spec.sum(axis=1), rtol=1e-4)


def test_log_mel_with_vtlp_shifts_the_tone_band():
    plain = np.median(log_mel(tone(2000.0)).argmax(axis=1))
    lower = np.median(log_mel(tone(2000.0), vtlp_factor=0.8).argmax(axis=1))
    assert lower < plain
    assert np.median(log_mel(tone(1600.0)).argmax(axis=1)) == lower


# ---------------------------------------------------------------- cache and extract

def write_table(folder, waves):
    rows = []
    for i, wave in enumerate(waves):
        path = folder / f"utt{i}.wav"
        sf.write(path, wave, SR, subtype="PCM_16")
        rows.append({"utt_id": f"utt{i}", "path": str(path), "label": "N", "arousal": 4.0, "valence": 4.0,
                     "dominance": 4.0, "speaker": f"spk{i % 2}", "gender": "Female", "split": "Train",
                     "transcript": f"sentence number {i}"})
    return pd.DataFrame(rows)


def synthetic_waves():
    rng = np.random.default_rng(0)
    return [tone(220, 1.5), chirp(100, 5000, 2.0), (0.1 * rng.standard_normal(12000)).astype(np.float32),
            tone(3000, 0.7) + chirp(300, 900, 0.7)]


class CountingEncoder(LogMelEncoder):
    def __init__(self, **settings):
        super().__init__(**settings)
        self.calls = 0

    def __call__(self, wave):
        self.calls += 1
        return super().__call__(wave)


def test_cache_file_round_trip_and_damage_detection():
    array = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float16)
    blob = encode_array(array, "ab" * 32)
    np.testing.assert_array_equal(decode_array(blob, "ab" * 32), array)
    with pytest.raises(ValueError, match="checksum"):
        decode_array(blob[:-3], "ab" * 32)
    with pytest.raises(ValueError, match="truncated"):
        decode_array(blob[:20], "ab" * 32)
    flipped = bytearray(blob)
    flipped[-1] ^= 0xFF
    with pytest.raises(ValueError, match="checksum"):
        decode_array(bytes(flipped), "ab" * 32)


def test_second_extraction_is_served_from_cache(tmp_path):
    table = write_table(tmp_path, synthetic_waves())
    encoder = CountingEncoder()
    first = extract(table, encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 4 and (first.stats.hits, first.stats.misses) == (0, 4)
    second = extract(table, encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 4, "the second run must not compute anything"
    assert (second.stats.hits, second.stats.misses) == (4, 0)
    for a, b, wave in zip(first, second, synthetic_waves()):
        np.testing.assert_array_equal(a, b)
        assert a.shape == (1 + wave.size // 160, 80) and a.dtype == np.float32


def test_extract_matches_log_mel_of_the_file(tmp_path):
    table = write_table(tmp_path, synthetic_waves()[:2])
    features = extract(table, "logmel", None, progress=False, n_mels=40)
    for array, path in zip(features, table["path"]):
        np.testing.assert_allclose(array, log_mel(sf.read(path, dtype="float32")[0], n_mels=40), atol=1e-5)


def test_truncated_cache_entry_is_detected_and_recomputed(tmp_path):
    table = write_table(tmp_path, synthetic_waves())
    encoder = CountingEncoder()
    first = extract(table, encoder, tmp_path / "cache", progress=False)
    victim = sorted((tmp_path / "cache").rglob("*.feat"))[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.warns(CacheWarning, match=victim.name):
        again = extract(table, encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 5 and (again.stats.hits, again.stats.misses, again.stats.corrupt) == (3, 1, 1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert extract(table, encoder, tmp_path / "cache", progress=False).stats.hits == 4, "entry was rewritten"


def test_cache_key_follows_settings_and_audio_content(tmp_path):
    table = write_table(tmp_path, synthetic_waves())
    cache = tmp_path / "cache"
    assert extract(table, "logmel", cache, progress=False).stats.misses == 4
    assert extract(table, "logmel", cache, progress=False, win_ms=25, hop_ms=10.0).stats.hits == 4, \
        "spelling out the defaults (int or float) must not change the key"
    assert extract(table, "logmel", cache, progress=False, n_mels=64).stats.misses == 4
    assert extract(table, "logmel", cache, progress=False, vtlp_factor=0.9).stats.misses == 4

    sf.write(table.loc[2, "path"], tone(500, 0.75), SR, subtype="PCM_16")  # edit one file
    stats = extract(table, "logmel", cache, progress=False).stats
    assert (stats.hits, stats.misses) == (3, 1)

    moved = table.copy()
    moved.loc[0, "path"] = str(shutil.copy(table.loc[0, "path"], tmp_path / "renamed.wav"))
    assert extract(moved, "logmel", cache, progress=False).stats.hits == 4, "the key hashes content, not paths"


def test_cache_folder_per_encoder(tmp_path):
    cache = FeatureCache(tmp_path)
    assert cache.path("ssl-wavlm large", "ab" + "0" * 62).parent.parent.name == "ssl-wavlm_large"


def test_unknown_encoder_and_settings_fail_clearly(tmp_path):
    table = write_table(tmp_path, synthetic_waves()[:1])
    with pytest.raises(ValueError, match="unknown encoder 'mfcc'"):
        extract(table, "mfcc", tmp_path / "cache", progress=False)
    with pytest.raises(TypeError, match="unknown log-Mel settings"):
        extract(table, "logmel", tmp_path / "cache", progress=False, n_mel=40)
    with pytest.raises(ValueError, match="ssl:"):
        extract(table, "ssl", tmp_path / "cache", progress=False)


# ---------------------------------------------------------------- CLI settings

def _cli_args(*argv):
    from sercore.cli import build_parser

    return build_parser().parse_args(["features", "--corpus", "unused", *argv])


def test_cli_settings_come_from_the_profile_and_overrides():
    from sercore.features.cli import _encoder, _settings

    settings, cache = _settings(_cli_args("--profile", "paper", "--preset", "logmel_area", "--set", "n_mels=64"))
    assert settings == {"n_mels": 64, "n_fft": 800, "win_ms": 50, "hop_ms": 25, "log": "log10"}
    assert cache is None, "profiles leave the folder to sercore.features.cache.default_cache_dir()"
    assert _settings(_cli_args("--cache", "elsewhere"))[1] == "elsewhere"
    LogMelEncoder(**settings)  # every profile setting is a valid log_mel keyword
    with pytest.raises(SystemExit, match="no features.nope"):
        _settings(_cli_args("--preset", "nope"))
    with pytest.raises(SystemExit, match="ssl_model_dir"):
        _encoder(_cli_args("--encoder", "ssl"))


# ---------------------------------------------------------------- end to end on the generated corpus

def _data_importable():
    try:
        import sercore.data  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _data_importable(), reason="sercore.data is not importable")
def test_cli_extracts_the_smoke_corpus_then_reads_it_from_cache(tmp_path, capsys):
    from sercore.cli import main
    from sercore.data import generate_corpus

    corpus = generate_corpus(tmp_path / "corpus", profile="smoke", n_utterances=6)
    argv = ["features", "--corpus", str(corpus), "--encoder", "logmel", "--cache", str(tmp_path / "cache"),
            "--no-progress"]
    assert main(argv) == 0
    assert " 0 from cache" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert " 0 computed" in out and "x80" in out
