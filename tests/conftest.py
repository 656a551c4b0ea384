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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny problems: on a busy 2-core machine, torch's thread pool makes them ~50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
