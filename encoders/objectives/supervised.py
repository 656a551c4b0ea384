"""Supervised baseline: MTC on a source's own class labels (the AudioSet-style baseline,
e.g. the 527 AudioSet classes) instead of a tag system."""

from __future__ import annotations

from typing import Any

from torch import nn

from encoders.objectives.mtc import MTC
from encoders.objectives.supervision import Supervision

VERSION = "1"


class Supervised(MTC):
    needs = "labels"
    VERSION = VERSION

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, **options: Any) -> tuple[nn.Module, dict]:
        targets = sup.require("label_targets", "supervised")
        return cls(encoder_dim, num_tags=targets.shape[1], **options), {"targets": targets}
