"""Multi-task: L = L_MTC + λ·L_gen — MTC on the tag system plus a generative objective on the
same encoder output: hybrid captioning over the captions (default) or PAR over the tags.

What λ (``weight``) weighs depends on MTC's ``mtc_reduction``: with ``mean`` the MTC term is
a per-tag BCE (about 0.69 at the start, whatever K), with ``sum`` (the Auden tagger's sum
over tags) K times that, while the generative term is always a mean over tokens. Each term
is normalised by the whole batch's count (clips, tokens), so the sum is the same at any
batch layout."""

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
    version="2",
    needs="tags+captions",
    doc="MTC plus a generative objective (captioning or PAR) on one encoder (UTS comparison)",
    extends="par",  # the decoder options of the generative half; these add or override
    options={
        "weight": Num(1.0, min=0.0, doc="λ: weight of the generative loss added to MTC's"),
        "generative": Str("captioning", choices=["captioning", "par"], doc="the generative half"),
        "mtc_reduction": Str("mean", choices=["mean", "sum"],
                             doc="MTC's BCE: mean over clips and tags, or summed over tags (the Auden tagger's)"),
        "parallel_fraction": Num(None, min=0.0, max=1.0,
                                 doc="share of samples decoded in parallel (default: the generative half's)"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens"),
        "dropout": Num(None, min=0.0, max=1.0,
                       doc="dropout of the MTC head and the decoder (default: MTC's 0.1 and the preset's)"),
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
                         generative: str = "captioning", mtc_reduction: str = "mean", dropout: float | None = None,
                         **generative_options: Any) -> tuple[nn.Module, dict[str, Any]]:
        if generative not in GENERATIVE:
            raise ValueError(f"generative must be one of {', '.join(GENERATIVE)}, got {generative!r}")
        mtc_options = {"reduction": mtc_reduction, **({} if dropout is None else {"dropout": dropout})}
        mtc, mtc_targets = MTC.from_supervision(encoder_dim, sup, **mtc_options)
        gen, gen_targets = GENERATIVE[generative].from_supervision(encoder_dim, sup, dropout=dropout,
                                                                   **generative_options)
        return cls(mtc, gen, weight), {**mtc_targets, **gen_targets}

    def normalizers(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Both halves' counts: clips (MTC) and target tokens (the generative half)."""
        return {**self.mtc.normalizers(batch), **self.generative.normalizers(batch)}

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor,
                totals: dict[str, Tensor] | None = None) -> dict[str, Any]:
        mtc = self.mtc(batch, frames, lengths, totals)
        gen = self.generative(batch, frames, lengths, totals)
        loss = mtc.pop("loss") + self.weight * gen.pop("loss")
        return {"loss": loss, **{f"mtc_{k}": v for k, v in mtc.items()}, **{f"gen_{k}": v for k, v in gen.items()}}
