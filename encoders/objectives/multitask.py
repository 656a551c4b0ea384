"""Multi-task: L = L_MTC + λ·L_gen — MTC on the tag system plus a generative objective on the
same encoder output: AR captioning over the captions (default) or PAR over the tags."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from encoders.objectives.captioning import Captioning
from encoders.objectives.mtc import MTC
from encoders.objectives.par import PAR
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Num, Str

COMPONENT = Component(
    kind="objective",
    target="MultiTask",
    version="1",
    needs="tags+captions",
    doc="MTC plus a generative objective (captioning or PAR) on one encoder (UTS comparison)",
    options={
        "weight": Num(1.0, min=0.0, doc="weight of the generative loss added to MTC's"),
        "generative": Str("captioning", choices=["captioning", "par"], doc="the generative half"),
        "parallel_fraction": Num(None, min=0.0, max=1.0, doc="par: share of samples decoded in parallel"),
        "tokenizer": Str(None, doc="a local tokenizer folder (default: the MiniLM WordPiece vocabulary)"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens"),
        "vocab": Str("full", choices=["full", "targets"],
                     doc="full: the tokenizer's vocabulary; targets: only tokens of the training targets"),
        "label_smoothing": Num(0.1, min=0.0, max=1.0, doc="label smoothing of the token cross-entropy"),
        "layers": Num(6, integer=True, min=1, doc="decoder layers"),
        "dim": Num(768, integer=True, min=1, doc="decoder width"),
        "heads": Num(8, integer=True, min=1, doc="decoder attention heads"),
        "ffn_dim": Num(3072, integer=True, min=1, doc="decoder feed-forward width"),
        "dropout": Num(0.1, min=0.0, max=1.0, doc="decoder dropout"),
    },
)

GENERATIVE = {"captioning": Captioning, "par": PAR}


class MultiTask(nn.Module):

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
