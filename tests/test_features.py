"""The encoder input: ``encoders.features.fbank`` equals the authors' Lhotse
``Fbank(FbankConfig(num_mel_bins=80))`` in frame count, and in values to 1e-3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from lhotse import Fbank, FbankConfig

from encoders.features import FEATURE_VERSION, SAMPLE_RATE, fbank, num_frames
from harness import components

LHOTSE = Fbank(FbankConfig(num_mel_bins=80))
TOLERANCE = 1e-3


def _signal(kind: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    return {
        "noise": rng.uniform(-0.5, 0.5, n),
        "chirp": 0.4 * np.sin(2 * np.pi * (100 + 3000 * t) * t),  # sweeps up to the 7.6 kHz edge
        "quiet": 1e-5 * rng.standard_normal(n),  # energies below the log floor in some bins
        "silence": np.zeros(n),
        "dc": 0.3 + 0.01 * rng.standard_normal(n),  # a DC offset, removed per frame
        "clipped": np.clip(3 * rng.standard_normal(n), -1, 1),
    }[kind].astype(np.float32)


KINDS = ["noise", "chirp", "quiet", "silence", "dc", "clipped"]
LENGTHS = [200, 239, 240, 241, 399, 400, 401, 559, 560, 16000, 32000, 32079, 32080, 32081, 48123, 160000]
"""Clips from 12.5 ms (below that Lhotse reads past its buffer) to 10 s, around the frame-count steps."""


@pytest.mark.parametrize("kind", KINDS)
def test_equals_lhotse_fbank(kind: str) -> None:
    worst = 0.0
    for n in LENGTHS:
        x = _signal(kind, n, seed=n)
        ours = fbank(x, SAMPLE_RATE)
        reference = torch.from_numpy(LHOTSE.extract(x, SAMPLE_RATE))
        assert ours.shape == reference.shape == (num_frames(n), 80), (n, ours.shape, reference.shape)
        assert ours.dtype == torch.float32
        worst = max(worst, (ours - reference).abs().max().item())
    assert worst <= TOLERANCE, worst


def test_frame_count_is_lhotses() -> None:
    """(n + 80) // 160 frames: 2 s gives 200 (torchaudio's defaults give 198)."""
    assert num_frames(32000) == 200 and fbank(np.zeros(32000, np.float32), SAMPLE_RATE).shape == (200, 80)
    from lhotse.utils import compute_num_frames_from_samples

    for n in [80, 81, 159, 239, 240, 241, 399, 400, 16000, 160079, 160080]:
        assert num_frames(n) == compute_num_frames_from_samples(n, 0.01, SAMPLE_RATE)
        assert fbank(_signal("noise", n), SAMPLE_RATE).shape == (num_frames(n), 80)
    assert fbank(np.zeros(79, np.float32), SAMPLE_RATE).shape == (0, 80)


def test_is_torchaudio_kaldi_fbank_with_lhotses_settings() -> None:
    """From one window on, it is torchaudio's own snip_edges=False computation, exactly."""
    for n in [400, 401, 32000, 48123]:
        x = torch.from_numpy(_signal("noise", n))
        reference = torchaudio.compliance.kaldi.fbank(
            x[None], num_mel_bins=80, dither=0.0, sample_frequency=16000, snip_edges=False, high_freq=-400.0)
        assert torch.equal(fbank(x, SAMPLE_RATE), reference)


def test_short_clips_mirror_as_kaldi_does() -> None:
    """Below one window (torchaudio refuses those), the ends are mirrored: sample -1 is sample 0,
    sample n is sample n - 1, repeatedly when the clip is shorter than the padding."""

    def kaldi_index(i: int, n: int) -> int:  # Kaldi's ExtractWindow, snip_edges=false
        while i < 0 or i >= n:
            i = -i - 1 if i < 0 else 2 * n - 1 - i
        return i

    for n in [80, 100, 119, 150, 199, 200, 260, 399]:
        x = _signal("noise", n, seed=n)
        frames = num_frames(n)
        start = -(400 - 160) // 2
        padded = np.array([x[kaldi_index(i, n)] for i in range(start, start + (frames - 1) * 160 + 400)])
        reference = torchaudio.compliance.kaldi.fbank(
            torch.from_numpy(padded)[None], num_mel_bins=80, dither=0.0, sample_frequency=16000,
            snip_edges=True, high_freq=-400.0)
        assert torch.equal(fbank(x, SAMPLE_RATE), reference), n


def test_input_types_and_device() -> None:
    x = _signal("noise", 16000)
    feats = fbank(x, SAMPLE_RATE)
    assert torch.equal(fbank(torch.from_numpy(x), SAMPLE_RATE), feats)
    assert torch.equal(fbank(x.astype(np.float64), SAMPLE_RATE), feats)
    assert fbank(torch.from_numpy(x), SAMPLE_RATE).device == torch.device("cpu")
    assert fbank(x, SAMPLE_RATE, num_mel_bins=40).shape == (100, 40)
    with pytest.raises(ValueError, match="1-D"):
        fbank(np.zeros((2, 16000), np.float32), SAMPLE_RATE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the features run on GPU tensors too)")
def test_runs_on_gpu_tensors() -> None:
    x = torch.from_numpy(_signal("chirp", 48123))
    on_gpu = fbank(x.cuda(), SAMPLE_RATE)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), fbank(x, SAMPLE_RATE), atol=TOLERANCE, rtol=0)
    short = torch.from_numpy(_signal("noise", 150))
    torch.testing.assert_close(fbank(short.cuda(), SAMPLE_RATE).cpu(), fbank(short, SAMPLE_RATE), atol=TOLERANCE, rtol=0)


def test_resamples_22050() -> None:
    """A 1 kHz tone at 22.05 kHz gives the features of the same tone at 16 kHz."""
    def tone(sr: int) -> np.ndarray:
        return (0.3 * np.sin(2 * np.pi * 1000.0 * np.arange(2 * sr) / sr)).astype(np.float32)

    resampled, native = fbank(tone(22050), 22050), fbank(tone(16000), 16000)
    assert resampled.shape == native.shape == (200, 80)
    mid = slice(20, -20)  # away from the resampler's edge effects
    assert torch.equal(resampled[mid].argmax(1), native[mid].argmax(1))
    peak = int(native[100].argmax())
    torch.testing.assert_close(resampled[mid, peak], native[mid, peak], atol=0.05, rtol=0)


def test_version_is_the_planners() -> None:
    """The feature version hashed into the pre-training and embedding keys is this module's."""
    assert components.FEATURES["version"] == FEATURE_VERSION == "2"
    assert components.FEATURES["num_mel_bins"] == 80 and components.FEATURES["sample_rate"] == SAMPLE_RATE
