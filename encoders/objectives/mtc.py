"""MTC: multi-tag classification with a frame-wise linear layer and BCE (the UTS paper's objective)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from encoders.base import padding_mask
from encoders.objectives.losses import multi_label_bce
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Num, Str

COMPONENT = Component(
    kind="objective",
    target="MTC",
    version="1",
    needs="tags",
    doc="multi-tag classification: a frame-wise linear layer, logits averaged over frames, BCE (UTS)",
    options={
        "dropout": Num(0.1, min=0.0, max=1.0, doc="dropout on the frames before the linear layer"),
        "reduction": Str("mean", choices=["mean", "sum"],
                         doc="BCE averaged over clips and tags (mean), or summed over tags and averaged over clips "
                             "(sum: the Auden tagger's sum over tags)"),
    },
)


class MTC(nn.Module):
    """Dropout, then a linear layer on every frame; logits averaged over the valid frames.

    The clip logits are trained with binary cross-entropy against multi-hot targets
    ``batch["targets"]`` [B, K] (:func:`~encoders.objectives.losses.multi_label_bce`):
    averaged over clips and tags (``reduction="mean"``), or summed over the K tags and
    averaged over clips (``"sum"``, K times larger). Either way the clips' denominator is
    the whole batch's clip count.
    """

    def __init__(self, encoder_dim: int, num_tags: int, dropout: float = 0.1, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder_dim, num_tags)
        self.reduction = reduction

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, **options: Any) -> tuple[nn.Module, dict]:
        """The objective for a tag system, and its per-clip targets (multi-hot over the K tags)."""
        targets = sup.require("tag_targets", "mtc")
        return cls(encoder_dim, num_tags=targets.shape[1], **options), {"targets": targets}

    def clip_logits(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """[B, K] mean of the frame logits over each clip's valid frames (0 for empty clips)."""
        logits = self.head(self.dropout(frames)).float()  # [B, T, K]
        valid = padding_mask(lengths, frames.shape[1])[..., None]
        return (logits * valid).sum(dim=1) / lengths.clamp(min=1)[:, None]

    def normalizers(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The number of clips the loss averages over."""
        return {"clips": torch.tensor(len(batch["targets"]), device=batch["targets"].device)}

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor,
                totals: dict[str, Tensor] | None = None) -> dict[str, Any]:
        """Loss (over ``totals["clips"]``, default this batch's) and cheap metrics: mean logit
        of positive and negative tags, and precision@1."""
        logits = self.clip_logits(frames, lengths)
        targets = batch["targets"].to(logits.dtype)
        loss = multi_label_bce(logits, targets, None if totals is None else totals["clips"], self.reduction)
        with torch.no_grad():
            pos = targets > 0.5
            top1 = logits.argmax(dim=1, keepdim=True)
            stats = torch.stack(  # the mean of an empty selection is nan
                [logits[pos].mean(), logits[~pos].mean(), targets.gather(1, top1).mean()]
            ).tolist()
        metrics = dict(zip(("pos_logit", "neg_logit", "precision_at_1"), stats))
        return {"loss": loss, **metrics}
