"""A module with the HEAR 2021 API, as an arm: ``{name: hear, module: my_package.hear_api, weights: /models/m.pt}``.

The module defines ``load_model(model_file_path="")``, ``get_scene_embeddings(audio, model)``
and ``get_timestamp_embeddings(audio, model)``; its model has ``sample_rate``,
``scene_embedding_size`` and ``timestamp_embedding_size`` (https://hearbenchmark.com/hear-api.html).
Clips are decoded at the model's ``sample_rate`` and given to it in groups of equal length
(the API takes a ``[n_sounds, n_samples]`` batch; grouping by length means no padding ever
reaches the model).

- ``embedding: timestamp`` (the default): the timestamp embeddings are the clip's frames,
  for every pooling (attention pooling learns over them; mean and max pool them).
- ``embedding: scene``: the scene embedding is the clip's one frame, so a mean-pool probe
  reads exactly the module's scene embedding.

``pythonpath``: a folder put first on ``sys.path`` to find the module (when it is not
installed). The arm is keyed by the module's source files and the weight file, so editing
either re-embeds it. HEAR modules have no layers: ``probes.layer`` does not apply.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from harness.registry import Component
from harness.schema import PathArg, Str

COMPONENT = Component(
    kind="external",
    target="load",
    version="1",
    doc="a module with the HEAR 2021 API (load_model, get_scene_embeddings, get_timestamp_embeddings)",
    meta={"input": "waveform", "layers": False},
    options={
        "module": Str(pattern=r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*",
                      doc="the importable module (dotted name) that implements the HEAR API"),
        "weights": PathArg(None, must="file", doc="the file given to load_model (default: load_model())"),
        "embedding": Str("timestamp", choices=["timestamp", "scene"],
                         doc="timestamp: frames for every pooling; scene: one frame, the scene embedding"),
        "pythonpath": PathArg(None, must="dir", doc="a folder to find the module in, before sys.path"),
        "label": Str(None, pattern=r"[A-Za-z0-9][A-Za-z0-9_.+-]*", doc="the arm's name (default: the module's name)"),
    },
)

API = ("load_model", "get_scene_embeddings", "get_timestamp_embeddings")


# ------------------------------------------------------------------ plan time (no torch, no import)

def locate(module: str, pythonpath: str | None = None) -> Path | None:
    """The source file of ``module`` without importing it (nor its parent packages): a
    ``.py`` file, or a package's ``__init__.py``; None when it cannot be found."""
    parts = module.split(".")
    folders = [Path(pythonpath)] if pythonpath else []
    here: Path | None = None
    for folder in folders:
        for candidate in (folder / parts[0] / "__init__.py", folder / f"{parts[0]}.py"):
            if candidate.is_file():
                here = candidate
                break
        if here:
            break
    if here is None:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is executed
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        here = Path(spec.origin)
    for part in parts[1:]:
        if here.name != "__init__.py":
            return None  # a plain module has no submodules
        base = here.parent
        here = next((c for c in (base / part / "__init__.py", base / f"{part}.py") if c.is_file()), None)
        if here is None:
            return None
    return here


def defined_names(path: Path) -> tuple[set[str], bool]:
    """The top-level names a module's source defines or imports, and whether it star-imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    star = False
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                star |= alias.name == "*"
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(stmt, ast.Assign):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
    return names, star


def check(options: dict[str, Any]) -> list[tuple[str, str]]:
    module = options["module"]
    path = locate(module, options.get("pythonpath"))
    if path is None:
        where = f" (nor in {options['pythonpath']})" if options.get("pythonpath") else ""
        return [("module", f"no module named {module!r} on the Python path{where}: install it, or name the folder "
                           "that holds it with pythonpath:")]
    try:
        names, star = defined_names(path)
    except (OSError, SyntaxError, ValueError) as exc:
        return [("module", f"{module} ({path}) cannot be read: {exc}")]
    missing = [f for f in API if f not in names]
    if missing and not star:
        return [("module", f"{module} ({path}) does not define {', '.join(missing)}: a HEAR module defines "
                           f"{', '.join(API)} (the HEAR 2021 API)")]
    return []


def describe(options: dict[str, Any]) -> dict[str, str]:
    return {"label": options["module"], "encoder": "hear"}


def content(options: dict[str, Any]) -> list[str]:
    """The module's source (its package's ``.py`` files) and the weight file."""
    path = locate(options["module"], options.get("pythonpath"))
    out: list[str] = []
    if path is not None:
        if path.name == "__init__.py":
            out += [str(p) for p in sorted(path.parent.rglob("*.py")) if "__pycache__" not in p.parts]
        else:
            out.append(str(path))
    if options.get("weights"):
        out.append(options["weights"])
    return out


# ------------------------------------------------------------------ in the job

@contextlib.contextmanager
def _on_path(folder: str | None):
    if not folder:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def load(options: dict[str, Any]):
    """The HEAR module's model behind the Encoder contract (waveform input)."""
    from encoders.external import with_defaults

    options = with_defaults(COMPONENT, options)
    with _on_path(options.get("pythonpath")):
        module = importlib.import_module(options["module"])
    missing = [f for f in API if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"{options['module']} does not define {', '.join(missing)} (the HEAR 2021 API)")
    model = module.load_model(options["weights"]) if options.get("weights") else module.load_model()
    for attr in ("sample_rate", f"{options['embedding']}_embedding_size"):
        if not hasattr(model, attr):
            raise ValueError(f"{options['module']}.load_model() returned a model without {attr} (the HEAR 2021 API)")
    return _encoder_class()(module, model, options["embedding"])


@functools.cache
def _encoder_class():
    """The Encoder class, defined on first use so that planning imports no torch."""
    import torch
    from torch import Tensor, nn

    from encoders.base import Encoder
    from encoders.external._wave import pad_frames

    class HearEncoder(Encoder):
        """``forward(waves [B, samples], lengths, layer)``: timestamp (or scene) embeddings as frames."""

        def __init__(self, module, model, embedding: str):
            super().__init__()
            self.api = module
            if isinstance(model, nn.Module):
                self.model = model  # moved to the device with the wrapper
            else:
                self._model = model
            self.embedding = embedding
            self.sample_rate = int(model.sample_rate)
            self.dim = int(getattr(model, f"{embedding}_embedding_size"))
            self.num_layers = 1
            self.frame_rate = float("nan")  # the module's own timestamps

        @property
        def hear_model(self):
            return self.model if "model" in self._modules else self._model

        def forward(self, waves: Tensor, lengths: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
            if layer not in (-1, 0):
                raise ValueError(f"a HEAR module has no layers; got layer {layer} (use -1)")
            if waves.ndim != 2:
                raise ValueError(f"a HEAR module takes [batch, samples] audio, got shape {tuple(waves.shape)}")
            out: list[Tensor | None] = [None] * waves.shape[0]
            groups: dict[int, list[int]] = {}
            for row, n in enumerate(lengths.tolist()):
                groups.setdefault(int(n), []).append(row)
            for n, rows in groups.items():  # equal lengths: the model never sees padding
                audio = waves[rows, :n].float()
                if self.embedding == "scene":
                    emb = self.api.get_scene_embeddings(audio, self.hear_model)[:, None, :]
                else:
                    emb, _timestamps = self.api.get_timestamp_embeddings(audio, self.hear_model)
                emb = torch.as_tensor(emb).to(waves.device, torch.float32)
                for i, row in enumerate(rows):
                    out[row] = emb[i]
            return pad_frames(out)  # type: ignore[arg-type]

    return HearEncoder
