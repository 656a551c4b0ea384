"""Test-wide settings: one torch thread (the CI machine has 2 shared cores), isolated caches."""

from __future__ import annotations

import os

# Before torch is imported anywhere: oversubscribed threads make tiny problems many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
