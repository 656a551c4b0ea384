"""AR captioning: the PAR decoder, always causal (teacher forcing from BOS, target ends with
EOS), over the clip's caption instead of its tag sequence."""

from __future__ import annotations

from typing import Any

from encoders.objectives.par import PAR
from harness.registry import Component
from harness.schema import Num, Str

COMPONENT = Component(
    kind="objective",
    target="Captioning",
    version="1",
    needs="captions",
    doc="autoregressive captioning with a text decoder (CaptionStew, UTS comparison)",
    options={
        "parallel_fraction": Num(0.0, min=0.0, max=0.0, doc="always 0: captioning is autoregressive"),
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


class Captioning(PAR):
    text_field = "captions"
    default_max_tokens = 128

    def __init__(self, encoder_dim: int, num_embeddings: int, bos_id: int, eos_id: int, mask_id: int,
                 **options: Any):
        if options.get("parallel_fraction", 0.0) != 0.0:
            raise ValueError("captioning is autoregressive: parallel_fraction must be 0 (use par for parallel)")
        options["parallel_fraction"] = 0.0
        super().__init__(encoder_dim, num_embeddings, bos_id, eos_id, mask_id, **options)
