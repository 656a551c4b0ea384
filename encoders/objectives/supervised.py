"""Supervised baseline: MTC on a source's own class labels (the AudioSet-style baseline,
e.g. the 527 AudioSet classes) instead of a tag system."""

from __future__ import annotations

from typing import Any

from torch import nn

from encoders.objectives.mtc import MTC
from encoders.objectives.supervision import Supervision
from harness.registry import Component

COMPONENT = Component(
    kind="objective",
    target="Supervised",
    version="1",
    needs="labels",
    doc="supervised classification on the source's class labels (MTC's head and loss)",
    extends="mtc",  # MTC's options: dropout, reduction
)


class Supervised(MTC):
    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, **options: Any) -> tuple[nn.Module, dict]:
        targets = sup.require("label_targets", "supervised")
        return cls(encoder_dim, num_tags=targets.shape[1], **options), {"targets": targets}
