"""`harness tags` and `harness assets` on the real AudioCaps captions (through the mirror)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.assets import ASSETS, fetch, sha256_of
from harness.errors import HarnessError
from harness.tagging.tagsystem import read_label_file

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "mirror"
RELEASED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "uts"
needs_mirror = pytest.mark.skipif(not MIRROR.is_dir(), reason="../shared/mirror is not beside the project")


def harness(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture
def env(tmp_path, harness_env):
    return {**harness_env, "HARNESS_HOME": str(tmp_path / "home"), "HARNESS_MIRROR": str(MIRROR)}


@needs_mirror
def test_fetch_from_mirror_verifies_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MIRROR", str(MIRROR))
    path = fetch("audioset-classes", home=tmp_path)
    assert path == tmp_path / "assets" / "audioset_class_labels_indices.csv"
    assert sha256_of(path) == ASSETS["audioset-classes"].sha256
    assert path.read_text().splitlines()[0] == "index,mid,display_name"


def test_fetch_rejects_a_corrupt_copy(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "audioset_class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/x,Tampered\n")
    monkeypatch.setenv("HARNESS_MIRROR", str(mirror))
    with pytest.raises(HarnessError, match="sha256 mismatch"):
        fetch("audioset-classes", home=tmp_path / "home")
    assert not any((tmp_path / "home" / "assets").iterdir())  # nothing half-written left behind


@needs_mirror
def test_parse_build_stats_on_real_audiocaps(tmp_path, env):
    proc = harness("assets", "audiocaps-train", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    captions = Path(proc.stdout.strip())
    tags = tmp_path / "tags.jsonl"
    proc = harness("tags", "parse", "--captions", str(captions), "--parser", "rules", "--out", str(tags),
                   env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in tags.read_text().splitlines()]
    assert len(rows) == 49810 and rows[0]["id"] == "91139"
    assert all(t == t.lower() and " " not in t for r in rows for t in r["tags"])

    out = tmp_path / "uts"
    proc = harness("tags", "build", "--tags", str(tags), "--sizes", "800", "1000", "1500", "2000", "3000",
                   "--out", str(out), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.glob("label_*.json"))
    assert names == ["label_1.5k.json", "label_1k.json", "label_2k.json", "label_3k.json", "label_800.json"]
    small, large = read_label_file(out / "label_800.json"), read_label_file(out / "label_1.5k.json")
    assert len(small) == 800 and len(large) == 1500 and large[:800] == small  # ranked: a prefix of the next
    # same format as the released files: the JSON layout is byte-compatible
    released = (RELEASED / "label_800.json").read_text()
    assert (out / "label_800.json").read_text()[:8] == released[:8] and not released.endswith("\n")
    header = (out / "stats.csv").read_text().splitlines()[:2]
    assert header[0] == "rank,tag,df,score" and header[1].startswith("0,")

    proc = harness("tags", "stats", "--tags", str(tags), "--sizes", "1500", env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "clips 49810" in proc.stdout and "\n1500\t" in proc.stdout


def test_tags_cli_bad_input_is_one_line(tmp_path, env):
    bad = tmp_path / "captions.csv"
    bad.write_text("id,text\n1,a dog barks\n")
    proc = harness("tags", "parse", "--captions", str(bad), "--out", str(tmp_path / "t.jsonl"), env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {bad}: no column 'caption'; columns: id, text"
