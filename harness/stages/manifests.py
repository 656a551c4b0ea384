"""Reading the Lhotse CutSet manifests that stages pass to one another."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator


def iter_cut_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    """The cuts of a ``.jsonl(.gz)`` CutSet as plain dicts (fast: no audio, no lhotse import)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from harness.store import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
