"""harness/labels.py: every display label of a run or arm comes from one leaf module.

The expected strings are those the four builders gave before they were merged
(``Node.label``, ``graph.init_label``, ``collect._run_label``, ``report._objective_arm``);
the old code is kept below as the reference, and checked against a grid of coordinates.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

from harness import labels

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the old builders, verbatim

def old_run_label(c: dict) -> str:  # harness/collect.py _run_label
    label = c.get("arm") or c.get("objective", "?")
    if c.get("tag_system") not in (None, "-"):
        label += f" {c['tag_system']}"
    if c.get("captions"):
        label += f" [{c['captions']}]"
    if c.get("init"):
        label += f" init={c['init']}"
    if c.get("source") not in (None, "-"):
        label = f"{c['source']}/{label}"
    return f"{label} s{c.get('seed', 0)}"


def old_init_label(c: dict, source: str) -> str:  # harness/graph.py init_label
    label = c.get("arm") or c["objective"]
    if c.get("tag_system") not in (None, "-"):
        label += f" {c['tag_system']}"
    if c.get("captions"):
        label += f" [{c['captions']}]"
    if c.get("source") != source:
        label = f"{c['source']}/{label}"
    return label


def old_node_label(c: dict, stage: str) -> str:  # harness/graph.py Node.label
    parts = [str(c[k]) for k in ("source", "objective", "tag_system") if c.get(k) not in (None, "", "-")]
    if c.get("captions"):
        parts.append(f"[{c['captions']}]")
    if c.get("init"):
        parts.append(f"init={c['init']}")
    if "seed" in c:
        parts.append(f"seed={c['seed']}")
    if "task" in c:
        parts.append(c["task"])
    return " ".join(parts) or stage


def old_objective_arm(c: dict) -> str:  # results/report.py _objective_arm
    name = str(c["objective"])
    captions, init = c.get("captions"), c.get("init")
    if isinstance(captions, str) and captions:
        name += f" [{captions}]"
    if isinstance(init, str) and init:
        name += f" init={init}"
    return name


def coordinate_grid():
    """Coordinates as the graph makes them: with and without each optional part."""
    for source, arm, ts, captions, init, seed, task in itertools.product(
            ["src", "-"], [None, "sup"], ["K=32", "-", None], [None, "weak_caption"], [None, "x", "checkpoint"],
            [0, 3], [None, "mini/env_event"]):
        c = {"source": source, "objective": "mtc", "tag_system": ts, "seed": seed}
        for key, value in (("arm", arm), ("captions", captions), ("init", init), ("task", task)):
            if value is not None:
                c[key] = value
        yield c


# --------------------------------------------------------------------------- the labels


def test_run_and_arm_labels_read_as_before() -> None:
    c = {"source": "src", "objective": "mtc", "tag_system": "K=32", "captions": "weak_caption", "init": "x",
         "seed": 0}
    assert labels.run_label(c) == "src/mtc K=32 [weak_caption] init=x s0"
    assert labels.arm_label(c) == "src/mtc K=32 [weak_caption] init=x"
    assert labels.with_seed(labels.arm_label(c), 0) == labels.run_label(c)
    assert labels.run_label({"source": "-", "objective": "random", "tag_system": "-", "seed": 1}) == "random s1"
    assert labels.arm_label({"source": "mini", "objective": "mtc", "arm": "sup", "tag_system": "K=32"}) \
        == "mini/sup K=32"


def test_init_node_and_objective_labels_read_as_before() -> None:
    c = {"source": "src", "objective": "mtc", "arm": "sup", "tag_system": "K=32", "captions": "weak_caption",
         "seed": 0}
    assert labels.init_label(c, "src") == "sup K=32 [weak_caption]"
    assert labels.init_label(c, "other") == "src/sup K=32 [weak_caption]"
    assert labels.node_label({**c, "task": "mini/env_event"}, "probe") == \
        "src sup K=32 [weak_caption] seed=0 mini/env_event"
    assert labels.node_label({**c, "init": "audioset/sl", "data_size": 400000.0}, "pretrain") == \
        "src sup K=32 [weak_caption] init=audioset/sl N=400000 seed=0"
    assert labels.node_label({"dataset": "minisuite"}, "dataset") == "dataset"
    assert labels.objective_arm_label({"objective": "par", "captions": "weak_caption", "init": None}) \
        == "par [weak_caption]"
    assert labels.objective_arm_label({"objective": "par", "captions": math.nan, "init": "x"}) == "par init=x"
    assert labels.objective_system_label({"objective": "mtc", "tag_system": "K=32"}) == "mtc K=32"
    assert labels.objective_system_label({"objective": "random", "tag_system": "-"}) == "random"
    assert labels.objective_system_label({"objective": "random", "tag_system": math.nan}) == "random"


def test_labels_equal_the_old_builders() -> None:
    grid = list(coordinate_grid())
    assert len(grid) == 288
    for c in grid:
        assert labels.run_label(c) == old_run_label(c), c
        named = {**c, "objective": c["arm"]} if c.get("arm") not in (None, "", "-") else c  # the arm's label wins
        assert labels.node_label(c, "pretrain") == old_node_label(named, "pretrain"), c
        assert labels.objective_arm_label(c) == old_objective_arm(c), c
        for source in ("src", "other"):
            assert labels.init_label(c, source) == old_init_label(c, source), c


def test_missing_cells_are_left_out() -> None:
    """A results row read back from parquet has NaN / None where a coordinate is absent."""
    row = {"source": "src", "objective": "mtc", "tag_system": "K=32", "captions": math.nan, "init": None,
           "arm": math.nan, "seed": 2}
    assert labels.run_label(row) == "src/mtc K=32 s2"
    import pandas as pd

    assert labels.arm_label({**row, "captions": pd.NA, "source": pd.NA}) == "mtc K=32"


def test_graph_builds_its_labels_with_the_labels_module() -> None:
    from harness.graph import Node, init_label

    c = {"source": "src", "objective": "mtc", "arm": "sup", "tag_system": "K=32", "seed": 0}
    node = Node("pretrain", "k", {}, {}, "v", c)
    assert node.label == labels.node_label(c, "pretrain") == "src sup K=32 seed=0"
    assert init_label(node, "other") == labels.init_label(c, "other") == "src/sup K=32"
    assert Node("dataset", "k", {}, {}, "v").label == "dataset"


def test_labels_is_a_leaf_module() -> None:
    """harness/labels.py imports nothing from the project (only the standard library)."""
    tree = ast.parse((ROOT / "harness" / "labels.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "typing"}, imported
