"""Data readers: one layer for the pre-training corpora and the probe datasets.

Each corpus format is read by one file here, declared with ``COMPONENT(S) =
Component(kind="source" | "adapter", ...)`` (:mod:`harness.registry`); a format that is
both a corpus and a task (AudioCaps, Clotho, a generic CSV) declares both from the same
file and the same parsing code, with one version. All share one clip record, one CSV
reader, one audio index and one way of naming YouTube clips
(:mod:`harness.sources._common`), so leakage exclusion compares ids made by the same code.

**Pre-training sources** (``data.sources[].kind``). Every reader returns ``(cuts, report)``: a ``lhotse.CutSet`` whose cuts carry, in
``cut.custom``, the fields of :data:`UNIFORM_FIELDS`

- ``caption``: the clip's main caption (or None),
- ``captions``: all captions of that kind for the clip (AudioCaps and Clotho have 5),
- ``original_caption``: the corpus's original, weaker text where it has one (UTS, WavCaps),
- ``tags``: a list of tags (UTS ``audio_tag``, FreeSound tags, a generic file's tags),
- ``labels``: a list of class names (AudioSet display names, a generic file's labels),
- ``source``: the source name,

plus a few per-corpus extras (``split``, ``youtube_id``, ``subset``, ...); and a
:class:`SourceReport` counting rows read, clips kept, missing and unreadable audio, and
duplicate rows merged. Missing audio is reported, never raised; a malformed metadata file
is a :class:`~harness.errors.HarnessError` naming the file and what was expected.

**Probe datasets** (a task file's ``adapter:``). An adapter
(:class:`harness.sources._adapter.Adapter`) reads one dataset's official layout under
``args.root`` into clip records with a split or fold and a label, labels or captions;
the dataset stage checks their audio and writes a Lhotse CutSet
(:mod:`harness.sources._build`) that the embed and probe stages read like the mini
suite's. See docs/tasks.md for each layout.

Readers resolve lazily, so importing this package imports neither lhotse nor torch. See
docs/sources.md.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from harness.registry import module_version, registry
from harness.sources._common import UNIFORM_FIELDS, SourceReport, youtube_id

SOURCE_VERSION = "1"  # the pool manifest the dataset stage writes from a reader's clips (and of a mix)


def source_names() -> list[str]:
    """The registered corpus readers: one file each in this folder, declared with
    ``COMPONENT = Component(kind="source", ...)`` (:mod:`harness.registry`)."""
    return registry("source").names()


def reader(name: str) -> Callable[..., tuple[Any, SourceReport]]:
    """The reader function registered under ``name``."""
    return registry("source").get(name).load()


def read_source(name: str, **kwargs: Any) -> tuple[Any, SourceReport]:
    """Read the source registered under ``name`` with the reader's keyword arguments."""
    return reader(name)(**kwargs)


def adapter_names() -> list[str]:
    """The registered probe-dataset adapters (a task file's ``adapter:``)."""
    return registry("adapter").names()


@functools.lru_cache(maxsize=None)
def get_adapter(name: str):
    """The adapter registered as ``name`` (an instance of :class:`~harness.sources._adapter.Adapter`)."""
    return registry("adapter").get(name).load()()


def adapter_version(name: str) -> str:
    """The adapter's version: the shared adapter code's, then its reader's."""
    return f"{module_version('harness.sources._adapter')}.{registry('adapter').get(name).version}"


def node_config(kind: str, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The dataset node's config and component version for a (validated) adapter + args."""
    if kind == "minisuite":  # the built-in suite keeps its historical key
        return ({"kind": kind, "seed": int(args.get("seed", 0)), "scale": float(args.get("scale", 1.0))},
                module_version("harness.minisuite.spec"))
    adapter = get_adapter(kind)
    return {"kind": kind, "args": args, "fingerprint": adapter.fingerprint(args)}, adapter_version(kind)


__all__ = ["adapter_names", "adapter_version", "get_adapter", "node_config", "SOURCE_VERSION", "source_names", "UNIFORM_FIELDS", "SourceReport", "read_source", "reader", "youtube_id"]
