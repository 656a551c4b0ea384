"""Reading line-delimited JSON manifests: Lhotse CutSets and ``.jsonl`` files.

A leaf module (standard library, plus :mod:`harness.errors` when a file is malformed), so
that the probes, the figures and the sources read manifests without importing a stage
module. :mod:`harness.stages.manifests` re-exports both readers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

__all__ = ["iter_cut_dicts", "iter_json_objects"]


def iter_cut_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    """The cuts of a ``.jsonl(.gz)`` CutSet as plain dicts (fast: no audio, no lhotse import)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def iter_json_objects(path: str | Path, expected: str, error: type[Exception] | None = None
                      ) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file.

    A line that is not JSON, or not a JSON object, and an unreadable file raise ``error``
    (default :class:`~harness.errors.HarnessError`) as one line: ``FILE:LINE: what is wrong;
    expected <expected>``.
    """
    from harness.errors import HarnessError

    error = error or HarnessError
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{lineno}: not JSON ({e.msg}); expected {expected}") from None
                if not isinstance(obj, dict):
                    raise error(f"{path}:{lineno}: not a JSON object; expected {expected}")
                yield lineno, obj
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise error(f"{path}: unreadable ({e}); expected {expected}") from None
