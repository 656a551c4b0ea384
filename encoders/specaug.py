"""SpecAugment frequency and time masking over a padded batch, within each clip's length."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from encoders.base import padding_mask


def _band_mask(starts: Tensor, widths: Tensor, size: int) -> Tensor:
    """[B, size] boolean union of the bands [starts[b, j], starts[b, j] + widths[b, j])."""
    pos = torch.arange(size)[None, None, :]
    return ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(dim=1)


class SpecAugment(nn.Module):
    """Frequency and time masks as in SpecAugment (Park et al., 2019), without time warping.

    The policy follows Lhotse's ``SpecAugment``: ``num_freq_masks`` bands of up to
    ``freq_width`` bins, and up to ``num_time_masks`` spans of up to ``time_width`` frames
    whose total is capped at ``max_time_fraction`` of the clip's valid length (the number
    of spans shrinks to ``ceil(cap / time_width)`` and their width to ``cap // spans``, so
    short clips are not wiped out). Widths are uniform in [0, max]; masks lie inside each
    clip's valid frames and are filled with the clip's mean over its valid frames; padding
    is left untouched. Identity in eval mode.

    Randomness comes from torch's global CPU generator, so restoring
    ``torch.get_rng_state()`` replays the same masks.
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        freq_width: int = 27,
        num_time_masks: int = 10,
        time_width: int = 100,
        max_time_fraction: float = 0.15,
    ):
        super().__init__()
        self.num_freq_masks = num_freq_masks
        self.freq_width = freq_width
        self.num_time_masks = num_time_masks
        self.time_width = time_width
        self.max_time_fraction = max_time_fraction

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """feats [B, T, F], lengths [B] -> masked copy of feats (the input is not modified)."""
        if not self.training:
            return feats
        b, t, f = feats.shape
        lengths_cpu = lengths.cpu()
        valid = padding_mask(lengths_cpu, t)

        fw = torch.floor(torch.rand(b, self.num_freq_masks) * (min(self.freq_width, f) + 1)).long()
        fs = torch.floor(torch.rand(b, self.num_freq_masks) * (f - fw + 1)).long()
        freq_mask = _band_mask(fs, fw, f)  # [B, F]

        cap = torch.floor(self.max_time_fraction * lengths_cpu.double()).long()  # total masked frames
        spans = torch.clamp(torch.ceil(cap / self.time_width).long(), max=self.num_time_masks)
        max_width = torch.where(spans > 0, torch.minimum(cap // spans.clamp(min=1), torch.tensor(self.time_width)), 0)
        tw = torch.floor(torch.rand(b, self.num_time_masks) * (max_width[:, None] + 1)).long()
        tw = torch.where(torch.arange(self.num_time_masks)[None, :] < spans[:, None], tw, 0)
        ts = torch.floor(torch.rand(b, self.num_time_masks) * (lengths_cpu[:, None] - tw + 1)).long()
        time_mask = _band_mask(ts, tw, t)  # [B, T]

        mask = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[:, :, None]
        mask = mask.to(feats.device)
        valid = valid.to(feats.device)[..., None]
        mean = (feats * valid).sum(dim=(1, 2)) / (lengths.clamp(min=1) * f)
        return torch.where(mask, mean[:, None, None].to(feats.dtype), feats)
