"""PAR: parallel decoding of the tag sequence (CapPa, "Image Captioners Are Scalable Vision
Learners Too"; the UTS paper's PAR decodes its tags fully in parallel).

A text decoder cross-attends to the encoder output. For each sample, with probability
``parallel_fraction``:

- **parallel**: every decoder input is the mask token, over the target's true length, with
  no BOS/EOS, under fully bidirectional self-attention (padding still masked); the decoder
  predicts all target tokens at once from the audio alone;
- otherwise **autoregressive**: BOS then the target shifted right (teacher forcing), under
  a causal mask; the target ends with EOS.

A sample's mode comes from its ``batch["draw"]`` (one U[0, 1) number per clip, drawn by
the trainer for the whole step's batch, stratified: :func:`encoders.trainer.batch_draws`),
so it does not depend on how the batch is split, and a batch of B clips decodes about
``parallel_fraction``·B of them in parallel, as the Auden caption model's round(B·p) does.

The target is the clip's canonical tag sequence (in-system tags by tag-system rank, joined
by ", "), tokenised with the MiniLM WordPiece vocabulary or any local tokenizer folder.
The loss is the token cross-entropy (label smoothing from the decoder preset) summed over
the valid positions and divided by the whole batch's number of them
(:func:`~encoders.objectives.losses.token_cross_entropy`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import padding_mask
from encoders.decoder import TextDecoder, decoder_settings
from encoders.objectives.losses import token_cross_entropy
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Num, PathArg, Str

COMPONENT = Component(
    kind="objective",
    target="PAR",
    version="2",
    needs="tags",
    doc="parallel decoding of the tag sequence with a bidirectional decoder mask (UTS PAR, CapPa)",
    options={
        "parallel_fraction": Num(1.0, min=0.0, max=1.0,
                                 doc="share of samples decoded in parallel, the rest autoregressively (UTS PAR: all)"),
        "preset": Str("auden", choices=["auden", "cappa"],
                      doc="decoder sizes, dropout and label smoothing: the Auden caption model's, or CapPa's"),
        "tokenizer": PathArg(None, must=None,
                             doc="a local tokenizer folder, e.g. BART-base's (default: the MiniLM WordPiece vocabulary)"),
        "normalize": Str("none", choices=["none", "lowercase_no_punct"],
                         doc="text normalisation before tokenising (lowercase_no_punct: the Auden data modules')"),
        "max_tokens": Num(None, integer=True, min=1, doc="truncate each target to this many tokens (default 64)"),
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


class PAR(nn.Module):
    text_field = "tag_sequences"
    default_max_tokens = 64
    default_parallel_fraction = 1.0

    def __init__(self, encoder_dim: int, num_embeddings: int, bos_id: int, eos_id: int, mask_id: int,
                 parallel_fraction: float | None = None, preset: str = "auden", label_smoothing: float | None = None,
                 layers: int | None = None, dim: int | None = None, heads: int | None = None,
                 ffn_dim: int | None = None, dropout: float | None = None, max_len: int = 65):
        super().__init__()
        if parallel_fraction is None:
            parallel_fraction = self.default_parallel_fraction
        if not 0.0 <= parallel_fraction <= 1.0:
            raise ValueError(f"parallel_fraction must be in [0, 1], got {parallel_fraction}")
        settings = decoder_settings(preset, encoder_dim, layers=layers, dim=dim, heads=heads, ffn_dim=ffn_dim,
                                    dropout=dropout, label_smoothing=label_smoothing)
        self.parallel_fraction = parallel_fraction
        self.label_smoothing = settings["label_smoothing"]
        self.bos_id, self.eos_id, self.mask_id = bos_id, eos_id, mask_id
        self.decoder = TextDecoder(encoder_dim, num_embeddings, settings["layers"], settings["dim"],
                                   settings["heads"], settings["ffn_dim"], settings["dropout"], max_len)

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, tokenizer: str | None = None,
                         max_tokens: int | None = None, vocab: str = "full", normalize: str = "none",
                         **options: Any) -> tuple[nn.Module, dict[str, Any]]:
        """``vocab: full`` decodes into the whole tokenizer vocabulary (the reference);
        ``vocab: targets`` into only the tokens that occur in the training targets (plus the
        special tokens), renumbered — the same loss over a much smaller softmax, for small
        CPU runs. ``max_tokens`` truncates each target; ``normalize`` rewrites each text
        before tokenising (:func:`encoders.text.normalize_text`)."""
        from encoders.text import TextTokenizer

        if vocab not in ("full", "targets"):
            raise ValueError(f"vocab must be 'full' or 'targets', got {vocab!r}")
        texts = sup.require(cls.text_field, cls.__name__.lower())
        tok = TextTokenizer(tokenizer, normalize=normalize)
        max_tokens = max_tokens or cls.default_max_tokens
        ids = tok.encode(texts, max_tokens)
        specials = (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id)
        num_embeddings = tok.num_embeddings
        if vocab == "targets":
            used = sorted({t for seq in ids for t in seq} - set(specials))
            compact = {t: i for i, t in enumerate([*specials, *used])}
            ids = [[compact[t] for t in seq] for seq in ids]
            specials = (0, 1, 2, 3)
            num_embeddings = len(compact)
        objective = cls(encoder_dim, num_embeddings, *specials[1:], max_len=max_tokens + 1, **options)
        return objective, {"tokens": [torch.tensor(t, dtype=torch.long) for t in ids]}

    def parallel(self, batch: dict[str, Any]) -> Tensor:
        """[B] bool: which samples decode in parallel (an empty target can only be decoded as EOS)."""
        return (batch["draw"] < self.parallel_fraction) & (batch["tokens_lengths"] > 0)

    def normalizers(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The number of target tokens the loss sums over: n per parallel sample, n + 1 (EOS)
        per autoregressive one."""
        return {"tokens": (batch["tokens_lengths"] + (~self.parallel(batch)).long()).sum()}

    def decoder_io(self, tokens: Tensor, lengths: Tensor, parallel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(inputs, targets, lengths) [B, L+1] for target ``tokens`` [B, L] and per-sample modes."""
        b, length = tokens.shape
        pos = torch.arange(length + 1, device=tokens.device)[None]
        padded = F.pad(tokens, (0, 1))  # [B, L+1]
        ar_in = F.pad(tokens, (1, 0), value=self.bos_id)  # BOS, t1 .. tn
        ar_tgt = torch.where(pos == lengths[:, None], torch.full_like(padded, self.eos_id), padded)  # t1 .. tn EOS
        par_in = torch.full_like(padded, self.mask_id)
        inputs = torch.where(parallel[:, None], par_in, ar_in)
        targets = torch.where(parallel[:, None], padded, ar_tgt)
        out_lengths = torch.where(parallel, lengths, lengths + 1)
        return inputs, targets, out_lengths

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor,
                totals: dict[str, Tensor] | None = None) -> dict[str, Any]:
        """The token loss over ``totals["tokens"]`` (the whole batch's count; default: this batch's)."""
        tokens, token_lengths = batch["tokens"], batch["tokens_lengths"]
        parallel = self.parallel(batch)
        inputs, targets, in_lengths = self.decoder_io(tokens, token_lengths, parallel)
        logits = self.decoder(inputs, in_lengths, ~parallel, frames, lengths).float()
        valid = padding_mask(in_lengths, inputs.shape[1])
        loss = token_cross_entropy(logits, targets, valid, None if totals is None else totals["tokens"],
                                   self.label_smoothing)
        with torch.no_grad():
            accuracy = (logits[valid].argmax(-1) == targets[valid]).float().mean().item()
        return {"loss": loss, "token_accuracy": accuracy, "parallel_share": parallel.float().mean().item()}
