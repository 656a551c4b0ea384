"""Public assets, fetched by URL and checked by sha256.

``fetch(name)`` returns a local path under ``$HARNESS_HOME/assets/``. It looks first in
the folder named by ``HARNESS_MIRROR`` (a local copy of the assets under their file
names, as tests and CI use), then downloads from the canonical URL. Every file is
verified against its sha256 before it is used, and written atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class Asset:
    filename: str
    url: str
    sha256: str
    description: str


ASSETS: dict[str, Asset] = {
    "audioset-classes": Asset(
        "audioset_class_labels_indices.csv",
        "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv",
        "cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429",
        "AudioSet's 527 classes: index, mid, display_name (CC BY-SA 4.0)"),
    "audioset-ontology": Asset(
        "audioset_ontology.json",
        "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json",
        "9c685f4403eecc3ca9be37fd7285cf212feaaea6ff7229d3e7ca89e0d1f2d15d",
        "AudioSet ontology, 632 nodes (CC BY-SA 4.0)"),
    "audiocaps-train": Asset(
        "audiocaps_train_v2.csv",
        "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset2.0/train.csv",
        "9d895d80dd893d2582ef771df69b84326eb7155230892ebccc51ad780c47c7fe",
        "AudioCaps v2 train captions, 49,810 rows (MIT); this digest is the copy in aac-datasets 0.7.0"),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, home: Path | None = None) -> Path:
    """The verified local copy of an asset (fetched once, then cached)."""
    if name not in ASSETS:
        raise HarnessError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    from harness.home import harness_home

    target = (home or harness_home()) / "assets" / asset.filename
    if target.is_file() and sha256_of(target) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{asset.filename}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        mirror = os.environ.get("HARNESS_MIRROR")
        if mirror and (Path(mirror) / asset.filename).is_file():
            source = str(Path(mirror) / asset.filename)
            shutil.copyfile(source, tmp)
        else:
            source = asset.url
            _download(asset.url, tmp, asset.filename)
        digest = sha256_of(tmp)
        if digest != asset.sha256:
            raise HarnessError(f"{source}: sha256 mismatch for asset {name!r}: expected {asset.sha256}, found {digest}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url: str, dest: Path, filename: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError) as exc:
        raise HarnessError(f"{url}: download failed ({exc}); set HARNESS_MIRROR to a folder holding {filename}") from None
