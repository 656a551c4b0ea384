"""The built-in mini suite: a small, deterministic, generated audio suite.

A whole study (pre-train an encoder, then probe it frozen on speech, music and
environmental-sound tasks) runs on it on a 2-core CPU in minutes. Everything is
synthesised from pip-installed components, with no network:

- speech: espeak-ng (``espeakng-loader``), 5 languages, many voice variants;
- music: the General MIDI soundfont ``TimGM6mb.sf2`` (``pretty_midi``) rendered by
  ``tinysoundfont``;
- environmental sound: procedural models of rain, engine, siren, footsteps, knock,
  bird, wind and bell (:mod:`harness.minisuite.environment`).

Probe clips are recordings, not clean renders: background noise at a varied SNR, often a
reverberant room and an overlapping unlabelled source (:mod:`harness.minisuite.render`).

Layout of a built suite (``build`` returns the index)::

    out_dir/index.json                 generator_version, seed, scale, pretrain, tasks
    out_dir/pretrain.jsonl.gz          Lhotse CutSet; custom: caption, weak_caption, events, labels, source
    out_dir/tasks/<task>.jsonl.gz      Lhotse CutSet; custom: split (train / valid / test) and label
                                       (multiclass), labels (env_mixture), captions + labels (scene_captions)
    out_dir/audio/<pool|task>/*.wav    16 kHz mono PCM-16, 2-4 s

Manifest paths in ``index.json`` are relative to ``out_dir``; the audio sources inside
the manifests are absolute paths into ``out_dir`` (computed for the final location, the
suite being rendered in a temporary sibling folder and then renamed), so
``CutSet.from_file(...)`` then ``cut.load_audio()`` work from any working directory.
Moving the folder breaks those paths: build again instead.

This module imports nothing heavy; :func:`build` loads the generator on first use.
"""

from __future__ import annotations

from pathlib import Path

from harness.minisuite.spec import GENERATOR_VERSION, TASKS

__all__ = ["GENERATOR_VERSION", "TASKS", "build"]


def build(out_dir: str | Path, seed: int = 0, scale: float = 1.0, progress: bool = True, workers: int = 2) -> dict:
    """Generate the suite into out_dir (atomic: write to a temp sibling dir, then rename; if
    out_dir already complete, return its index). Returns the index dict also written to
    out_dir/index.json.

    ``scale`` multiplies every clip count (the pool has ``round(1200 * scale)`` scenes; each
    task about ``600-1000 * scale`` clips, a multiple of 10 per class, at least 10). The same
    ``seed`` and ``scale`` give byte-identical wav files and manifests, whatever
    ``workers``. An ``out_dir`` holding a suite of another seed, scale or generator
    version, or anything else, raises ``FileExistsError``.
    """
    from harness.minisuite.builder import build as _build

    return _build(out_dir, seed=seed, scale=scale, progress=progress, workers=workers)
