"""An encoder trained elsewhere, where a pre-training run stands: a local Hugging Face
model folder, a module with the HEAR API, released weights of a harness encoder
(``pretrain.baselines``; the adapters are in ``encoders/external/``, docs/encoders.md).

At plan time (no torch) :func:`plan_external` gives the node's config: the adapter, its
options, the ``layer`` it reads and the content digest of its files (weights, config, a
module's source; :func:`content_digest`), so that an edited weight file re-keys the arm
and everything after it, and an unchanged one never is embedded twice.

In the job, :func:`run` writes ``external.json`` (the reference the embed stage builds the
encoder from) and a record whose outputs stand in for a pre-training run's: ``digest``
(what the embedding cache is keyed by: the adapter, its version, the files' digest and
the options that are not paths, so moving a folder re-embeds nothing), ``input``
(``waveform`` or ``fbank``) and ``layer``. An adapter with a ``prepare`` hook runs it
here: released weights of a harness encoder are loaded, checked key by key and saved as a
harness ``encoder.pt`` (``checkpoint`` and ``digest`` as a pre-training run has them).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

from harness.job import StageContext
from harness.registry import Component, registry
from harness.store import atomic_write_json

COMPONENT = Component(
    kind="stage",
    target="run",
    version="1",
    doc="an encoder trained elsewhere (HF folder, HEAR module, released weights), standing where a pretrain run stands",
    meta={"order": 55},  # after pretrain, before embed
)

REFERENCE = "external.json"
NOT_KEYS = ("name", "label", "layer")  # a baseline entry's keys that are not adapter options of the node


def _adapter(name: str):
    entry = registry("external").get(name)
    return entry, importlib.import_module(entry.module)


def plan_external(entry: dict[str, Any], probe_layer: int) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The config, the adapter's version and the coordinates of the node of one external
    baseline entry (as :func:`harness.study` resolved it: ``name``, options, ``label``)."""
    adapter, module = _adapter(entry["name"])
    options = {k: v for k, v in entry.items() if k not in NOT_KEYS}
    config: dict[str, Any] = {"adapter": entry["name"], "options": options,
                              "content": content_digest(module.content(options))}
    if adapter.meta.get("layers"):
        config["layer"] = entry["layer"] if entry.get("layer") is not None else probe_layer
    coords = {"source": "-", "objective": entry.get("label") or module.describe(options)["label"], "tag_system": "-",
              "encoder": module.describe(options)["encoder"], "external": entry["name"]}
    return config, adapter.version, coords


# ------------------------------------------------------------------ content digests

def content_digest(paths: list[str]) -> str:
    """sha256 over the files of ``paths`` (a folder: every file in it, by relative name;
    a file: its bytes alone, so renaming it keeps the digest)."""
    h = hashlib.sha256()
    for item in paths:
        root = Path(item)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root)))
            for path in files:
                h.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode())
        elif root.is_file():
            h.update(f"\0{file_sha256(root)}\n".encode())
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return h.hexdigest()


def _hidden(rel: Path) -> bool:
    """Caches and hidden files of a model folder (``.cache``, ``.git``, ``__pycache__``) are not its content."""
    return any(part.startswith(".") or part == "__pycache__" for part in rel.parts)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, remembered by its path, size, modification time and
    inode under ``$HARNESS_HOME/digests`` so that planning a study with multi-GB weights
    hashes them once (any change to the file changes its stat, and so hashes it again)."""
    from harness.home import harness_home
    from harness.store import file_digest

    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    memo = harness_home() / "digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == stamp and saved.get("path") == str(path):
            return saved["sha256"]
    except (OSError, ValueError):
        pass
    value = file_digest(path)
    if st.st_size >= 1 << 20:  # small files are hashed faster than a memo is read
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(memo, {"path": str(path), "stamp": stamp, "sha256": value})
        except OSError:
            pass  # a read-only cache: hash again next time
    return value


# ------------------------------------------------------------------ the job

def identity(config: dict[str, Any], version: str) -> str:
    """What keys the arm's embeddings: the adapter, its version, its files' digest and its
    options that are not paths (a folder that moves keeps its embeddings)."""
    from harness.schema import PathArg

    adapter = registry("external").get(config["adapter"])
    kept = {k: v for k, v in config["options"].items() if not isinstance((adapter.options or {}).get(k), PathArg)}
    return hashlib.sha256(json.dumps({"adapter": config["adapter"], "version": version, "content": config["content"],
                                      "options": kept}, sort_keys=True).encode()).hexdigest()


def run(ctx: StageContext) -> dict:
    cfg = ctx.config
    adapter, module = _adapter(cfg["adapter"])
    outputs: dict[str, Any] = {"adapter": cfg["adapter"], "version": adapter.version,
                               "digest": identity(cfg, adapter.version), "input": adapter.meta.get("input", "waveform"),
                               "layer": cfg.get("layer", -1), "reference": REFERENCE}
    prepare = getattr(module, "prepare", None)
    if prepare is not None:  # given the layer too, where the arm reads one (to check it against the model)
        options = {**cfg["options"], **({"layer": cfg["layer"]} if "layer" in cfg else {})}
        outputs.update(prepare(options, ctx.workdir, ctx.log) or {})
    atomic_write_json(ctx.workdir / REFERENCE, {**outputs, "options": cfg["options"], "content": cfg["content"]})
    ctx.log(f"{cfg['adapter']} arm {ctx.coords.get('objective', '')}: content {cfg['content'][:12]}, "
            f"embeddings keyed {outputs['digest'][:12]}")
    return outputs


__all__ = ["plan_external", "content_digest", "file_sha256", "identity", "run"]
