"""Hybrid captioning (CapPa's recipe, as the UTS and CaptionStew papers train it): the PAR
decoder over the clip's caption instead of its tag sequence, a ``parallel_fraction`` of the
samples decoded in parallel (all-mask inputs, bidirectional) and the rest autoregressively
(teacher forcing from BOS, target ending with EOS). ``parallel_fraction: 0`` is plain
autoregressive captioning, as the Auden caption recipes' ``parallel_decoding_prob: 0.0``."""

from __future__ import annotations

from encoders.objectives.par import PAR
from harness.registry import Component
from harness.schema import Num

COMPONENT = Component(
    kind="objective",
    target="Captioning",
    version="2",
    needs="captions",
    doc="hybrid parallel/autoregressive captioning with a text decoder (CaptionStew, UTS comparison)",
    extends="par",  # the decoder options; these override
    options={
        "parallel_fraction": Num(0.75, min=0.0, max=1.0,
                                 doc="share of samples decoded in parallel, the rest autoregressively (0: plain AR)"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens (default 128)"),
    },
)


class Captioning(PAR):
    text_field = "captions"
    default_max_tokens = 128
    default_parallel_fraction = 0.75
