"""Encoders trained elsewhere, as arms of a study: one adapter file per kind.

A study names them next to ``random`` (``pretrain.baselines``)::

    baselines:
      - random
      - {name: hf, path: /models/whisper-base}                             # hf.py
      - {name: hear, module: my_package.hear_api, weights: /models/m.pt}    # hear.py
      - {name: checkpoint, encoder: zipformer, size: m, path: /models/uts.pt}  # checkpoint.py

Each file here declares ``COMPONENT = Component(kind="external", target="load", ...)``
(found by :mod:`harness.registry` from the file, so a new kind is one new file) with its
option schema, and defines, at module level:

- ``check(options) -> list[(key, message)]``: plan-time problems, without torch (a folder
  without its config, a module without the HEAR functions, a layer out of range). Paths
  arrive resolved; ``layer`` is the arm's own or the study's ``probes.layer``.
- ``describe(options) -> {"label", "encoder"}``: the arm's default name in tables (when the
  study gives no ``label``) and its ``encoder`` coordinate, without torch.
- ``content(options) -> [path, ...]``: the files and folders whose bytes key the arm
  (weights, config, a module's source): editing one re-keys the arm and re-embeds it.
- ``load(options) -> Encoder`` (in the job): an :class:`encoders.base.Encoder`; for
  ``meta["input"] == "waveform"`` it takes ``[B, samples]`` mono audio at its
  ``sample_rate`` attribute instead of 80-bin fbank.
- optionally ``prepare(options, workdir, log) -> dict``: run once by the ``external``
  stage; ``checkpoint.py`` converts released weights into a harness ``encoder.pt`` there.

``meta``: ``input`` (``"waveform"`` or ``"fbank"``) and ``layers`` (whether the ``layer``
option picks a hidden state). See docs/encoders.md.

This package imports no torch at module level: the planner imports the adapter files to
run their ``check``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["adapter_module", "load_external", "with_defaults"]


def adapter_module(name: str):
    """The module of the external adapter ``name`` (registered in :mod:`harness.registry`)."""
    from harness.registry import get

    return importlib.import_module(get("external", name).module)


def with_defaults(component, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every declared default of ``component`` filled in (the study's
    resolved config keeps only what the user wrote)."""
    from harness.schema import MISSING

    out = {key: node.default for key, node in (component.options or {}).items() if node.default is not MISSING}
    out.update(options)
    return out


def load_external(name: str, options: dict[str, Any]):
    """Build the encoder of an external arm (in the job: imports torch and the model code)."""
    return adapter_module(name).load(options)
