"""Input features: 80-bin Kaldi log-mel filterbanks at 16 kHz (the paper's encoder input)."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

FEATURE_VERSION = "1"
"""Bump whenever :func:`fbank` would return different numbers for the same input."""

SAMPLE_RATE = 16_000
"""Sample rate the features are computed at; other rates are resampled to it."""

FRAME_RATE = 100.0
"""Feature frames per second (10 ms shift)."""


def fbank(wave: np.ndarray | torch.Tensor, sample_rate: int, num_mel_bins: int = 80) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank of a mono waveform.

    ``wave`` is a 1-D float signal in [-1, 1] at ``sample_rate``; it is resampled to 16 kHz
    when needed. Frames are 25 ms long with a 10 ms shift, without dither, so the result is
    deterministic. A clip of n samples at 16 kHz gives ``1 + (n - 400) // 160`` frames
    (none when shorter than 25 ms). Returns a float32 tensor [frames, num_mel_bins] on the
    device of ``wave``.
    """
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"fbank expects a 1-D mono waveform, got shape {tuple(x.shape)}")
    if sample_rate != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, sample_rate, SAMPLE_RATE)
    if x.numel() < SAMPLE_RATE * 25 // 1000:  # shorter than one 25 ms frame
        return torch.zeros(0, num_mel_bins, dtype=torch.float32, device=x.device)
    return torchaudio.compliance.kaldi.fbank(
        x.unsqueeze(0),
        num_mel_bins=num_mel_bins,
        frame_length=25.0,
        frame_shift=10.0,
        dither=0.0,
        sample_frequency=SAMPLE_RATE,
    )
