"""Dataset adapters: the registry that task files name in ``adapter:``.

Each adapter reads one dataset's official layout under a root folder the user gives
(``args.root``) and yields one record per clip; the dataset stage turns the records into
a Lhotse CutSet that the embed and probe stages read exactly like the mini suite's.
Adapters resolve lazily by ``module:object`` (no import until a task names them), and
an adapter's version is its module's ``VERSION`` constant, read without importing.

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
import importlib
from typing import Any

ADAPTERS: dict[str, str] = {
    "minisuite": "harness.adapters.minisuite:MiniSuite",
    "generic": "harness.adapters.generic:Generic",
    "esc50": "harness.adapters.esc50:ESC50",
    "urbansound8k": "harness.adapters.urbansound8k:UrbanSound8K",
    "fsd50k": "harness.adapters.fsd50k:FSD50K",
    "vggsound": "harness.adapters.vggsound:VGGSound",
    "voxceleb1": "harness.adapters.voxceleb:VoxCeleb1",
    "voxceleb2": "harness.adapters.voxceleb:VoxCeleb2",
    "cremad": "harness.adapters.cremad:CremaD",
    "mtat": "harness.adapters.mtat:MTAT",
    "nsynth": "harness.adapters.nsynth:NSynth",
    "audiocaps": "harness.adapters.audiocaps:AudioCaps",
    "clotho": "harness.adapters.clotho:Clotho",
    "musiccaps": "harness.adapters.musiccaps:MusicCaps",
}


def names() -> list[str]:
    return list(ADAPTERS)


@functools.lru_cache(maxsize=None)
def get(name: str):
    """The adapter registered as ``name`` (an instance of :class:`harness.adapters.base.Adapter`)."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset adapter {name!r}; known: {', '.join(ADAPTERS)}")
    module, obj = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), obj)()


def version(name: str) -> str:
    """The adapter's version: the shared base's and its own module's VERSION constants."""
    from harness.components import module_version

    module = ADAPTERS[name].split(":")[0]
    return f"{module_version('harness.adapters.base')}.{module_version(module)}"


def node_config(kind: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The dataset node's config and component version for a (validated) adapter + args."""
    if kind == "minisuite":  # the built-in suite keeps its historical key
        from harness import components

        return ({"kind": kind, "seed": int(args.get("seed", 0)), "scale": float(args.get("scale", 1.0))},
                components.minisuite_version())
    if kind not in ADAPTERS:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(ADAPTERS)}")
    adapter = get(kind)
    return {"kind": kind, "args": args, "fingerprint": adapter.fingerprint(args)}, version(kind)
