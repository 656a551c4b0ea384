"""What the harness layer knows about components, without importing torch.

Encoders and objectives are registered in ``encoders`` by ``module:object`` strings; a
component's version is the ``VERSION = "..."`` constant of its module, read from the
source file (no import), so planning a study stays fast. A version goes into the key of
every node the component runs, so bumping it re-runs exactly those nodes.
"""

from __future__ import annotations

import ast
import functools
import importlib.util

from encoders import ENCODERS  # noqa: F401  (re-exported: name -> "module:object")
from encoders.objectives import OBJECTIVES, OBJECTIVE_NEEDS  # noqa: F401

# Feature extraction shared by pre-training and embedding (the paper's input).
FEATURES = {"kind": "kaldi-fbank", "num_mel_bins": 80, "sample_rate": 16000, "version": "1"}



@functools.lru_cache(maxsize=None)
def module_version(module: str) -> str:
    """The ``VERSION`` string constant of a module, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ValueError(f"module {module!r} not found")
    tree = ast.parse(open(spec.origin, encoding="utf-8").read())
    for stmt in tree.body:
        targets = [t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            targets = [stmt.target.id]
        for name in targets:
            if name.endswith("VERSION") and isinstance(stmt.value, ast.Constant):
                return str(stmt.value.value)
    raise ValueError(f"module {module!r} defines no VERSION constant")


def stage_version(stage: str) -> str:
    """The version of a stage's own code (``harness/stages/<stage>.py``)."""
    return module_version(f"harness.stages.{stage}")


def encoder_version(name: str) -> str:
    return module_version(ENCODERS[name].split(":")[0])


def objective_version(name: str) -> str:
    return module_version(OBJECTIVES[name].split(":")[0])


def objective_needs(name: str) -> str:
    """What an objective trains on: 'tags', 'captions', 'labels' or 'none'."""
    return OBJECTIVE_NEEDS[name]


def parser_version(backend: str) -> str:
    from harness.tagging.parsers import PARSER_MODULES

    return "+".join(module_version(m) for m in PARSER_MODULES[backend])


def captioner_version(backend: str) -> str:
    modules = {"manifest": (), "template": ("harness.tagging.captioners",),
               "openai": ("harness.tagging.captioners", "harness.tagging.llm")}[backend]
    return "+".join(module_version(m) for m in modules) or "-"


def tagsystem_version(merge_synonyms: bool = False) -> str:
    version = module_version("harness.tagging.tagsystem")
    return version + "+" + module_version("harness.tagging.synonyms") if merge_synonyms else version


def minisuite_version() -> str:
    return module_version("harness.minisuite.spec")
