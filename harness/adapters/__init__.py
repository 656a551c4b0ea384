"""Dataset adapters: the registry that task files name in ``adapter:``.

Each adapter reads one dataset's official layout under a root folder the user gives
(``args.root``) and yields one record per clip; the dataset stage turns the records into
a Lhotse CutSet that the embed and probe stages read exactly like the mini suite's.
Each adapter declares itself in its file (``COMPONENT = Component(kind="adapter", ...)``,
:mod:`harness.registry`); the registry reads the declarations without importing them, so
an adapter is imported only when a task names it.

    adapter        dataset                                   module
    minisuite      the built-in generated mini suite         harness.adapters.minisuite
    generic        any CSV / JSONL of path, label(s), split   harness.adapters.generic
    esc50          ESC-50 (5 folds)                          harness.adapters.esc50
    urbansound8k   UrbanSound8K (10 folds)                   harness.adapters.urbansound8k
    fsd50k         FSD50K (multi-label)                      harness.adapters.fsd50k
    vggsound       VGGSound                                  harness.adapters.vggsound
    voxceleb1/2    VoxCeleb1 / VoxCeleb2 speaker ID          harness.adapters.voxceleb
    cremad         CREMA-D emotion                           harness.adapters.cremad
    mtat           MagnaTagATune top-50 tags                 harness.adapters.mtat
    nsynth         NSynth instrument family                  harness.adapters.nsynth
    audiocaps      AudioCaps (retrieval, captions)           harness.adapters.audiocaps
    clotho         Clotho (retrieval, captions)              harness.adapters.clotho
    musiccaps      MusicCaps (retrieval, captions)           harness.adapters.musiccaps

See docs/tasks.md for each layout.
"""

from __future__ import annotations

import functools
from typing import Any

from harness.registry import module_version, registry

def names() -> list[str]:
    """The registered adapters (every ``Component(kind="adapter")`` declared in this folder)."""
    return registry("adapter").names()


@functools.lru_cache(maxsize=None)
def get(name: str):
    """The adapter registered as ``name`` (an instance of :class:`harness.adapters.base.Adapter`)."""
    return registry("adapter").get(name).load()()


def version(name: str) -> str:
    """The adapter's version: the shared base's, then its own declared one."""
    return f"{module_version('harness.adapters.base')}.{registry('adapter').get(name).version}"


def node_config(kind: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The dataset node's config and component version for a (validated) adapter + args."""
    if kind == "minisuite":  # the built-in suite keeps its historical key
        from harness import components

        return ({"kind": kind, "seed": int(args.get("seed", 0)), "scale": float(args.get("scale", 1.0))},
                components.minisuite_version())
    adapter = get(kind)
    return {"kind": kind, "args": args, "fingerprint": adapter.fingerprint(args)}, version(kind)
