"""The objectives' losses as plain functions, to call and to check against a reference.

Every function here is written so that a batch split into parts adds up to the whole
batch's value:

- the per-element losses (:func:`token_cross_entropy`, :func:`multi_label_bce`) are sums
  over the part's elements divided by the *whole* batch's count (``total``), so the parts'
  values, and their gradients, add up to the whole batch's; left out, ``total`` is the
  part's own count and the value is the plain mean;
- the contrastive loss (:func:`info_nce`, :func:`embedding_regularizer`) needs every pair
  at once, so it takes the whole batch's embeddings (the trainer gathers them across
  micro-batches and ranks: :func:`encoders.trainer.accumulate_gradients`).

``tests/test_objectives.py`` checks each against a written-out formula (open_clip's
ClipLoss for :func:`info_nce`); docs/adding-an-objective.md shows how to check a new one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "sum")


def info_nce(audio: Tensor, text: Tensor, scale: Tensor | float, reduction: str = "mean") -> Tensor:
    """Symmetric InfoNCE of N paired embeddings ``audio``, ``text`` [N, D] (row i of each is a pair).

    With logits ``s·A·Tᵀ`` (``scale`` s = 1/temperature, open_clip's ``logit_scale``):
    ``"mean"`` is ½[CE(s·A·Tᵀ, I) + CE(s·T·Aᵀ, I)], each CE a mean over rows (open_clip's
    ClipLoss); ``"sum"`` is Σ_rows CE(s·A·Tᵀ) + Σ_rows CE(s·T·Aᵀ) (the Auden CLAP's InfoNCELoss).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    logits = scale * audio @ text.T
    labels = torch.arange(len(audio), device=audio.device)
    a2t = F.cross_entropy(logits, labels, reduction=reduction)
    t2a = F.cross_entropy(logits.T, labels, reduction=reduction)
    return 0.5 * (a2t + t2a) if reduction == "mean" else a2t + t2a


def embedding_regularizer(embeddings: Tensor) -> Tensor:
    """``mean|x| / ‖x‖_F`` over a batch of embeddings [N, D]: the Auden CLAP's ``embed_reg``
    term, added once per modality."""
    return embeddings.abs().mean() / embeddings.pow(2).sum().sqrt()


def token_cross_entropy(logits: Tensor, targets: Tensor, valid: Tensor, total: Tensor | float | None = None,
                        label_smoothing: float = 0.0) -> Tensor:
    """Token cross-entropy summed over the ``valid`` positions, divided by ``total``.

    ``logits`` [..., V], ``targets`` and ``valid`` (bool) [...]. ``total`` is the number of
    valid tokens in the whole batch (across micro-batches and ranks); by default this
    part's own, which makes it the plain mean over valid tokens.
    """
    summed = F.cross_entropy(logits[valid], targets[valid], label_smoothing=label_smoothing, reduction="sum")
    return summed / (valid.sum() if total is None else total)


def multi_label_bce(logits: Tensor, targets: Tensor, total: Tensor | float | None = None,
                    reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of clip logits [B, K] against multi-hot ``targets`` [B, K].

    ``"mean"`` averages over clips and tags; ``"sum"`` sums over the K tags and averages
    over clips (the Auden tagger sums over tags, and over clips as well). ``total`` is the
    whole batch's number of clips (default: this part's B).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    summed = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    clips = len(logits) if total is None else total
    return summed / (clips * logits.shape[1] if reduction == "mean" else clips)
