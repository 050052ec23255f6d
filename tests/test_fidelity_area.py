"""Issue 10, area-attention study: the code-faithful defaults (nlpaug's VTLP, the code's run under `paper`,
the code's short-utterance rule) and the AREA registry entries that name them."""

import importlib
import inspect
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from sercore import fidelity
from sercore.features import log_mel, make_encoder
from sercore.features.vtlp import bin_positions, vtlp, vtlp_spectrogram, vtlp_wave
from sercore.train.augment import add_vtlp_copies, vtlp_factor
from sercore.train.datasets import EvalItems, SegmentItems, Utterances, segment_starts
from sercore.train.run import segment_length
from sercore.train.settings import TrainSettings, resolve

SR = 16000


def tone(freq, seconds=1.5, amplitude=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- nlpaug's formulas, written out here

def nlpaug_targets(n_bins, sr, alpha, fhi=4800.0):
    """nlpaug get_scale_factors + the rescaling in _manipulate, as plain loops: the target bin of each bin."""
    half = sr / 2
    scale = fhi * min(alpha, 1)
    boundary = scale / alpha
    out = []
    for i in range(n_bins):
        f = i / (n_bins - 1) * sr  # linspace(0, 1, n) times the sampling rate: 0..sr
        out.append(f * alpha if f <= boundary else half - (half - scale) / (half - boundary) * (half - f))
    top = max(out)
    return [v * (n_bins - 1) / top for v in out]


def nlpaug_rebin(spec_tf, sr, alpha):
    """nlpaug's loop over bins (first and last copied, the rest split between floor and floor + 1)."""
    n_bins = spec_tf.shape[1]
    targets = nlpaug_targets(n_bins, sr, alpha)
    out = np.zeros_like(spec_tf)
    for i in range(n_bins):
        if i == 0 or i + 1 >= n_bins:
            out[:, i] += spec_tf[:, i]
            continue
        up = targets[i] - math.floor(targets[i])
        pos = int(math.floor(targets[i]))
        out[:, pos] += (1 - up) * spec_tf[:, i]
        out[:, pos + 1] += up * spec_tf[:, i]
    return out


@pytest.mark.parametrize("alpha", [0.8, 0.93, 1.0, 1.12, 1.2])
def test_nlpaug_warp_matches_nlpaug_formulas(alpha):
    np.testing.assert_allclose(bin_positions(1025, alpha, SR, warp="nlpaug"), nlpaug_targets(1025, SR, alpha),
                               rtol=1e-12, atol=1e-9)
    rng = np.random.default_rng(0)
    spec = rng.random((4, 1025)) + 1j * rng.random((4, 1025))
    np.testing.assert_allclose(vtlp_spectrogram(spec, alpha, SR, warp="nlpaug"), nlpaug_rebin(spec, SR, alpha),
                               atol=1e-12)


def test_nlpaug_effective_factor_and_kink_are_not_the_textbook_ones():
    f_bins = 1025
    bin_hz = SR / 2 / (f_bins - 1)
    for alpha, factor, kink_hz in ((0.8, 0.8 * 16000 / 18400, 2400.0), (1.2, 1.2 * 16000 / 14400, 2000.0)):
        pos = bin_positions(f_bins, alpha, SR, warp="nlpaug")
        low = np.arange(1, int(kink_hz / bin_hz))
        np.testing.assert_allclose(pos[low] / low, factor)   # one factor below the kink ...
        assert pos[low[-1] + 3] / (low[-1] + 3) != pytest.approx(factor, abs=1e-4)  # ... another above it
        assert pos[-1] == pytest.approx(f_bins - 1)
        textbook = bin_positions(f_bins, alpha, SR)
        np.testing.assert_allclose(textbook[low] / low, alpha)
    assert 0.69 < 0.8 * 16000 / 18400 < 0.70 and 1.33 < 1.2 * 16000 / 14400 < 1.34


@pytest.mark.parametrize("alpha", [0.8, 1.2])
def test_nlpaug_wave_moves_a_tone_by_the_effective_factor_and_cuts_to_512(alpha):
    wave = tone(1000.0, seconds=1.3)
    out = vtlp_wave(wave, alpha, warp="nlpaug")
    assert out.size == 512 * (wave.size // 512) < wave.size
    half, scale = SR / 2, 4800 * min(alpha, 1)
    top = half + (half - scale) / (half - scale / alpha) * half  # nlpaug's warped value at f = sr
    effective = alpha * SR / top  # what the rescaling to the top bin makes of alpha
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak = spectrum.argmax() * SR / out.size
    # within two of nlpaug's 7.8 Hz STFT bins (no phase correction blurs the re-binned tone), far from a * 1 kHz
    assert peak == pytest.approx(effective * 1000.0, abs=2 * SR / 2048)
    assert abs(peak - alpha * 1000.0) > 100
    textbook = vtlp(wave, alpha, warp="textbook")
    spectrum = np.abs(np.fft.rfft(textbook * np.hanning(textbook.size)))
    assert textbook.size == wave.size
    assert spectrum.argmax() * SR / textbook.size == pytest.approx(alpha * 1000.0, abs=SR / 1024)


def test_nlpaug_wave_factor_one_returns_the_input_and_short_waves_empty():
    wave = tone(440.0, seconds=0.9) + tone(3100.0, seconds=0.9, amplitude=0.1)
    out = vtlp_wave(wave, 1.0, warp="nlpaug")
    np.testing.assert_allclose(out, wave[:out.size], atol=1e-5)
    assert vtlp_wave(wave[:511], 1.1, warp="nlpaug").size == 0  # librosa's istft: 512 * (N // 512)
    with pytest.raises(ValueError, match="VTLP warp must be one of textbook, nlpaug"):
        vtlp_wave(wave, 1.0, warp="librosa")
    with pytest.raises(TypeError, match="nlpaug's own STFT"):
        vtlp_wave(wave, 1.0, warp="nlpaug", n_fft=512)


# ---------------------------------------------------------------- the copies of the area study

def tiny_corpus(folder, waves):
    rows = []
    for i, wave in enumerate(waves):
        path = folder / f"u{i}.wav"
        sf.write(path, wave, SR, subtype="FLOAT")
        rows.append({"utt_id": f"u{i}", "path": str(path), "label": "neu", "split": "Train" if i else "Test"})
    return pd.DataFrame(rows)


def test_copies_use_the_warp_setting(tmp_path):
    waves = [tone(700.0, 2.3), tone(1500.0, 2.6)]
    table = tiny_corpus(tmp_path, waves)
    assert TrainSettings().vtlp_warp == resolve("paper", "area-cnn").vtlp_warp == "nlpaug"
    encoder = make_encoder("logmel", n_mels=128, n_fft=800, win_ms=50, hop_ms=25, log="log10")
    speech = [encoder(w) for w in waves]
    factor = vtlp_factor(0, 1, "u1")
    for warp, expected in (("nlpaug", encoder(vtlp_wave(waves[1], factor, warp="nlpaug"))),
                           ("textbook", log_mel(waves[1], **{**encoder.settings, "vtlp_factor": factor}))):
        out_table, out_speech, _ = add_vtlp_copies(table, speech, None, encoder, 1, 0, None, progress=False,
                                                   warp=warp)
        assert out_table["utt_id"].tolist() == ["u0", "u1", "u1#vtlp1"], "copies of Train rows only"
        np.testing.assert_allclose(out_speech[2], expected, atol=1e-5)
    with pytest.raises(ValueError, match="VTLP warp must be one of"):
        add_vtlp_copies(table, speech, None, encoder, 1, 0, None, progress=False, warp="wave")


def test_a_copy_nlpaug_leaves_empty_is_left_out_and_counted(tmp_path):
    waves = [tone(700.0, 0.5), tone(900.0, 400 / SR), tone(1500.0, 0.6)]
    table = tiny_corpus(tmp_path, waves)
    encoder = make_encoder("logmel")
    speech = [encoder(w) for w in waves]
    with pytest.warns(UserWarning, match=r"1 of 2 VTLP copies left out.*u1\.wav.*400 samples \(< 512\)"):
        out_table, out_speech, _ = add_vtlp_copies(table, speech, None, encoder, 1, 0, tmp_path / "cache",
                                                   progress=False)
    assert out_table["utt_id"].tolist() == ["u0", "u1", "u2", "u2#vtlp1"] and len(out_speech) == 4


# ---------------------------------------------------------------- the paper profile runs the code's run

def test_paper_profile_is_the_codes_area_run():
    s = resolve("paper", "area-cnn")
    assert (s.epochs, s.batch_size, s.lr, s.optimizer) == (100, 32, 1e-4, "adam")
    assert (s.vtlp_copies, s.vtlp_warp, s.short_segments) == (1, "nlpaug", "skip")
    assert (s.segment_seconds, s.segment_hop_train, s.segment_hop_test) == (2.0, 1.0, 0.4)
    assert resolve("default", "area-cnn").vtlp_copies == 0  # CPU profiles: no copies, on purpose


# ---------------------------------------------------------------- utterances of at most one segment

def test_an_exactly_two_second_utterance_is_skipped_as_in_the_code():
    settings = resolve("paper", "area-cnn")
    features = dict(n_mels=128, n_fft=800, win_ms=50, hop_ms=25, log="log10")
    fps = 40.0
    seg = segment_length(settings, fps)
    two_s, longer = log_mel(tone(300.0, 2.0), **features), log_mel(tone(300.0, 2.0 + 400 / SR), **features)
    assert (len(two_s), len(longer), seg) == (81, 82, 81)
    assert segment_starts(len(two_s), seg, 40) == [] and segment_starts(len(two_s), seg, 40, "pad") == [0]
    assert segment_starts(len(longer), seg, 40) == [0]
    # frame resolution (the registry note): 2 s + 399 samples is still 81 frames, so skipped too
    assert len(log_mel(tone(300.0, 2.0 + 399 / SR), **features)) == 81
    assert segment_starts(80, seg, 40) == [] and segment_starts(80, seg, 40, "pad") == [0]
    table = pd.DataFrame({"utt_id": ["a", "b"], "split": ["Train", "Train"], "label": ["neu", "sad"],
                          "gender": ["Female", "Male"], "arousal": np.nan, "valence": np.nan,
                          "dominance": np.nan})
    data = Utterances.from_table(table, [two_s, longer], frames_per_second=fps)
    items = SegmentItems(data, [0, 1], seg, 40, settings.short_segments)
    assert items.windows == [(1, 0)] and items.skipped_rows == 1
    evaluated = EvalItems(data, [0, 1], 8, seg, 16, settings.short_segments)
    assert evaluated.rows.tolist() == [1] and evaluated.skipped_rows == 1
    assert SegmentItems(data, [0, 1], seg, 40, "pad").windows == [(0, 0), (1, 0)]


# ---------------------------------------------------------------- the AREA registry holds

def live_value(entry):
    kind, _, rest = entry.setting.partition(".")
    if kind == "train":
        return getattr(resolve("paper", "area-cnn"), rest.rpartition(".")[2])
    if kind == "code":
        module, _, name = rest.partition(":")
        name, _, param = name.partition(".")
        return inspect.signature(getattr(importlib.import_module(module), name)).parameters[param].default
    assert entry.setting == "none" and entry.note, entry
    return entry.default


def test_area_registry_defaults_are_what_the_library_runs():
    settings = {e.setting for e in fidelity.AREA}
    for needed in ("train.by_study.area-cnn.epochs", "train.by_study.area-cnn.vtlp_copies", "train.vtlp_warp",
                   "train.short_segments", "code.sercore.attention.area:AreaAttention.layout",
                   "code.sercore.attention.area:AreaAttention.dropout_at_test",
                   "code.sercore.attention.area:AreaAttention.key"):
        assert needed in settings
    for entry in fidelity.AREA:
        assert entry.study == "area-cnn" and entry.paper and entry.code
        assert live_value(entry) == entry.default, entry.setting
        for profile, value in entry.profiles.items():
            assert getattr(resolve(profile, "area-cnn"), entry.setting.rpartition(".")[2]) == value
    assert all(e in fidelity.DEVIATIONS for e in fidelity.AREA)
