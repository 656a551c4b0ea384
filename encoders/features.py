"""Input features: the UTS authors' 80-bin log-mel filterbank at 16 kHz (the paper's encoder input).

The authors compute features on the fly with Lhotse's ``Fbank(FbankConfig(num_mel_bins=80))``.
:func:`fbank` computes the same numbers with torchaudio's Kaldi-compatible ``fbank``, so it runs
on CPU or GPU tensors alike and costs no more than before; ``tests/test_features.py`` checks it
against Lhotse's extractor (frame count equal, values within 1e-3).

Lhotse's defaults that differ from torchaudio's, and so are passed explicitly:

- ``snip_edges=False``: frames are centred on multiples of the 10 ms shift and the signal is
  mirrored at both ends, so a clip of n samples at 16 kHz gives ``(n + 80) // 160`` frames
  (about n / 160; torchaudio's default gives ``1 + (n - 400) // 160``);
- ``high_freq=-400``: the top mel filter ends 400 Hz below Nyquist, at 7.6 kHz.

The rest agree: 25 ms povey window padded to 512 samples, DC offset removed, pre-emphasis 0.97,
power spectrum, filters from 20 Hz, no energy coefficient, log floored at float32 epsilon, and
no dither (so the features are deterministic).
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

FEATURE_VERSION = "2"
"""Bump whenever :func:`fbank` would return different numbers for the same input (and bump
``FEATURES["version"]`` in harness/components.py with it: it re-keys the caches).
2: Lhotse's ``Fbank(FbankConfig(num_mel_bins=80))`` (snip_edges=False, high_freq=-400)."""

SAMPLE_RATE = 16_000
"""Sample rate the features are computed at; other rates are resampled to it."""

FRAME_RATE = 100.0
"""Feature frames per second (10 ms shift)."""

FRAME_LENGTH = 400
"""Samples per analysis window (25 ms at 16 kHz)."""

FRAME_SHIFT = 160
"""Samples between frames (10 ms at 16 kHz)."""

LOW_FREQ = 20.0
HIGH_FREQ = -400.0
"""Mel filter band edges in Hz (Lhotse's defaults); a negative top edge is an offset from Nyquist."""


def num_frames(num_samples: int) -> int:
    """Frames :func:`fbank` gives for a 16 kHz clip of ``num_samples`` samples (Lhotse's count)."""
    return (num_samples + FRAME_SHIFT // 2) // FRAME_SHIFT


def _mirror_pad(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``x`` extended at both ends as Kaldi does with ``snip_edges=False``.

    Frame i covers samples ``[i * shift - (length - shift) // 2, ... + length)``; indices outside
    the clip are mirrored (``x[-1] = x[0]``, ``x[n] = x[n - 1]``), repeatedly for clips shorter
    than the padding. The result holds exactly ``frames`` whole windows.
    """
    n = x.shape[-1]
    left = (FRAME_LENGTH - FRAME_SHIFT) // 2
    right = (frames - 1) * FRAME_SHIFT + FRAME_LENGTH - left - n
    if left <= n and right <= n:  # every clip of 12.5 ms or more: one mirror image per end
        return torch.cat((x[:left].flip(0), x, x[n - right :].flip(0)))
    idx = torch.arange(-left, n + right, device=x.device).remainder(2 * n)  # non-negative
    return x[torch.where(idx < n, idx, 2 * n - 1 - idx)]


def fbank(wave: np.ndarray | torch.Tensor, sample_rate: int, num_mel_bins: int = 80) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform: Lhotse's ``Fbank(FbankConfig(num_mel_bins=...))``.

    ``wave`` is a 1-D float signal in [-1, 1] at ``sample_rate``; it is resampled to 16 kHz
    when needed. Frames are 25 ms long with a 10 ms shift, centred as Kaldi's
    ``snip_edges=False`` centres them, so a clip of n samples at 16 kHz gives
    :func:`num_frames` ``(n) = (n + 80) // 160`` frames (none below 5 ms). Returns a float32
    tensor [frames, num_mel_bins] on the device of ``wave``.
    """
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"fbank expects a 1-D mono waveform, got shape {tuple(x.shape)}")
    if sample_rate != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, sample_rate, SAMPLE_RATE)
    frames = num_frames(x.numel())
    if frames == 0:
        return torch.zeros(0, num_mel_bins, dtype=torch.float32, device=x.device)
    # Mirror the ends here and let torchaudio cut whole windows (snip_edges=True): the same
    # frames as its snip_edges=False, which refuses clips shorter than one window.
    return torchaudio.compliance.kaldi.fbank(
        _mirror_pad(x, frames).unsqueeze(0),
        num_mel_bins=num_mel_bins,
        frame_length=1000.0 * FRAME_LENGTH / SAMPLE_RATE,
        frame_shift=1000.0 * FRAME_SHIFT / SAMPLE_RATE,
        dither=0.0,
        sample_frequency=SAMPLE_RATE,
        snip_edges=True,
        low_freq=LOW_FREQ,
        high_freq=HIGH_FREQ,
        # torchaudio's defaults, equal to Lhotse's (stated so that a change of either shows):
        window_type="povey",
        preemphasis_coefficient=0.97,
        remove_dc_offset=True,
        round_to_power_of_two=True,
        use_power=True,
        use_log_fbank=True,
        use_energy=False,
    )


# --------------------------------------------------------------------------- PANNs log-mel

PANNS_VERSION = "1"
"""Bump whenever :func:`panns_logmel` would return different numbers for the same input (and
the ``version`` of the ``panns-logmel`` front end in harness/components.py with it)."""


def panns_logmel(wave: np.ndarray | torch.Tensor, sample_rate: int, num_mel_bins: int = 64,
                 target_rate: int = 32_000, n_fft: int = 1024, hop_length: int = 320, f_min: float = 50.0,
                 f_max: float = 14_000.0) -> torch.Tensor:
    """The log-mel spectrogram of PANNs' CNN14 as BLAT computes it (wsntxxn/BLAT,
    ``models/audio_encoder.py``: ``Cnn14(sample_rate=32000)``).

    torchaudio's ``MelSpectrogram`` at 32 kHz: a 1024-sample Hann window (32 ms) every 320
    samples (10 ms), centred with reflection padding, power spectrum, 64 Slaney mel filters
    (Slaney-normalised) from 50 Hz to 14 kHz, then ``AmplitudeToDB()``:
    10·log10(max(x, 1e-10)), no top-dB clipping. The same numbers as PANNs' torchlibrosa
    ``Spectrogram`` + ``LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None)``. ``wave`` is
    resampled to ``target_rate`` when needed. A clip of n samples at 32 kHz gives
    ``1 + n // 320`` frames. Returns float32 [frames, num_mel_bins] on the device of ``wave``.
    """
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"panns_logmel expects a 1-D mono waveform, got shape {tuple(x.shape)}")
    if sample_rate != target_rate:
        x = torchaudio.functional.resample(x, sample_rate, target_rate)
    if x.numel() <= n_fft // 2:  # reflection padding needs more samples than half a window
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.numel()))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=target_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop_length, f_min=f_min, f_max=f_max,
        n_mels=num_mel_bins, norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect", power=2.0,
    ).to(x.device)
    spec = mel(x)  # [mels, frames]
    return (10.0 * torch.log10(spec.clamp(min=1e-10))).T.contiguous()


def extract(wave: np.ndarray | torch.Tensor, sample_rate: int, features: dict) -> torch.Tensor:
    """The features a front-end setting (``harness.components.FEATURES`` or another entry of
    ``FRONT_ENDS``) names: ``kind`` ``kaldi-fbank`` (:func:`fbank`, the paper's input) or
    ``panns-logmel`` (:func:`panns_logmel`, CNN14's)."""
    kind = features.get("kind", "kaldi-fbank")
    if kind == "kaldi-fbank":
        return fbank(wave, sample_rate, num_mel_bins=features["num_mel_bins"])
    if kind == "panns-logmel":
        return panns_logmel(wave, sample_rate, num_mel_bins=features["num_mel_bins"],
                            target_rate=features["sample_rate"], n_fft=features["n_fft"],
                            hop_length=features["hop_length"], f_min=features["f_min"], f_max=features["f_max"])
    raise ValueError(f"unknown feature front end {kind!r}; expected kaldi-fbank or panns-logmel")
