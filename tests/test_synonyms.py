"""Synonym merging by sentence-embedding similarity (the optional step beyond the paper)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.tagging.synonyms import greedy_merge, merge_synonyms


def reference_merge(vectors: np.ndarray, threshold: float) -> list[int]:
    """The rule written out pair by pair: the most similar earlier kept row, if similar enough."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    parent: list[int] = []
    for i in range(len(unit)):
        best, best_sim = i, -2.0
        for j in range(i):
            sim = float(unit[i] @ unit[j])
            if parent[j] == j and sim >= threshold and sim > best_sim:
                best, best_sim = j, sim
        parent.append(best)
    return parent


def test_hand_made_example():
    angle = np.deg2rad
    vectors = np.array([[1, 0], [np.cos(angle(15)), np.sin(angle(15))],  # 1 ~ 0 (cos .966)
                        [0, 1], [np.cos(angle(28)), np.sin(angle(28))]])  # 3 ~ 1 (cos .978), not ~ 0 (.883)
    assert greedy_merge(vectors, 0.95).tolist() == [0, 0, 2, 3]  # 3 cannot join 1: 1 was merged (no chains)
    assert greedy_merge(vectors, 0.85).tolist() == [0, 0, 2, 0]
    assert greedy_merge(vectors, 0.999).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("block", [1, 7, 4096])
def test_blocked_computation_matches_the_pairwise_rule(block):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 16))
    vectors = np.concatenate([centres + 0.25 * rng.normal(size=centres.shape) for _ in range(4)])
    rng.shuffle(vectors)
    expected = reference_merge(vectors, 0.9)
    assert greedy_merge(vectors, 0.9, block=block).tolist() == expected
    assert sum(p != i for i, p in enumerate(expected)) > 5  # the example does merge things


def test_merges_go_to_the_more_frequent_tag_and_clip_lists_stay_unique():
    space = {"car": [1.0, 0.0], "automobile": [0.99, 0.1], "dog": [0.0, 1.0], "street": [0.6, -0.8]}
    clips = [["car", "street"], ["automobile", "car"], ["car"], ["automobile", "dog"], ["dog"]]
    merged, mapping, similarity = merge_synonyms(clips, 0.95, embed=lambda tags: np.array([space[t] for t in tags]))
    assert mapping == {"automobile": "car"}
    assert similarity["automobile"] == pytest.approx(0.99 / np.hypot(0.99, 0.1), abs=1e-6)
    assert merged == [["car", "street"], ["car"], ["car"], ["car", "dog"], ["dog"]]
    # With "automobile" the more frequent word, the merge goes the other way.
    clips = [["automobile"], ["automobile"], ["car"]]
    _, mapping, _ = merge_synonyms(clips, 0.95, embed=lambda tags: np.array([space[t] for t in tags]))
    assert mapping == {"car": "automobile"}


@pytest.fixture(scope="module")
def minilm():
    from harness.tagging.synonyms import sentence_embedder

    return sentence_embedder()


def test_minilm_merges_synonyms_but_not_opposites(minilm):
    clips = [["car", "man"]] * 5 + [["automobile", "woman"]] * 2 + [["television"]] * 3 + [["tv"]]
    _, mapping, _ = merge_synonyms(clips, 0.85, embed=minilm)
    assert mapping.get("automobile") == "car" and mapping.get("tv") == "television"
    assert "woman" not in mapping and "man" not in mapping


def test_cli_build_with_merging(tmp_path):
    tags = tmp_path / "tags.jsonl"
    rows = [["car", "street"]] * 4 + [["automobile", "street"]] * 3 + [["dog"]] * 2 + [["tv"], ["television"]]
    tags.write_text("".join(json.dumps({"id": str(i), "tags": t}) + "\n" for i, t in enumerate(rows)))
    out = tmp_path / "uts"
    proc = subprocess.run([sys.executable, "-m", "harness", "tags", "build", "--tags", str(tags), "--sizes", "3",
                           "--out", str(out), "--merge-synonyms", "0.85"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "label_3.json").read_text()) == {"0": "car", "1": "street", "2": "dog"}
    merges = (out / "merges.csv").read_text().splitlines()
    assert merges[0] == "merged,kept,similarity,df"
    assert {line.split(",")[0]: line.split(",")[1] for line in merges[1:]} == {"automobile": "car",
                                                                              "tv": "television"}
    bad = subprocess.run([sys.executable, "-m", "harness", "tags", "build", "--tags", str(tags), "--out", str(out),
                          "--merge-synonyms", "1.5"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--merge-synonyms" in bad.stderr and "Traceback" not in bad.stderr
