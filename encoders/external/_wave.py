"""Helpers of the waveform adapters (hf, hear): a padded batch in, padded frames out."""

from __future__ import annotations

import torch
from torch import Tensor


def clips(waves: Tensor, lengths: Tensor) -> list[Tensor]:
    """The valid samples of each row of a zero-padded ``[B, samples]`` batch (float32)."""
    if waves.ndim != 2:
        raise ValueError(f"a waveform adapter takes [batch, samples] mono audio, got shape {tuple(waves.shape)} "
                         "(is this arm's input fbank?)")
    return [waves[b, : int(n)].float() for b, n in enumerate(lengths.tolist())]


def pad_frames(frames: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[T_i, D]`` tensors as a zero-padded ``[B, max T_i, D]`` batch and its lengths."""
    lengths = torch.tensor([f.shape[0] for f in frames], device=frames[0].device)
    return torch.nn.utils.rnn.pad_sequence(frames, batch_first=True), lengths


def windows(clip: Tensor, size: int | None) -> list[Tensor]:
    """``clip`` cut into consecutive windows of ``size`` samples (the last one shorter);
    the clip itself when ``size`` is None."""
    if not size or clip.shape[0] <= size:
        return [clip]
    return list(torch.split(clip, size))
