"""Vocal tract length perturbation (VTLP; Jaitly & Hinton 2013), the augmentation of the area-attention study.

The warp is piecewise linear in frequency (the form nlpaug's VtlpAug uses): with factor a and boundary
f_b = f_hi * min(a, 1) / a, frequencies below f_b are scaled by a, and above it a straight segment joins
(f_b, a * f_b) to (Nyquist, Nyquist), so the band edges stay put and the map is continuous and increasing.

Two entry points, sharing one re-binning step (each input bin's value is split linearly between the two
output bins around its warped position, which conserves the total of a magnitude/power spectrogram):
- `vtlp_spectrogram(spec [T, F], ...)` warps a magnitude or power spectrogram (F = n_fft // 2 + 1 bins).
- `vtlp_wave(wave [N], ...)` goes STFT -> warp -> inverse STFT. Moving a bin's content to a new frequency
  without touching its phase would keep the phase advancing at the old frequency from frame to frame, and
  overlap-add would then smear the tone; so each bin's phase is first re-accumulated at its warped
  instantaneous frequency (the phase-vocoder correction), then the complex values are re-binned.
`vtlp` dispatches on the number of dimensions. A factor of exactly 1 leaves every bin in place, so both
paths return their input (up to float rounding of the STFT round trip for waves).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import ShortTimeFFT
from scipy.signal.windows import hann

FACTOR_RANGE = (0.8, 1.2)


def check_factor(factor: float) -> float:
    factor = float(factor)
    low, high = FACTOR_RANGE
    if not (math.isfinite(factor) and low <= factor <= high):
        raise ValueError(f"VTLP factor must lie in [{low}, {high}], got {factor}")
    return factor


def warp_frequencies(freqs_hz, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0) -> np.ndarray:
    """The piecewise-linear VTLP map applied to frequencies in Hz (each in [0, Nyquist])."""
    factor = check_factor(factor)
    nyquist = sample_rate / 2.0
    boundary = f_hi * min(factor, 1.0) / factor
    if not 0.0 < f_hi < nyquist or boundary >= nyquist:
        raise ValueError(f"VTLP f_hi={f_hi} Hz must lie below the Nyquist frequency {nyquist} Hz "
                         f"(also after dividing by the factor {factor})")
    freqs = np.asarray(freqs_hz, dtype=np.float64)
    upper_slope = (nyquist - factor * boundary) / (nyquist - boundary)
    return np.where(freqs <= boundary, factor * freqs, nyquist - upper_slope * (nyquist - freqs))


def _rebinning_matrix(n_bins: int, factor: float, sample_rate: int, f_hi: float) -> np.ndarray:
    """[F, F] matrix W with out = spec @ W: bin k's value goes to floor(p_k) and floor(p_k) + 1, p_k being
    its warped position in bins, weighted by how close p_k lies to each."""
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_bins)
    positions = warp_frequencies(bin_hz, factor, sample_rate, f_hi) / (bin_hz[1] - bin_hz[0])
    positions = np.clip(positions, 0.0, n_bins - 1)
    lower = np.minimum(np.floor(positions).astype(int), n_bins - 1)
    frac = positions - lower
    upper = np.minimum(lower + 1, n_bins - 1)
    weights = np.zeros((n_bins, n_bins))
    rows = np.arange(n_bins)
    np.add.at(weights, (rows, lower), 1.0 - frac)
    np.add.at(weights, (rows, upper), frac)
    return weights


def vtlp_spectrogram(spec: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0) -> np.ndarray:
    """Warp a magnitude or power spectrogram [T, F] (F linear bins from 0 Hz to Nyquist) along frequency."""
    spec = np.asarray(spec)
    if spec.ndim != 2 or spec.shape[1] < 2:
        raise ValueError(f"expected a spectrogram [T, F] with F >= 2 frequency bins, got shape {spec.shape}")
    weights = _rebinning_matrix(spec.shape[1], factor, sample_rate, f_hi)
    return (spec @ weights).astype(spec.dtype, copy=False)


def vtlp_wave(wave: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
              n_fft: int = 1024, hop_length: int = 256) -> np.ndarray:
    """Warp a mono wave [N]: STFT (periodic Hann, n_fft, hop), phase-corrected re-binning, inverse STFT."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty mono wave [N], got shape {wave.shape}")
    factor = check_factor(factor)
    stft = ShortTimeFFT(hann(n_fft, sym=False), hop=hop_length, fs=sample_rate)
    spec = stft.stft(wave).T  # [T, F]
    n_bins = spec.shape[1]

    # Instantaneous frequency per bin (rad/sample) from the frame-to-frame phase advance.
    phase = np.angle(spec)
    nominal = 2.0 * np.pi * np.arange(n_bins) / n_fft
    advance = np.diff(phase, axis=0, prepend=phase[:1]) - hop_length * nominal
    advance[0] = 0.0
    deviation = np.angle(np.exp(1j * advance))  # wrap to [-pi, pi]
    inst = np.clip(nominal + deviation / hop_length, 0.0, np.pi)
    to_hz = sample_rate / (2.0 * np.pi)
    warped = warp_frequencies(inst * to_hz, factor, sample_rate, f_hi) / to_hz

    # Each bin keeps its own phase but, from frame to frame, advances at the warped frequency instead.
    corrected = phase + np.cumsum(hop_length * (warped - inst), axis=0)
    rebinned = (np.abs(spec) * np.exp(1j * corrected)) @ _rebinning_matrix(n_bins, factor, sample_rate, f_hi)
    return stft.istft(rebinned.T, k1=wave.size).astype(np.float32)


def vtlp(wave_or_spec: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
         **stft_options) -> np.ndarray:
    """VTLP of a wave [N] (-> wave [N]) or of a magnitude/power spectrogram [T, F] (-> [T, F])."""
    data = np.asarray(wave_or_spec)
    if data.ndim == 1:
        return vtlp_wave(data, factor, sample_rate, f_hi, **stft_options)
    if data.ndim == 2:
        if stft_options:
            raise TypeError(f"STFT options {sorted(stft_options)} only apply to waves, not spectrograms")
        return vtlp_spectrogram(data, factor, sample_rate, f_hi)
    raise ValueError(f"expected a wave [N] or a spectrogram [T, F], got shape {data.shape}")
