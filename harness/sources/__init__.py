"""Pre-training data sources: released corpora read into Lhotse CutSets with uniform
supervision fields.

Every reader returns ``(cuts, report)``: a ``lhotse.CutSet`` whose cuts carry, in
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

Readers are declared in their own files and resolved lazily (:mod:`harness.registry`), so
importing this package imports neither lhotse nor torch. See docs/sources.md.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.registry import registry
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


__all__ = ["SOURCE_VERSION", "source_names", "UNIFORM_FIELDS", "SourceReport", "read_source", "reader", "youtube_id"]
