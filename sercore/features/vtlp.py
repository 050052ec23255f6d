"""Vocal tract length perturbation (VTLP; Jaitly & Hinton 2013), the augmentation of the area-attention study.

Two warps, chosen with `warp=` (sercore.fidelity AREA lists which one each run uses and why):

- "textbook" (the function default): Jaitly & Hinton's piecewise-linear map over 0..Nyquist. With factor a
  and boundary f_b = f_hi * min(a, 1) / a, frequencies below f_b are scaled by a, and above it a straight
  segment joins (f_b, a * f_b) to (Nyquist, Nyquist), so the band edges stay put.
- "nlpaug": what nlpaug's VtlpAug does (nlpaug/model/audio/vtlp.py, get_scale_factors and _manipulate), which
  the area-attention code (lessonxmk/Optimized_attention_for_SER, vtlpAug.py) ran. It evaluates the same
  formula at frequencies spread over 0..sample_rate instead of 0..Nyquist (bin i of F at i / (F - 1) * sr),
  so the formula's upper segment runs past Nyquist; then it rescales the warped values so that the largest,
  w(sr), lands on the top bin. Effect on a bin's real frequency: a low-frequency factor of a * sr / w(sr)
  (about 0.70 for a = 0.8, 1.33 for a = 1.2) and a kink at f_b / 2 (2.4 kHz and 2.0 kHz), not a and f_b. The first
  and last bins stay where they are. On a wave it uses librosa's STFT defaults (n_fft 2048, hop 512,
  periodic Hann, centred frames with reflect padding), moves the complex values with no phase correction
  and inverts with librosa's istft without a length, so the output has 512 * (N // 512) samples.

Both share one re-binning step: each input bin's value is split linearly between the two output bins around
its warped position (floor and floor + 1), which conserves the total of a magnitude/power spectrogram.

- `vtlp_spectrogram(spec [T, F], ...)` warps a magnitude or power spectrogram (F linear bins 0..Nyquist).
- `vtlp_wave(wave [N], ...)`: textbook: STFT (n_fft 1024, hop 256) -> warp -> inverse STFT with N samples
  out. Moving a bin's content to a new frequency without touching its phase would keep the phase advancing
  at the old frequency from frame to frame, and overlap-add would then smear the tone; so each bin's phase
  is first re-accumulated at its warped instantaneous frequency (the phase-vocoder correction), then the
  complex values are re-binned. nlpaug: as described above, without that correction (as nlpaug did).
`vtlp` dispatches on the number of dimensions. A factor of exactly 1 leaves every bin in place under both
warps, so the paths return their input (up to float rounding of the STFT round trip; nlpaug's wave output
is the input's first 512 * (N // 512) samples).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import ShortTimeFFT
from scipy.signal.windows import hann

FACTOR_RANGE = (0.8, 1.2)
WARPS = ("textbook", "nlpaug")
# librosa's stft / istft defaults, which nlpaug's VtlpAug called without arguments.
NLPAUG_N_FFT = 2048
NLPAUG_HOP = NLPAUG_N_FFT // 4


def check_factor(factor: float) -> float:
    factor = float(factor)
    low, high = FACTOR_RANGE
    if not (math.isfinite(factor) and low <= factor <= high):
        raise ValueError(f"VTLP factor must lie in [{low}, {high}], got {factor}")
    return factor


def check_warp(warp: str) -> str:
    if warp not in WARPS:
        raise ValueError(f"VTLP warp must be one of {', '.join(WARPS)}, got {warp!r}")
    return warp


def _boundary(factor: float, sample_rate: int, f_hi: float) -> float:
    nyquist = sample_rate / 2.0
    boundary = f_hi * min(factor, 1.0) / factor
    if not 0.0 < f_hi < nyquist or boundary >= nyquist:
        raise ValueError(f"VTLP f_hi={f_hi} Hz must lie below the Nyquist frequency {nyquist} Hz "
                         f"(also after dividing by the factor {factor})")
    return boundary


def _piecewise(freqs: np.ndarray, factor: float, boundary: float, nyquist: float) -> np.ndarray:
    upper_slope = (nyquist - factor * boundary) / (nyquist - boundary)
    return np.where(freqs <= boundary, factor * freqs, nyquist - upper_slope * (nyquist - freqs))


def warp_frequencies(freqs_hz, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0) -> np.ndarray:
    """The textbook piecewise-linear VTLP map applied to frequencies in Hz (each in [0, Nyquist])."""
    factor = check_factor(factor)
    boundary = _boundary(factor, sample_rate, f_hi)
    return _piecewise(np.asarray(freqs_hz, dtype=np.float64), factor, boundary, sample_rate / 2.0)


def bin_positions(n_bins: int, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
                  warp: str = "textbook") -> np.ndarray:
    """Where each of n_bins linear bins (0..Nyquist) goes, in (fractional) output bins, under `warp`."""
    factor, warp = check_factor(factor), check_warp(warp)
    if n_bins < 2:
        raise ValueError(f"VTLP needs at least 2 frequency bins, got {n_bins}")
    if warp == "textbook":
        bin_hz = np.linspace(0.0, sample_rate / 2.0, n_bins)
        return warp_frequencies(bin_hz, factor, sample_rate, f_hi) / (bin_hz[1] - bin_hz[0])
    # nlpaug: the formula at i / (F - 1) * sample_rate (0..sr, not 0..Nyquist), then max -> top bin.
    warped = _piecewise(np.linspace(0.0, 1.0, n_bins) * sample_rate, factor,
                        _boundary(factor, sample_rate, f_hi), sample_rate / 2.0)
    return warped * (n_bins - 1) / warped.max()


def _rebinning_matrix(n_bins: int, factor: float, sample_rate: int, f_hi: float, warp: str) -> np.ndarray:
    """[F, F] matrix W with out = spec @ W: bin k's value goes to floor(p_k) and floor(p_k) + 1, p_k being
    its warped position in bins, weighted by how close p_k lies to each (nlpaug: bins 0 and F-1 stay put)."""
    positions = np.clip(bin_positions(n_bins, factor, sample_rate, f_hi, warp), 0.0, n_bins - 1)
    lower = np.minimum(np.floor(positions).astype(int), n_bins - 1)
    frac = positions - lower
    upper = np.minimum(lower + 1, n_bins - 1)
    if warp == "nlpaug":
        lower[[0, -1]], upper[[0, -1]], frac[[0, -1]] = [0, n_bins - 1], [0, n_bins - 1], 0.0
    weights = np.zeros((n_bins, n_bins))
    rows = np.arange(n_bins)
    np.add.at(weights, (rows, lower), 1.0 - frac)
    np.add.at(weights, (rows, upper), frac)
    return weights


def vtlp_spectrogram(spec: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
                     warp: str = "textbook") -> np.ndarray:
    """Warp a magnitude or power spectrogram [T, F] (F linear bins from 0 Hz to Nyquist) along frequency."""
    spec = np.asarray(spec)
    if spec.ndim != 2 or spec.shape[1] < 2:
        raise ValueError(f"expected a spectrogram [T, F] with F >= 2 frequency bins, got shape {spec.shape}")
    weights = _rebinning_matrix(spec.shape[1], factor, sample_rate, f_hi, warp)
    return (spec @ weights).astype(spec.dtype, copy=False)


def _nlpaug_wave(wave: np.ndarray, factor: float, sample_rate: int, f_hi: float) -> np.ndarray:
    """librosa.stft(wave) -> nlpaug's re-binning of the complex values -> librosa.istft, written out."""
    n_fft, hop = NLPAUG_N_FFT, NLPAUG_HOP
    window = hann(n_fft, sym=False)
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (padded.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    spec = np.fft.rfft(frames * window, axis=1)  # [T, F]
    warped = spec @ _rebinning_matrix(spec.shape[1], factor, sample_rate, f_hi, "nlpaug")
    # istft: windowed overlap-add, divided by the summed squared window where it is not ~0, centre trimmed.
    pieces = np.fft.irfft(warped, n=n_fft, axis=1) * window
    total = n_fft + hop * (n_frames - 1)
    out, envelope = np.zeros(total), np.zeros(total)
    for t in range(n_frames):
        out[t * hop:t * hop + n_fft] += pieces[t]
        envelope[t * hop:t * hop + n_fft] += window ** 2
    nonzero = envelope > np.finfo(np.float64).tiny
    out[nonzero] /= envelope[nonzero]
    return out[n_fft // 2:total - n_fft // 2].astype(np.float32)


def vtlp_wave(wave: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
              n_fft: int = 1024, hop_length: int = 256, warp: str = "textbook") -> np.ndarray:
    """Warp a mono wave [N]. textbook: STFT (periodic Hann, n_fft, hop), phase-corrected re-binning, inverse
    STFT, N samples out. nlpaug: nlpaug's VtlpAug (n_fft 2048, hop 512, fixed; no phase correction),
    512 * (N // 512) samples out (empty for N < 512, as nlpaug)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty mono wave [N], got shape {wave.shape}")
    factor, warp = check_factor(factor), check_warp(warp)
    if warp == "nlpaug":
        if (n_fft, hop_length) != (1024, 256):
            raise TypeError("warp='nlpaug' uses nlpaug's own STFT (n_fft 2048, hop 512): do not pass n_fft / hop_length")
        return _nlpaug_wave(wave, factor, sample_rate, f_hi)
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
    rebinned = (np.abs(spec) * np.exp(1j * corrected)) @ _rebinning_matrix(n_bins, factor, sample_rate, f_hi,
                                                                             "textbook")
    return stft.istft(rebinned.T, k1=wave.size).astype(np.float32)


def vtlp(wave_or_spec: np.ndarray, factor: float, sample_rate: int = 16000, f_hi: float = 4800.0,
         warp: str = "textbook", **stft_options) -> np.ndarray:
    """VTLP of a wave [N] (-> wave) or of a magnitude/power spectrogram [T, F] (-> [T, F])."""
    data = np.asarray(wave_or_spec)
    if data.ndim == 1:
        return vtlp_wave(data, factor, sample_rate, f_hi, warp=warp, **stft_options)
    if data.ndim == 2:
        if stft_options:
            raise TypeError(f"STFT options {sorted(stft_options)} only apply to waves, not spectrograms")
        return vtlp_spectrogram(data, factor, sample_rate, f_hi, warp)
    raise ValueError(f"expected a wave [N] or a spectrogram [T, F], got shape {data.shape}")
