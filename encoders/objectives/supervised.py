"""Supervised baseline: MTC on a source's own class labels (the AudioSet-style baseline,
e.g. the 527 AudioSet classes) instead of a tag system."""

from __future__ import annotations

from typing import Any

from torch import nn

from encoders.objectives.mtc import MTC
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Num, Str

COMPONENT = Component(
    kind="objective",
    target="Supervised",
    version="1",
    needs="labels",
    doc="supervised classification on the source's class labels (MTC's head and loss)",
    options={
        "dropout": Num(0.1, min=0.0, max=1.0, doc="dropout on the frames before the linear layer"),
        "reduction": Str("mean", choices=["mean", "sum"],
                         doc="BCE averaged over clips and classes (mean), or summed over classes and averaged over "
                             "clips (sum: the Auden tagger's sum over classes)"),
    },
)


class Supervised(MTC):
    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, **options: Any) -> tuple[nn.Module, dict]:
        targets = sup.require("label_targets", "supervised")
        return cls(encoder_dim, num_tags=targets.shape[1], **options), {"targets": targets}
