"""The shared cache folder, ``$HARNESS_HOME`` (default ``~/.cache/harness``).

A leaf module (standard library only), so that code outside the scheduler (the figures,
the assets) can find the cache without importing :mod:`harness.dispatch`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["harness_home"]


def harness_home() -> Path:
    """The shared cache: datasets, assets, text embeddings; ``$HARNESS_HOME`` or ``~/.cache/harness``."""
    return Path(os.environ.get("HARNESS_HOME", Path.home() / ".cache" / "harness")).expanduser()
