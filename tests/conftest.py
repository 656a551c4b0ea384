"""Test-wide settings: one torch thread (the CI machine has 2 shared cores), isolated caches."""

from __future__ import annotations

import os

# Before torch is imported anywhere: oversubscribed threads make tiny problems many times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def harness_env(tmp_path_factory):
    """Environment for CLI subprocesses: one shared cache for the session (the mini suite is built once)."""
    home = tmp_path_factory.mktemp("harness-home")
    return {**os.environ, "HARNESS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
