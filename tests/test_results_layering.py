"""The leaf modules that ``results/`` and ``probes/`` read through (labels, the cache folder,
manifest readers), and what importing the results and language modules loads.

tests/test_layering.py checks the import graph from the source; this checks the leaves
themselves and the modules a fresh interpreter actually loads.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = ("harness.dispatch", "harness.graph", "harness.stages", "harness.study", "harness.slurm")
"""Modules that ``results/`` and ``probes/`` must not import."""

LEAVES = {  # leaf modules and the project modules each may import
    "harness/labels.py": set(),
    "harness/home.py": set(),
    "harness/manifest_io.py": {"harness.errors"},
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports by absolute name, at module level or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("package", ["results", "probes"])
def test_results_and_probes_import_no_scheduler_graph_or_stage(package: str) -> None:
    found = {f"{path.relative_to(ROOT)}: {name}" for path in sorted((ROOT / package).rglob("*.py"))
             for name in _imports(path) if _forbidden(name)}
    assert not found, sorted(found)


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_modules_import_nothing_else_from_the_project(leaf: str) -> None:
    project = {n for n in _imports(ROOT / leaf) if n.split(".")[0] in ("harness", "results", "probes", "encoders")}
    assert project <= LEAVES[leaf], sorted(project - LEAVES[leaf])


def test_importing_the_results_and_language_modules_loads_no_forbidden_module() -> None:
    code = ("import json, sys\n"
            "import results.figures, results.plots, results.report, results.stats, results.table, probes.language\n"
            "import harness.home, harness.labels, harness.manifest_io\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = [m for m in json.loads(out.stdout) if _forbidden(m)]
    assert not loaded, loaded


def test_re_exports_are_the_leaf_functions() -> None:
    from harness import dispatch, home, manifest_io
    from harness.stages import manifests

    assert dispatch.harness_home is home.harness_home
    assert manifests.iter_cut_dicts is manifest_io.iter_cut_dicts
    assert manifests.iter_json_objects is manifest_io.iter_json_objects
