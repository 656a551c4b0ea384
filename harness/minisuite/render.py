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
from harness.minisuite.spec import CAPTIONS_PER_CLIP, PITCH_CLASSES, SENTENCE_BUCKETS, SPEAKERS
from harness.minisuite.vocab import ENV_EVENTS


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


SNR_DB = (0.0, 25.0)
"""Signal-to-noise ratio of a probe clip's background noise."""
SIR_DB = (4.0, 15.0)
"""Level of the target over an overlapping, unlabelled source."""
REVERB = 0.6
"""Share of probe clips recorded in a reverberant room."""


def _recording(rng: np.random.Generator, x: np.ndarray, overlap: np.ndarray | None = None) -> np.ndarray:
    """``x`` as a real recording would hold it: sometimes in a reverberant room, sometimes
    under an ``overlap``ping source (placed at random, quieter), always over background noise."""
    if rng.random() < REVERB:
        x = dsp.room_reverb(rng, x, rng.uniform(0.2, 1.0), rng.uniform(0.2, 0.6))
    x = dsp.normalize_rms(x, 0.0)
    if overlap is not None:
        other = dsp.fades(dsp.normalize_rms(overlap, -rng.uniform(*SIR_DB)), 20.0)
        dsp.add_at(x, other, int(rng.integers(-len(other) // 2, len(x) - len(other) // 2 + 1)))
    return dsp.add_noise(rng, x, SNR_DB)


def _overlap(rng: np.random.Generator, p: float, kinds: tuple[str, ...]) -> np.ndarray | None:
    """With probability ``p``, 1-2 s of another source of one of ``kinds``: a random
    environmental sound ("environment") or a random instrument's phrase ("music")."""
    if rng.random() >= p:
        return None
    n = int(rng.uniform(1.0, 2.0) * dsp.SR)
    if _one_of(rng, kinds) == "environment":
        return environment.synthesize(_one_of(rng, ENV_EVENTS), rng, n)[0]
    program = int(rng.choice(music.FAMILIES[_one_of(rng, tuple(music.FAMILIES))]))
    return music.render(program, music.phrase(rng, program, n / dsp.SR), n)


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
    rate = int(rate * rng.uniform(0.92, 1.08))
    pitch = int(pitch + rng.integers(-8, 9))
    pitch_range = int(pitch_range + rng.integers(-10, 11))
    x = _speech_clip(rng, speech.synthesize(text, voice, rate, pitch, pitch_range))
    return _recording(rng, x, _overlap(rng, 0.4, ("environment", "music")))


def _language(rng: np.random.Generator, job: Job) -> np.ndarray:
    variant = str(rng.choice(speech.MALE_VARIANTS + speech.FEMALE_VARIANTS))
    text = speech.sentence(rng, job.label, SENTENCE_BUCKETS[job.split])
    voice = speech.voice_name(job.label, variant, rng)
    rate, pitch, pitch_range = int(rng.integers(130, 201)), int(rng.integers(20, 86)), int(rng.integers(30, 81))
    x = _speech_clip(rng, speech.synthesize(text, voice, rate, pitch, pitch_range))
    return _recording(rng, x, _overlap(rng, 0.4, ("environment", "music")))


DYNAMICS = ((25, 60), (55, 95), (90, 127))
"""Velocity ranges of a phrase: soft, medium, loud."""
ARTICULATIONS = ((0.15, 0.35), (0.5, 0.8), (0.85, 1.0))
"""Sounding share of each note's beat: staccato, detached, legato."""


def _instrument(rng: np.random.Generator, job: Job) -> np.ndarray:
    program = int(rng.choice(music.FAMILIES[job.label]))
    n = int(rng.uniform(2.0, 3.0) * dsp.SR)
    tempo = _one_of(rng, ("fast", None, "slow"))
    register = _one_of(rng, ("high", None, "low"))
    chords = job.label in ("piano", "guitar", "organ") and rng.random() < 0.3
    notes = music.phrase(rng, program, n / dsp.SR, tempo, register, chords,
                         velocity=_one_of(rng, DYNAMICS), legato=_one_of(rng, ARTICULATIONS))
    return _recording(rng, music.render(program, notes, n), _overlap(rng, 0.4, ("environment",)))


def _pitch(rng: np.random.Generator, job: Job) -> np.ndarray:
    """The labelled note; half the time a second instrument holds a note of another pitch
    class 6-12 dB under it."""
    program = int(rng.choice(music.PITCH_PROGRAMS))
    seconds = rng.uniform(2.0, 2.5)
    n = int(seconds * dsp.SR)
    label = PITCH_CLASSES.index(job.label)
    x = music.render(program, music.sustained_note(rng, program, label, seconds), n)
    if rng.random() < 0.5:
        other = int(rng.choice(music.PITCH_PROGRAMS))
        pitch_class = (label + int(rng.integers(1, 12))) % 12
        y = music.render(other, music.sustained_note(rng, other, pitch_class, seconds), n)
        x = dsp.normalize_rms(x, 0.0) + dsp.normalize_rms(y, -rng.uniform(6.0, 12.0))
    return _recording(rng, x, _overlap(rng, 0.3, ("environment",)))


def _env(rng: np.random.Generator, job: Job) -> np.ndarray:
    n = int(rng.uniform(2.0, 3.0) * dsp.SR)
    tempo = _one_of(rng, ("fast", None, "slow"))
    return _recording(rng, environment.synthesize(job.label, rng, n, tempo=tempo)[0], _overlap(rng, 0.3, ("music",)))


def _mixture(rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """1-3 environmental sounds, each over part or all of a 2-3 s clip at its own level."""
    n = int(rng.uniform(2.0, 3.0) * dsp.SR)
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    labels = sorted(ENV_EVENTS[int(i)] for i in rng.choice(len(ENV_EVENTS), count, replace=False))
    mix = np.zeros(n)
    for label in labels:
        length = n if rng.random() < 0.4 else int(n * rng.uniform(0.4, 1.0))
        x = environment.synthesize(label, rng, length, tempo=_one_of(rng, ("fast", None, "slow")))[0]
        dsp.add_at(mix, dsp.fades(x * 10 ** (-rng.uniform(0.0, 10.0) / 20), 20.0), int(rng.integers(0, n - length + 1)))
    return _recording(rng, mix), labels


PROBES = {
    "speech_speaker": _speaker,
    "speech_language": _language,
    "music_instrument": _instrument,
    "music_pitch": _pitch,
    "env_event": _env,
}
"""Multiclass probe task -> function drawing one clip of the job's label."""


def _scene_clip(job: Job) -> tuple[np.ndarray, dict]:
    """A held-out scene (its own random stream, its split's sentences) with its captions and labels."""
    scene = sample_scene(job.rng(0))
    audio = render_scene(job.rng(1), scene, SENTENCE_BUCKETS[job.split])
    text = job.rng(2)
    captions = [caption_scene(text, scene)[0] for _ in range(CAPTIONS_PER_CLIP)]
    return audio, {"captions": list(dict.fromkeys(captions)), "labels": [ev.label for ev in scene.events]}


def render_job(job: Job, root: str) -> dict:
    """Render ``job`` into ``root/job.path`` (16 kHz mono PCM-16) and return its metadata.

    Pool clips return ``caption``, ``weak_caption``, ``events`` and ``labels``;
    ``scene_captions`` clips ``captions`` and ``labels``; ``env_mixture`` clips ``labels``;
    multiclass probe clips an empty dict (their label and split are in the job).
    """
    import soundfile as sf

    meta: dict = {}
    if job.kind == "pool":
        scene = sample_scene(job.rng(0))
        audio = render_scene(job.rng(1), scene)
        caption, weak, events = caption_scene(job.rng(2), scene)
        meta = {"caption": caption, "weak_caption": weak, "events": events, "labels": [ev.label for ev in scene.events]}
    elif job.kind == "scene_captions":
        audio, meta = _scene_clip(job)
    else:
        rng = job.rng(1)
        if job.kind == "env_mixture":
            x, labels = _mixture(rng)
            meta = {"labels": labels}
        else:
            x = PROBES[job.kind](rng, job)
        audio = dsp.finish(dsp.normalize_rms(x, rng.uniform(-26.0, -16.0)))
    buffer = io.BytesIO()  # soundfile fsyncs real files on close; a buffer avoids that cost
    sf.write(buffer, audio, dsp.SR, subtype="PCM_16", format="WAV")
    path = Path(root) / job.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return meta
