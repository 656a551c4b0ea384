"""Store: atomic writes, completion records, locks."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time

import pytest

from harness.store import RECORD, Store, atomic_write_json, atomic_write_text, digest, file_digest, publish_dir


def test_digest_is_order_independent_and_content_sensitive():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest({})) == 16


def test_file_digest_equals_hashlib(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    assert (tmp_path / "a.txt").read_text() == "two" and json.loads((tmp_path / "b.json").read_text()) == {"x": 1}


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.txt", {1j: 1})  # JSON cannot encode complex keys
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_commit_publishes_work_folder_with_record(tmp_path):
    store = Store(tmp_path)
    work = store.work_path("stage", "k1")
    work.mkdir(parents=True)
    (work / "out.txt").write_text("payload")
    assert not store.is_done("stage", "k1")
    store.commit("stage", "k1", {"ok": 1})
    assert store.is_done("stage", "k1") and store.record("stage", "k1") == {"ok": 1}
    assert (store.path("stage", "k1") / "out.txt").read_text() == "payload"
    assert not work.exists()


def test_a_folder_without_record_is_not_done(tmp_path):
    store = Store(tmp_path)
    store.path("stage", "k").mkdir(parents=True)
    assert not store.is_done("stage", "k")
    assert not (store.path("stage", "k") / RECORD).exists()


def _hold_lock(root, seconds, started):
    with Store(root).lock("s", "k"):
        started.set()
        time.sleep(seconds)


def test_lock_serialises_processes(tmp_path):
    started = mp.Event()
    proc = mp.Process(target=_hold_lock, args=(str(tmp_path), 1.0, started))
    proc.start()
    assert started.wait(30)
    t0 = time.time()
    with Store(tmp_path).lock("s", "k"):
        waited = time.time() - t0
    proc.join()
    assert waited > 0.5


def _complete(path):
    return (path / "done").is_file()


def test_publish_dir_renames_a_finished_folder_into_place(tmp_path):
    target = tmp_path / "cache" / "key"
    with publish_dir(target, complete=_complete) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".key.tmp-") and not target.exists()
        (tmp / "done").write_text("ours")
    assert (target / "done").read_text() == "ours"
    assert [p.name for p in target.parent.iterdir()] == ["key"]  # nothing temporary left

    empty = tmp_path / "made-by-caller"
    empty.mkdir()  # an empty folder is replaced
    with publish_dir(empty) as tmp:
        (tmp / "x").write_text("1")
    assert (empty / "x").read_text() == "1"


def test_publish_dir_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "key"
    with pytest.raises(RuntimeError, match="disk full"):
        with publish_dir(target, complete=_complete) as tmp:
            (tmp / "half").write_text("partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_publish_dir_keeps_what_another_job_published_first(tmp_path):
    target = tmp_path / "key"
    with publish_dir(target, complete=_complete) as tmp:
        (tmp / "done").write_text("ours")
        target.mkdir()  # the other job renames first
        (target / "done").write_text("theirs")
    assert (target / "done").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
    # Something incomplete in the way is an error, and our copy is still cleaned up.
    other = tmp_path / "other"
    other.mkdir()
    (other / "stray").write_text("?")
    with pytest.raises(OSError):
        with publish_dir(other, complete=_complete) as tmp:
            (tmp / "done").write_text("ours")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key", "other"]


def test_abandoned_temporary_folders_are_removed(tmp_path):
    """A job killed before its rename leaves a temporary folder; the next publish on the same host
    removes it; a live process's folder, and other hosts' (their pids mean nothing here), stay."""
    import socket
    import subprocess

    host = socket.gethostname().replace("-", "_")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".suite.tmp-{host}-{dead.pid}-abcd").mkdir()
    live = tmp_path / f".suite.tmp-{host}-{os.getpid()}-ef01"
    elsewhere = tmp_path / f".suite.tmp-node7-{dead.pid}-0123"
    live.mkdir(), elsewhere.mkdir()
    with publish_dir(tmp_path / "suite") as tmp:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, tmp.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "suite"])
