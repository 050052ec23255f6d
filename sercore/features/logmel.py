"""Log-Mel spectrogram in numpy/scipy, no torchaudio or librosa.

Conventions (chosen to match librosa's defaults, which the area-attention public code used):
- Frames are centred: the signal is zero-padded by n_fft // 2 on both sides, so a wave of N samples gives
  1 + N // hop frames (100 frames/s at hop 10 ms; 81 frames for 2 s at hop 400 samples).
- The analysis window is a periodic Hann of win_length samples, zero-padded to n_fft in the middle of the frame.
- Power spectrum |X|^2, then triangular mel filters, then log(max(power, floor)).
- Mel scale: "slaney" (linear below 1 kHz, logarithmic above; librosa's default) or "htk"
  (2595 * log10(1 + f / 700)). Filter norm: "slaney" scales each triangle to unit area (2 / bandwidth in Hz,
  librosa's default), None leaves peaks at 1.

Settings are checked on every call (so LogMelEncoder's constructor, which calls log_mel once, refuses bad
ones at once) by check_settings: one line naming the setting, its value and what is allowed. A bool is
not a number, and settings that would run but mean nothing (n_mels=0, a mel band with no FFT bin in it)
are refused.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from sercore.features.vtlp import vtlp_spectrogram

# Slaney's Auditory Toolbox scale: 200/3 Hz per mel below 1 kHz, a constant ratio per mel above it.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0

# Frames transformed per FFT call: bounds peak memory on hour-long audio (4096 x 512 complex64 ~ 8 MB).
_FRAMES_PER_BLOCK = 4096


def hz_to_mel(hz, scale: str = "slaney"):
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    if scale == "slaney":
        linear = hz / _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(hz, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
        return np.where(hz >= _SLANEY_MIN_LOG_HZ, log, linear)
    raise ValueError(f"unknown mel scale {scale!r}: use 'slaney' or 'htk'")


def mel_to_hz(mel, scale: str = "slaney"):
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        linear = mel * _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
        return np.where(mel >= _SLANEY_MIN_LOG_MEL, log, linear)
    raise ValueError(f"unknown mel scale {scale!r}: use 'slaney' or 'htk'")


def mel_filterbank(sample_rate: int = 16000, n_fft: int = 512, n_mels: int = 80, f_min: float = 0.0,
                   f_max: float | None = None, scale: str = "slaney", norm: str | None = "slaney") -> np.ndarray:
    """Triangular filters [n_mels, n_fft // 2 + 1]: filter m rises from edge m to edge m+1 and falls to m+2,
    the n_mels + 2 edges equally spaced in mel between f_min and f_max (default Nyquist)."""
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got f_min={f_min}, f_max={f_max}")
    if norm not in (None, "slaney"):
        raise ValueError(f"unknown filter norm {norm!r}: use 'slaney' or None")
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


def frame_count(n_samples: int, hop_length: int) -> int:
    """Frames produced for a wave of n_samples with centred framing."""
    return 1 + n_samples // hop_length


def power_spectrogram(wave: np.ndarray, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """|STFT|^2 as [T, n_fft // 2 + 1] float32, centred frames, periodic Hann window."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono wave of shape [N], got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError("cannot compute a spectrogram of an empty wave")
    if not 0 < win_length <= n_fft:
        raise ValueError(f"need 0 < win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
    window = np.zeros(n_fft, dtype=np.float32)
    start = (n_fft - win_length) // 2
    window[start:start + win_length] = np.hanning(win_length + 1)[:-1]  # periodic Hann
    padded = np.pad(wave, n_fft // 2)
    n_frames = frame_count(wave.size, hop_length)
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, n_fft), strides=(hop_length * padded.strides[0], padded.strides[0]),
        writeable=False)
    out = np.empty((n_frames, n_fft // 2 + 1), dtype=np.float32)
    for first in range(0, n_frames, _FRAMES_PER_BLOCK):
        spectrum = scipy.fft.rfft(frames[first:first + _FRAMES_PER_BLOCK] * window, axis=-1)
        out[first:first + _FRAMES_PER_BLOCK] = spectrum.real ** 2 + spectrum.imag ** 2
    return out


def _setting_error(name, value, allowed: str) -> ValueError:
    return ValueError(f"log-Mel setting {name}={value!r}: must be {allowed}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_settings(sample_rate, n_mels, win_ms, hop_ms, n_fft, log, floor, f_min, f_max, mel_scale, norm,
                   vtlp_factor, vtlp_f_hi) -> None:
    """ValueError (one line) for the first log_mel setting that is out of range; see the module docstring."""
    for name, value in (("sample_rate", sample_rate), ("n_mels", n_mels)):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise _setting_error(name, value, "an integer >= 1")
    for name, value in (("win_ms", win_ms), ("hop_ms", hop_ms), ("floor", floor), ("vtlp_f_hi", vtlp_f_hi)):
        if not (_is_number(value) and value > 0):
            raise _setting_error(name, value, "a number > 0")
    win_length = int(round(sample_rate * win_ms / 1000.0))
    hop_length = int(round(sample_rate * hop_ms / 1000.0))
    if win_length < 1 or hop_length < 1:
        raise _setting_error("win_ms" if win_length < 1 else "hop_ms", win_ms if win_length < 1 else hop_ms,
                             f"at least one sample at sample_rate={sample_rate}")
    if n_fft is not None and not (isinstance(n_fft, int) and not isinstance(n_fft, bool) and n_fft >= win_length):
        raise _setting_error("n_fft", n_fft, f"null or an integer >= the window ({win_length} samples)")
    if log not in ("ln", "log10"):
        raise _setting_error("log", log, "'ln' or 'log10'")
    if mel_scale not in ("slaney", "htk"):
        raise _setting_error("mel_scale", mel_scale, "'slaney' or 'htk'")
    if norm not in ("slaney", None):
        raise _setting_error("norm", norm, "'slaney' or null")
    nyquist = sample_rate / 2.0
    if not (_is_number(f_min) and 0 <= f_min < nyquist):
        raise _setting_error("f_min", f_min, f"a number in [0, {nyquist}) Hz")
    if f_max is not None and not (_is_number(f_max) and f_min < f_max <= nyquist):
        raise _setting_error("f_max", f_max, f"null or a number in ({f_min}, {nyquist}] Hz (above f_min)")
    if vtlp_factor is not None and not _is_number(vtlp_factor):
        raise _setting_error("vtlp_factor", vtlp_factor, "null or a number in [0.8, 1.2]")
    n_fft = 1 << (win_length - 1).bit_length() if n_fft is None else n_fft
    empty = int((mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm).max(axis=1) <= 0).sum())
    if empty:
        raise _setting_error("n_mels", n_mels, f"at most what n_fft={n_fft} resolves: {empty} of the bands get no "
                             "FFT bin (use fewer bands or a larger n_fft)")


def log_mel(wave: np.ndarray, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25.0,
            hop_ms: float = 10.0, n_fft: int | None = None, log: str = "ln", floor: float = 1e-10,
            f_min: float = 0.0, f_max: float | None = None, mel_scale: str = "slaney",
            norm: str | None = "slaney", vtlp_factor: float | None = None, vtlp_f_hi: float = 4800.0) -> np.ndarray:
    """Log-Mel spectrogram [T, n_mels] float32 of a mono wave, T = 1 + len(wave) // hop.

    n_fft defaults to the next power of two >= the window (400 samples -> 512). log is "ln" (natural, the
    default) or "log10" (the area-attention setting: n_mels=128, n_fft=800, win_ms=50, hop_ms=25).
    Power below `floor` is clipped before the log so silence gives log(floor), not -inf.
    vtlp_factor (in [0.8, 1.2]) warps the power spectrum before the mel filters (sercore.features.vtlp): the
    features of a VTLP copy without a round trip through the waveform.
    """
    check_settings(sample_rate, n_mels, win_ms, hop_ms, n_fft, log, floor, f_min, f_max, mel_scale, norm,
                   vtlp_factor, vtlp_f_hi)
    win_length = int(round(sample_rate * win_ms / 1000.0))
    hop_length = int(round(sample_rate * hop_ms / 1000.0))
    if n_fft is None:
        n_fft = 1 << (win_length - 1).bit_length()
    power = power_spectrogram(wave, n_fft, hop_length, win_length)
    if vtlp_factor is not None:
        power = vtlp_spectrogram(power, vtlp_factor, sample_rate, vtlp_f_hi)
    mel = power @ mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm).T
    clipped = np.maximum(mel, floor)
    return (np.log(clipped) if log == "ln" else np.log10(clipped)).astype(np.float32)
