"""Audio encoders, resolved lazily by name.

The registry maps a name to a ``"module:object"`` string, so listing the encoders imports no
model code. ``build_encoder`` is deterministic under ``torch.manual_seed``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from encoders.base import Encoder

ENCODERS: dict[str, str] = {
    "transformer": "encoders.transformer:TransformerEncoder",
    "conformer": "encoders.conformer:ConformerEncoder",
    "zipformer": "encoders.zipformer:ZipformerEncoder",  # needs the optional `zipformer` package
}


def resolve(registry: dict[str, str], name: str, kind: str) -> Any:
    """Import and return the object registered under ``name`` (``"module:object"``).

    Raises ValueError naming the known entries when ``name`` is not registered.
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    module, _, obj = registry[name].partition(":")
    return getattr(importlib.import_module(module), obj)


def build_encoder(name: str, **config: Any) -> Encoder:
    """Build the encoder registered as ``name`` with keyword ``config``."""
    return resolve(ENCODERS, name, "encoder")(**config)


def encoder_version(name: str) -> str:
    """The ``VERSION`` string of the module that defines encoder ``name``."""
    cls = resolve(ENCODERS, name, "encoder")
    return importlib.import_module(cls.__module__).VERSION
