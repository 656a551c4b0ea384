"""Audio encoders, resolved lazily by name from their declarations (:mod:`harness.registry`).

An encoder is one file in this folder that declares ``COMPONENT = Component(kind="encoder",
...)``; listing the encoders reads those declarations and imports no model code.
``build_encoder`` is deterministic under ``torch.manual_seed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.registry import registry

if TYPE_CHECKING:
    from encoders.base import Encoder


def encoder_names() -> list[str]:
    """The registered encoders (the zipformer one needs the optional ``zipformer`` package)."""
    return registry("encoder").names()


def build_encoder(name: str, **config: Any) -> Encoder:
    """Build the encoder registered as ``name`` with keyword ``config``."""
    return registry("encoder").get(name).load()(**config)


def encoder_version(name: str) -> str:
    """The declared version of encoder ``name``."""
    return registry("encoder").get(name).version
