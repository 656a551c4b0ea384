"""Content-addressed store: ``<root>/<stage>/<key>/`` with an atomic completion record.

A node's key hashes its resolved config, the keys of its inputs and the version of the
component that runs it. A job builds its output in ``<key>.work/`` and, when finished,
writes the completion record there and renames the folder to ``<key>/`` in one atomic
step: a folder named by its key is always complete. A per-key lock file makes two
processes that run the same node (say, an orphan of a killed run and its rerun) take
turns instead of writing over each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

RECORD = "_done.json"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj: Any, length: int = 16) -> str:
    """A short sha256 of an object's canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The full sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where Linux allows
    (``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    The file ends with the mode a plain ``open(path, "w")`` gives (``0o666`` less the
    umask: 0644 under umask 022), not the 0600 of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def publish_dir(target: str | os.PathLike, complete: Callable[[Path], bool] = Path.is_dir) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``target``, then rename it into place.

    Yields the temporary folder to write into. A job that dies while writing leaves only a
    hidden ``.NAME.tmp-HOST-PID-*`` folder, never a ``target`` that a later job could take
    for complete; the next publish on that host removes those of processes that are gone.
    If another job published ``target`` first (the same content, by construction of the
    callers' content keys) and ``complete(target)`` holds, its copy is kept and ours dropped.
    An empty ``target`` folder (made by a caller) is replaced. On any error the temporary
    folder is removed and the error goes on.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("-", "_")
    _remove_abandoned(target, host)
    tmp = target.parent / f".{target.name}.tmp-{host}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, target)  # onto a missing or empty folder: one atomic step
        except OSError:
            if not complete(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_abandoned(target: Path, host: str) -> None:
    """Delete temporary folders of ``target`` that killed processes of this host left behind."""
    for stale in target.parent.glob(f".{target.name}.tmp-{host}-*"):
        try:
            os.kill(int(stale.name.rsplit("-", 2)[1]), 0)  # still writing: leave it
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


class Store:
    """Folders of completed nodes under one root."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def work_path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.work"

    def is_done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / RECORD).is_file()

    def record(self, stage: str, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.path(stage, key) / RECORD).read_text())
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Exclusive lock on a node; blocks while another process holds it."""
        lock_path = self.root / stage / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def commit(self, stage: str, key: str, record: dict[str, Any]) -> Path:
        """Write the completion record into the work folder, then publish it atomically."""
        work, final = self.work_path(stage, key), self.path(stage, key)
        atomic_write_json(work / RECORD, record)
        if final.exists():  # only possible for a folder left by a foreign tool: replace it
            shutil.rmtree(final)
        os.rename(work, final)
        return final
