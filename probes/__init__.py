"""How an encoder is measured: frame-level embeddings, probe heads trained as one sweep, metrics.

``probes`` sees an encoder only through the Encoder contract (``encoders/base.py``).

The names below are re-exported lazily: importing ``probes`` (or a light submodule such
as task declarations) does not import torch; the first access to a name does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "extract_embeddings": "probes.embed",
    "save_shards": "probes.embed",
    "load_shards": "probes.embed",
    "mean_pool": "probes.embed",
    "SweepResult": "probes.heads",
    "probe_sweep": "probes.heads",
    "METRICS": "probes.metrics",
    "accuracy": "probes.metrics",
    "macro_average_precision": "probes.metrics",
    "metric_for": "probes.metrics",
    "recall_at_k": "probes.metrics",
    "retrieval_recalls": "probes.language",
    "zero_shot_scores": "probes.language",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
