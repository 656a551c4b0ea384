"""The Encoder contract: features [B, T, F] plus lengths -> frames [B, T', D] plus lengths."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Encoder(nn.Module):
    """Base class of every audio encoder.

    Subclasses set three attributes in ``__init__`` (and may override :meth:`set_batch_count`):

    - ``dim``: width D of the output frames;
    - ``frame_rate``: output frames per second;
    - ``num_layers``: number of blocks whose outputs ``forward(layer=i)`` can return.

    Frames past a clip's output length are padding: their values carry no meaning, and the
    valid frames must not depend on them (nor on how much padding the batch has).
    """

    dim: int
    frame_rate: float
    num_layers: int

    def forward(self, feats: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
        """Encode a zero-padded batch.

        Args:
            feats: [B, T, F] features, zero-padded past each clip's length.
            lengths: [B] number of valid input frames per clip.
            layer: -1 for the final output (after the final norm); i in [0, num_layers)
                for the output of block i.

        Returns:
            frames [B, T', D] and out_lengths [B], the number of valid output frames.
        """
        raise NotImplementedError

    def set_batch_count(self, step: int) -> None:
        """Tell the encoder which training step comes next (0 for the first batch).

        The trainer calls it before every step's forward. Encoders whose training schedule
        depends on the step (Zipformer's scheduled dropout and layer skipping) follow it;
        the default does nothing.
        """



def size_config(sizes: dict[str, dict[str, Any]], size: str, defaults: dict[str, Any],
                overrides: dict[str, Any]) -> dict[str, Any]:
    """An encoder's settings: preset ``size`` of ``sizes`` with ``defaults``, then the
    study's ``overrides`` (each must name one of those settings)."""
    if size not in sizes:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(sizes)}")
    cfg = {**sizes[size], **defaults}
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(cfg)}")
    cfg.update(overrides)
    return cfg

def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean [B, max_len] mask, True at the valid positions ``t < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
