"""Small DSP toolbox shared by the mini-suite synthesisers (numpy + scipy.signal).

All signals are 1-D float64 arrays at :data:`SR` Hz unless a function says otherwise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft, signal

SR = 16000
"""Sampling rate of every clip the mini suite writes."""


def _biquad(kind: str, freq: float, q: float) -> np.ndarray:
    """One second-order section (RBJ audio-EQ cookbook) as a scipy ``sos`` row."""
    w0 = 2 * np.pi * min(max(freq, 10.0), SR / 2 * 0.95) / SR
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    if kind == "lowpass":
        b = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
    elif kind == "highpass":
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
    else:  # band-pass with 0 dB peak gain
        b = [alpha, 0.0, -alpha]
    a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array([b + a]) / a[0]


BUTTERWORTH_Q = 1 / np.sqrt(2)


def lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Second-order Butterworth low-pass at ``cutoff`` Hz."""
    return signal.sosfilt(_biquad("lowpass", cutoff, BUTTERWORTH_Q), x)


def highpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Second-order Butterworth high-pass at ``cutoff`` Hz."""
    return signal.sosfilt(_biquad("highpass", cutoff, BUTTERWORTH_Q), x)


def bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Band-pass between ``lo`` and ``hi`` Hz: a high-pass then a low-pass, second order each."""
    high = _biquad("highpass", lo, BUTTERWORTH_Q)
    low = _biquad("lowpass", max(hi, lo * 1.05), BUTTERWORTH_Q)
    sos = np.concatenate([high, low])
    return signal.sosfilt(sos, x)


def resonator(x: np.ndarray, freq: float, q: float) -> np.ndarray:
    """Second-order resonant band-pass at ``freq`` Hz with quality factor ``q`` (0 dB at the peak)."""
    return signal.sosfilt(_biquad("bandpass", freq, q), x)


def smooth_curve(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """A smooth random curve in [-1, 1] with about ``rate_hz`` independent values per second."""
    knots = max(int(n / SR * rate_hz) + 2, 2)
    values = rng.uniform(-1.0, 1.0, knots)
    pos = np.linspace(0.0, knots - 1.0, n)
    i = np.minimum(pos.astype(int), knots - 2)
    frac = pos - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)  # cosine interpolation: no corners
    return values[i] * (1 - w) + values[i + 1] * w


def decay(n: int, t60: float) -> np.ndarray:
    """Exponential envelope falling by 60 dB after ``t60`` seconds."""
    return np.exp(-6.91 * np.arange(n) / (t60 * SR))


def fades(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    """Apply raised-cosine fade-in and fade-out of ``ms`` milliseconds (returns a copy)."""
    y = np.array(x, dtype=np.float64)
    k = min(int(ms * SR / 1000), len(y) // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        y[:k] *= ramp
        y[-k:] *= ramp[::-1]
    return y


def add_at(dst: np.ndarray, src: np.ndarray, start: int) -> None:
    """Add ``src`` into ``dst`` from sample ``start``, cropping whatever falls outside."""
    if start >= len(dst) or start + len(src) <= 0:
        return
    s0 = max(0, -start)
    d0 = max(0, start)
    m = min(len(src) - s0, len(dst) - d0)
    dst[d0 : d0 + m] += src[s0 : s0 + m]


def impulse_train(n: int, positions: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """A signal of length ``n`` with ``amplitudes`` placed at integer ``positions``."""
    x = np.zeros(n)
    keep = (positions >= 0) & (positions < n)
    np.add.at(x, positions[keep].astype(int), amplitudes[keep])
    return x


def convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """FFT convolution of ``x`` with ``kernel``, cropped to ``len(x)``."""
    return signal.fftconvolve(x, kernel)[: len(x)]


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x``."""
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def normalize_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale ``x`` to an RMS level of ``dbfs`` dB relative to full scale."""
    return x * (10 ** (dbfs / 20) / rms(x))


def room_reverb(rng: np.random.Generator, x: np.ndarray, rt60: float, wet: float) -> np.ndarray:
    """Mix ``x`` with a synthetic room response (decaying noise tail plus early echoes)."""
    n = int(rt60 * SR)
    ir = rng.standard_normal(n) * decay(n, rt60)
    ir = lowpass(ir, rng.uniform(3000, 6000))
    for _ in range(4):  # a few discrete early reflections
        ir[int(rng.uniform(0.004, 0.03) * SR)] += rng.uniform(1.0, 3.0)
    tail = convolve(x, ir)
    return (1 - wet) * x + wet * tail * (rms(x) / rms(tail))


def colored_noise(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    """Stationary noise whose power falls as ``1/f**slope`` (0: white, 1: pink, 2: brown), unit RMS."""
    m = fft.next_fast_len(n, real=True)  # shaped at a length FFTs are quick at, then cropped
    spectrum = fft.rfft(rng.standard_normal(m))
    freqs = np.maximum(fft.rfftfreq(m, 1 / SR), 20.0)  # flat under 20 Hz: no DC blow-up
    x = fft.irfft(spectrum * freqs ** (-slope / 2), m)[:n]
    return x / rms(x)


def background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A recording's background at unit RMS: coloured noise (hiss to rumble), sometimes
    swelling and fading like distant traffic or a crowd."""
    x = colored_noise(rng, n, rng.uniform(0.0, 2.0))
    if rng.random() < 0.4:
        x = x * (1.0 + 0.6 * smooth_curve(rng, n, rng.uniform(0.5, 3.0)))
        x = x / rms(x)
    return x


def add_noise(rng: np.random.Generator, x: np.ndarray, snr_db: tuple[float, float]) -> np.ndarray:
    """``x`` plus :func:`background` noise at a signal-to-noise ratio drawn from ``snr_db``."""
    snr = rng.uniform(*snr_db)
    return x + background(rng, len(x)) * rms(x) * 10 ** (-snr / 20)


@lru_cache(maxsize=1)
def _resampling_filter() -> np.ndarray:
    # the filter resample_poly designs by default for 320/441, designed once
    return signal.firwin(2 * 10 * 441 + 1, 1.0 / 441, window=("kaiser", 5.0))


def resample_22050_to_16000(x: np.ndarray) -> np.ndarray:
    """Polyphase resampling from 22.05 kHz (espeak-ng) to 16 kHz."""
    return signal.resample_poly(x, 320, 441, window=_resampling_filter())


def finish(x: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Remove DC, apply short fades and keep the peak at or under ``peak`` (float32 out)."""
    y = fades(x - np.mean(x), 5.0)
    m = float(np.max(np.abs(y)))
    if m > peak:
        y = y * (peak / m)
    return y.astype(np.float32)
