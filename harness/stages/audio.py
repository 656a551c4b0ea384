"""Audio → features for a manifest, cached by content in ``$HARNESS_HOME/features``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.store import digest, file_digest


def load_features(manifest: Path, features: dict[str, Any], cache_dir: Path, progress: bool = False,
                  log=print) -> tuple[list[str], list[Any]]:
    """(cut ids, [frames, mel] float32 tensors) for every cut of a manifest.

    Keyed by the manifest's sha256 and the feature settings, so every job and every study
    that needs the same features computes them once.
    """
    import torch

    key = digest({"manifest": file_digest(manifest), "features": features})
    path = cache_dir / "features" / f"{key}.pt"
    if path.is_file():
        blob = torch.load(path, weights_only=True)
        return blob["ids"], blob["features"]
    ids, feats = compute_features(manifest, features, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(feats)}")
    torch.save({"ids": ids, "features": feats}, tmp)
    tmp.replace(path)
    log(f"computed features for {len(ids)} clips -> {path}")
    return ids, feats


def compute_features(manifest: Path, features: dict[str, Any], progress: bool = False) -> tuple[list[str], list[Any]]:
    from lhotse import CutSet

    from encoders.features import extract

    cuts = CutSet.from_file(manifest)
    ids, feats = [], []
    iterator = _progress(cuts, "features", progress)
    for cut in iterator:
        audio = cut.load_audio()  # [channels, samples]
        wave = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
        feats.append(extract(wave, int(cut.sampling_rate), features))
        ids.append(cut.id)
    return ids, feats


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description)
