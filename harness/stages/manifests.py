"""Reading the Lhotse CutSet manifests that stages pass to one another.

The readers live in the leaf module :mod:`harness.manifest_io` (for code outside the
stages: probes, figures, sources) and are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.manifest_io import iter_cut_dicts, iter_json_objects

__all__ = ["iter_cut_dicts", "iter_json_objects", "write_jsonl", "read_jsonl"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from harness.store import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
