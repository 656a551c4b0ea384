"""Hybrid captioning (CapPa's recipe, as the UTS and CaptionStew papers train it): the PAR
decoder over the clip's caption instead of its tag sequence, a ``parallel_fraction`` of the
samples decoded in parallel (all-mask inputs, bidirectional) and the rest autoregressively
(teacher forcing from BOS, target ending with EOS). ``parallel_fraction: 0`` is plain
autoregressive captioning, as the Auden caption recipes' ``parallel_decoding_prob: 0.0``."""

from __future__ import annotations

from encoders.objectives.par import PAR
from harness.registry import Component
from harness.schema import Num, PathArg, Str

COMPONENT = Component(
    kind="objective",
    target="Captioning",
    version="2",
    needs="captions",
    doc="hybrid parallel/autoregressive captioning with a text decoder (CaptionStew, UTS comparison)",
    options={
        "parallel_fraction": Num(0.75, min=0.0, max=1.0,
                                 doc="share of samples decoded in parallel, the rest autoregressively (0: plain AR)"),
        "preset": Str("auden", choices=["auden", "cappa"],
                      doc="decoder sizes, dropout and label smoothing: the Auden caption model's, or CapPa's"),
        "tokenizer": PathArg(None, must=None,
                             doc="a local tokenizer folder, e.g. BART-base's (default: the MiniLM WordPiece vocabulary)"),
        "normalize": Str("none", choices=["none", "lowercase_no_punct"],
                         doc="caption normalisation before tokenising (lowercase_no_punct: the Auden data modules')"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens (default 128)"),
        "vocab": Str("full", choices=["full", "targets"],
                     doc="full: the tokenizer's vocabulary; targets: only tokens of the training targets"),
        "label_smoothing": Num(None, min=0.0, max=1.0, doc="label smoothing of the token cross-entropy (default: the preset's)"),
        "layers": Num(None, integer=True, min=1, doc="decoder layers (default: the preset's)"),
        "dim": Num(None, integer=True, min=1, doc="decoder width (default: the preset's)"),
        "heads": Num(None, integer=True, min=1, doc="decoder attention heads (default: the preset's)"),
        "ffn_dim": Num(None, integer=True, min=1, doc="decoder feed-forward width (default: the preset's)"),
        "dropout": Num(None, min=0.0, max=1.0, doc="decoder dropout (default: the preset's)"),
    },
)


class Captioning(PAR):
    text_field = "captions"
    default_max_tokens = 128
    default_parallel_fraction = 0.75
