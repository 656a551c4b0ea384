"""Check every figure a report draws as it is saved (shared by the report tests)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest


@contextlib.contextmanager
def checked_saves() -> Iterator[dict[str, tuple[float, list[str]]]]:
    """While open, every figure saved through ``results.style.save`` (also as imported by
    ``results.plots``) is checked for small or overlapping text first: the yielded dict
    maps each figure's stem to (its width in inches, ``results.style.text_problems``)."""
    from results import plots, style

    problems: dict[str, tuple[float, list[str]]] = {}
    real = style.save

    def checked(fig, stem):
        problems[str(stem)] = (round(float(fig.get_size_inches()[0]), 2), style.text_problems(fig))
        return real(fig, stem)

    mp = pytest.MonkeyPatch()
    mp.setattr(style, "save", checked)
    mp.setattr(plots, "save", checked)
    try:
        yield problems
    finally:
        mp.undo()


def with_problems(problems: dict[str, tuple[float, list[str]]]) -> dict[str, list[str]]:
    """The figures (by stem, so two reports' copies stay apart) that have a text problem, and their problems."""
    return {stem: found for stem, (_, found) in problems.items() if found}
