"""Multi-task: L = L_MTC + λ·L_gen — MTC on the tag system plus a generative objective on the
same encoder output: AR captioning over the captions (default) or PAR over the tags."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from encoders.objectives.captioning import Captioning
from encoders.objectives.mtc import MTC
from encoders.objectives.par import PAR
from encoders.objectives.supervision import Supervision

VERSION = "1"

GENERATIVE = {"captioning": Captioning, "par": PAR}


class MultiTask(nn.Module):
    needs = "tags+captions"
    VERSION = VERSION

    def __init__(self, mtc: MTC, generative: nn.Module, weight: float = 1.0):
        super().__init__()
        self.mtc = mtc
        self.generative = generative
        self.weight = weight

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, weight: float = 1.0,
                         generative: str = "captioning", dropout: float = 0.1,
                         **generative_options: Any) -> tuple[nn.Module, dict[str, Any]]:
        if generative not in GENERATIVE:
            raise ValueError(f"generative must be one of {', '.join(GENERATIVE)}, got {generative!r}")
        mtc, mtc_targets = MTC.from_supervision(encoder_dim, sup, dropout=dropout)
        gen, gen_targets = GENERATIVE[generative].from_supervision(encoder_dim, sup, **generative_options)
        return cls(mtc, gen, weight), {**mtc_targets, **gen_targets}

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Any]:
        mtc = self.mtc(batch, frames, lengths)
        gen = self.generative(batch, frames, lengths)
        loss = mtc.pop("loss") + self.weight * gen.pop("loss")
        return {"loss": loss, **{f"mtc_{k}": v for k, v in mtc.items()}, **{f"gen_{k}": v for k, v in gen.items()}}
