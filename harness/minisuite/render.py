"""Render one clip of the suite (a pre-training scene or a probe clip) to a wav file.

:func:`render_job` is what the worker processes run. Every clip is a pure function of
``(seed, stream, index)`` plus its planned label and split, so the output does not depend
on which worker renders it or in which order.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.minisuite import dsp, environment, music, speech
from harness.minisuite.captions import caption_scene
from harness.minisuite.scene import render_scene, sample_scene
from harness.minisuite.spec import PITCH_CLASSES, SENTENCE_BUCKETS, SPEAKERS


@dataclass(frozen=True)
class Job:
    """One clip to render: ``kind`` is "pool" or a task name; ``path`` is relative to the suite root."""

    kind: str
    index: int
    seed: int
    path: str
    label: str | None = None
    split: str | None = None

    @property
    def clip_id(self) -> str:
        return Path(self.path).stem

    def rng(self, purpose: int) -> np.random.Generator:
        """Independent generator for one purpose (0: content, 1: audio, 2: text) of this clip."""
        return np.random.default_rng([self.seed, zlib.crc32(self.kind.encode()), self.index, purpose])


def _one_of(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _speech_clip(rng: np.random.Generator, voice_audio: np.ndarray) -> np.ndarray:
    """Place an utterance in a 2-3 s clip (cropped with a fade if longer)."""
    onset = rng.uniform(0.05, 0.3)
    seconds = float(np.clip(onset + len(voice_audio) / dsp.SR + rng.uniform(0.1, 0.3), 2.0, 3.0))
    out = np.zeros(int(seconds * dsp.SR))
    dsp.add_at(out, dsp.fades(voice_audio[: len(out) - int(onset * dsp.SR)], 30.0), int(onset * dsp.SR))
    return out


def _speaker(rng: np.random.Generator, job: Job) -> np.ndarray:
    voice, pitch, rate, pitch_range = SPEAKERS[job.label]
    text = speech.sentence(rng, "english", SENTENCE_BUCKETS[job.split])
    rate = int(rate * rng.uniform(0.94, 1.06))
    pitch = int(pitch + rng.integers(-5, 6))
    return _speech_clip(rng, speech.synthesize(text, voice, rate, pitch, pitch_range))


def _language(rng: np.random.Generator, job: Job) -> np.ndarray:
    variant = str(rng.choice(speech.MALE_VARIANTS + speech.FEMALE_VARIANTS))
    text = speech.sentence(rng, job.label, SENTENCE_BUCKETS[job.split])
    voice = speech.voice_name(job.label, variant, rng)
    rate, pitch, pitch_range = int(rng.integers(130, 201)), int(rng.integers(20, 86)), int(rng.integers(30, 81))
    audio = speech.synthesize(text, voice, rate, pitch, pitch_range)
    return _speech_clip(rng, audio)


def _instrument(rng: np.random.Generator, job: Job) -> np.ndarray:
    program = int(rng.choice(music.FAMILIES[job.label]))
    n = int(rng.uniform(2.0, 3.0) * dsp.SR)
    tempo = _one_of(rng, ("fast", None, "slow"))
    register = _one_of(rng, ("high", None, "low"))
    chords = job.label in ("piano", "guitar", "organ") and rng.random() < 0.3
    return music.render(program, music.phrase(rng, program, n / dsp.SR, tempo, register, chords), n)


def _pitch(rng: np.random.Generator, job: Job) -> np.ndarray:
    program = int(rng.choice(music.PITCH_PROGRAMS))
    seconds = rng.uniform(2.0, 2.5)
    notes = music.sustained_note(rng, program, PITCH_CLASSES.index(job.label), seconds)
    return music.render(program, notes, int(seconds * dsp.SR))


def _env(rng: np.random.Generator, job: Job) -> np.ndarray:
    n = int(rng.uniform(2.0, 3.0) * dsp.SR)
    tempo = _one_of(rng, ("fast", None, "slow"))
    return environment.synthesize(job.label, rng, n, tempo=tempo)[0]


PROBES = {
    "speech_speaker": _speaker,
    "speech_language": _language,
    "music_instrument": _instrument,
    "music_pitch": _pitch,
    "env_event": _env,
}
"""Probe task -> function drawing one clip of the job's label."""


def render_job(job: Job, root: str) -> dict:
    """Render ``job`` into ``root/job.path`` (16 kHz mono PCM-16) and return its metadata.

    Pool clips return ``caption``, ``weak_caption``, ``events`` and ``labels``; probe
    clips return an empty dict (their label and split are in the job).
    """
    import soundfile as sf

    meta: dict = {}
    if job.kind == "pool":
        scene = sample_scene(job.rng(0))
        audio = render_scene(job.rng(1), scene)
        caption, weak, events = caption_scene(job.rng(2), scene)
        meta = {"caption": caption, "weak_caption": weak, "events": events, "labels": [ev.label for ev in scene.events]}
    else:
        rng = job.rng(1)
        x = PROBES[job.kind](rng, job)
        audio = dsp.finish(dsp.normalize_rms(x, rng.uniform(-26.0, -16.0)))
    buffer = io.BytesIO()  # soundfile fsyncs real files on close; a buffer avoids that cost
    sf.write(buffer, audio, dsp.SR, subtype="PCM_16", format="WAV")
    path = Path(root) / job.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return meta
