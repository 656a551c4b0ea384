"""CNN14 (BLAT's audio encoder) and its front end, PANNs' 64-bin log-mel at 32 kHz.

The generic encoder contract (shapes, padding invariance, determinism, checkpoints) runs
on CNN14 in tests/test_encoders.py; here: the log-mel against a direct NumPy computation of
the PANNs/librosa definition, CNN14's architecture values, and the front-end switch, which
must leave every other encoder's features (and so every existing cache key) as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import build_encoder, encoder_names
from encoders.features import extract, fbank, panns_logmel
from harness import components
from harness.graph import expand
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent


def _slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's ``filters.mel(htk=False, norm="slaney")``, written from its definition:
    the Slaney mel scale (linear below 1 kHz, logarithmic above), triangles between
    consecutive mel points, each scaled to unit area (2 / bandwidth)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = (fft_freqs - hz[i]) / (hz[i + 1] - hz[i])
        upper = (hz[i + 2] - fft_freqs) / (hz[i + 2] - hz[i + 1])
        weights[i] = np.maximum(0, np.minimum(lower, upper)) * 2.0 / (hz[i + 2] - hz[i])
    return weights


def _reference_logmel(wave: np.ndarray) -> np.ndarray:
    """PANNs' front end in NumPy: reflect-padded (centred) periodic-Hann STFT, n_fft 1024,
    hop 320, power, 64 Slaney mels 50 Hz - 14 kHz, 10·log10(max(x, 1e-10))."""
    n_fft, hop = 1024, 320
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([padded[s : s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ _slaney_mel(32000, n_fft, 64, 50.0, 14000.0).T
    return 10 * np.log10(np.maximum(mel, 1e-10))


def test_panns_logmel_matches_a_direct_computation_of_its_definition() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(32000 * 2) / 32000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = panns_logmel(wave, 32000).numpy()
    reference = _reference_logmel(wave)
    assert ours.shape == reference.shape == (1 + wave.size // 320, 64)
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=0)
    # The harness front-end setting picks it; other rates are resampled to 32 kHz first.
    torch.testing.assert_close(extract(wave, 32000, components.FRONT_ENDS["panns-logmel"]), torch.from_numpy(ours))
    assert panns_logmel(wave[::2].copy(), 16000).shape == (1 + wave.size // 320, 64)


def test_front_end_values_are_blats() -> None:
    """wsntxxn/BLAT models/audio_encoder.py: Cnn14(sample_rate=32000): n_fft = win = 32 ms,
    hop 10 ms, f_min 50, f_max 14000 (sr_to_fmax[32000]), 64 mels."""
    panns = components.FRONT_ENDS["panns-logmel"]
    assert {k: panns[k] for k in ("sample_rate", "n_fft", "hop_length", "f_min", "f_max", "num_mel_bins")} == {
        "sample_rate": 32000, "n_fft": 32 * 32000 // 1000, "hop_length": 10 * 32000 // 1000, "f_min": 50,
        "f_max": 14000, "num_mel_bins": 64}


def test_only_cnn14_changes_front_end_and_existing_keys_stay() -> None:
    assert components.features_for("cnn14") == components.FRONT_ENDS["panns-logmel"]
    for name in set(encoder_names()) - {"cnn14"}:
        assert components.features_for(name) is components.FEATURES
    assert components.FEATURES == {"kind": "kaldi-fbank", "num_mel_bins": 80, "sample_rate": 16000, "version": "2"}
    wave = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    assert torch.equal(extract(wave, 16000, components.FEATURES), fbank(wave, 16000))


def test_quickstart_node_ids_are_those_of_the_fixed_front_end(monkeypatch) -> None:
    """The graph before the front end became selectable used FEATURES for every node."""
    config = load_study(ROOT / "studies" / "quickstart.yaml").config
    now = [n.id for n in expand(config)]
    monkeypatch.setattr(components, "features_for", lambda name: components.FEATURES)
    assert now == [n.id for n in expand(config)]


def test_cnn14_is_blats_architecture() -> None:
    with torch.device("meta"):
        enc = build_encoder("cnn14", size="base")
    assert (enc.dim, enc.frame_rate) == (2048, 100 / 32)
    assert [b.conv1.out_channels for b in enc.blocks] == [64, 128, 256, 512, 1024, 2048]
    assert enc.bn0.num_features == 64 and enc.dropout == 0.2
    # PANNs' Cnn14 has 80,753,615 parameters: these plus fc1 (2048·2048 + 2048) and the
    # AudioSet head (2048·527 + 527), which BLAT's encoder does not use.
    assert sum(p.numel() for p in enc.parameters()) == 80_753_615 - (2048 * 2048 + 2048) - (2048 * 527 + 527)


def test_cnn14_lengths_are_floor_over_32() -> None:
    torch.manual_seed(0)
    enc = build_encoder("cnn14").eval()
    lengths = torch.tensor([31, 32, 63, 64, 200])
    feats = torch.randn(5, 200, 64)
    with torch.no_grad():
        frames, out = enc(feats, lengths)
    assert out.tolist() == [0, 1, 1, 2, 6] and frames.shape == (5, 6, enc.dim)
    assert frames[torch.arange(6)[None, :] >= out[:, None]].abs().max() == 0
    with pytest.raises(ValueError, match="layer"):
        enc(feats, lengths, layer=1)


def test_checkpoint_digest_covers_batchnorm_counters(tmp_path) -> None:
    """CNN14's BatchNorms carry 0-dim counters (num_batches_tracked); the content digest
    reads them, equal weights give equal digests, and another counter another digest."""
    from encoders.checkpoint import checkpoint_digest, save_encoder

    torch.manual_seed(0)
    enc = build_encoder("cnn14")
    save_encoder(tmp_path / "a.pt", enc, "cnn14", {})
    save_encoder(tmp_path / "b.pt", enc, "cnn14", {})
    assert checkpoint_digest(tmp_path / "a.pt") == checkpoint_digest(tmp_path / "b.pt")
    enc.bn0.num_batches_tracked += 1
    save_encoder(tmp_path / "c.pt", enc, "cnn14", {})
    assert checkpoint_digest(tmp_path / "c.pt") != checkpoint_digest(tmp_path / "a.pt")
