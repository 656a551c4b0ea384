"""Pre-training scenes: 1-3 sound events from all three domains, mixed into one clip.

A :class:`Scene` is drawn first (events and their attributes: loudness, distance,
tempo, pitch, variant, speaker, language, instrument, place); the audio is then
rendered to follow those attributes, and the caption describes (some of) them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.minisuite import dsp, environment, music, speech
from harness.minisuite.spec import SENTENCE_BUCKETS
from harness.minisuite.vocab import ENV_EVENTS, INSTRUMENT_TAGS, LANGUAGES

LEVELS_DB = {"loud": -15.0, None: -21.0, "quiet": -29.0}
"""RMS level of an event by its loudness word."""

PLACES = ("indoor", "outdoor", "street", None)
CHORD_INSTRUMENTS = ("piano", "guitar", "organ")
INDOOR_VARIANTS = ("wood", "tile")
"""Footsteps on these surfaces only happen indoors."""
OUTDOOR_LABELS = ("wind",)
"""Sounds that only happen outdoors."""


@dataclass(frozen=True)
class Event:
    """One sound event of a scene and the attributes its audio follows."""

    label: str  # coarse class: an environmental class, "speech" or an instrument
    domain: str  # "environment" | "speech" | "music"
    loudness: str | None = None  # "loud" | "quiet"
    distance: str | None = None  # "close" | "distant"
    variant: str | None = None  # environmental sub-type, e.g. "revving"
    tempo: str | None = None  # "fast" | "slow": speech rate, music tempo, walking pace
    pitch: str | None = None  # "high" | "low": voice pitch or musical register
    gender: str | None = None  # speech: "man" | "woman"
    language: str | None = None  # speech
    program: int | None = None  # music: General MIDI program
    style: str | None = None  # music: "melody" | "chords"


@dataclass(frozen=True)
class Scene:
    """A pre-training clip: its events, place and duration in seconds."""

    events: tuple[Event, ...]
    place: str | None
    seconds: float


def _choice(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _event(rng: np.random.Generator, label: str) -> Event:
    loudness = _choice(rng, ("loud", None, "quiet"), (0.25, 0.5, 0.25))
    distance = _choice(rng, ("close", None, "distant"), (0.2, 0.6, 0.2))
    tempo = _choice(rng, ("fast", None, "slow"), (0.25, 0.5, 0.25))
    pitch = _choice(rng, ("high", None, "low"), (0.25, 0.5, 0.25))
    if label == "speech":
        return Event(label, "speech", loudness, distance, tempo=tempo, pitch=pitch,
                     gender=_choice(rng, ("man", "woman")), language=_choice(rng, LANGUAGES))
    if label in INSTRUMENT_TAGS:
        style = "chords" if label in CHORD_INSTRUMENTS and rng.random() < 0.4 else "melody"
        return Event(label, "music", loudness, distance, tempo=tempo, pitch=pitch,
                     program=_choice(rng, music.INSTRUMENTS[label]), style=style)
    variant = _choice(rng, environment.VARIANTS[label])
    return Event(label, "environment", loudness, distance, variant=variant,
                 tempo=tempo if label == "footsteps" else None)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw 1-3 events (at most one speaker, at most two instruments) and a place."""
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    labels: list[str] = []
    while len(labels) < count:
        domain = _choice(rng, ("environment", "speech", "music"), (0.5, 0.25, 0.25))
        label = {"environment": lambda: _choice(rng, ENV_EVENTS), "speech": lambda: "speech",
                 "music": lambda: _choice(rng, INSTRUMENT_TAGS)}[domain]()
        instruments = sum(lab in INSTRUMENT_TAGS for lab in labels)
        if label in labels or (label in INSTRUMENT_TAGS and instruments >= 2):
            continue
        labels.append(label)
    events = tuple(_event(rng, label) for label in labels)
    place = _choice(rng, PLACES, (0.3, 0.3, 0.15, 0.25))
    indoors = any(ev.variant in INDOOR_VARIANTS for ev in events)
    outdoors = any(ev.label in OUTDOOR_LABELS for ev in events)
    if indoors and outdoors:
        place = None
    elif indoors and place in ("outdoor", "street"):
        place = "indoor"
    elif outdoors and place == "indoor":
        place = "outdoor"
    return Scene(events, place, float(rng.uniform(2.0, 4.0)))


def speech_audio(rng: np.random.Generator, ev: Event, buckets: frozenset[int]) -> np.ndarray:
    """One sentence by a random voice of the event's gender, pitch and rate."""
    variants = speech.MALE_VARIANTS if ev.gender == "man" else speech.FEMALE_VARIANTS
    base_pitch = {"high": (65, 90), None: (40, 65), "low": (10, 35)}[ev.pitch]
    rate = {"fast": (200, 250), None: (150, 190), "slow": (110, 140)}[ev.tempo]
    text = speech.sentence(rng, ev.language, buckets)
    voice = speech.voice_name(ev.language, _choice(rng, variants), rng)
    return speech.synthesize(text, voice, int(rng.integers(*rate)), int(rng.integers(*base_pitch)),
                             int(rng.integers(30, 80)))


def _event_audio(rng: np.random.Generator, ev: Event, n: int, buckets: frozenset[int]) -> np.ndarray:
    if ev.domain == "speech":
        return speech_audio(rng, ev, buckets)[:n]
    if ev.domain == "music":
        notes = music.phrase(rng, ev.program, n / dsp.SR, ev.tempo, ev.pitch, ev.style == "chords")
        return music.render(ev.program, notes, n)
    return environment.synthesize(ev.label, rng, n, ev.variant, ev.tempo)[0]


SCENE_SNR_DB = (10.0, 35.0)
"""Signal-to-noise ratio of a scene's background noise (not captioned, as in real recordings)."""


def render_scene(rng: np.random.Generator, scene: Scene, buckets: frozenset[int] = SENTENCE_BUCKETS["pool"]) -> np.ndarray:
    """Mix the scene's events at their loudness, distance and place over background noise
    (float32, 16 kHz); speech reads sentences of the hash ``buckets`` (the pool's, or a
    held-out split's)."""
    n = int(scene.seconds * dsp.SR)
    mix = np.zeros(n)
    for ev in scene.events:
        length = n if ev.domain == "environment" and rng.random() < 0.5 else int(n * rng.uniform(0.6, 1.0))
        start = int(rng.integers(0, n - length + 1))
        x = _event_audio(rng, ev, length, buckets)
        if ev.distance == "distant":
            x = dsp.lowpass(x, rng.uniform(1200, 3000))
            x = dsp.room_reverb(rng, x, rng.uniform(0.6, 1.2), 0.5)
        level = LEVELS_DB[ev.loudness] + rng.uniform(-2, 2) + {"distant": -5.0, "close": 2.0, None: 0.0}[ev.distance]
        dsp.add_at(mix, dsp.fades(dsp.normalize_rms(x, level), 20.0), start)
    if scene.place == "indoor":
        mix = dsp.room_reverb(rng, mix, rng.uniform(0.25, 0.7), rng.uniform(0.2, 0.4))
    return dsp.finish(dsp.add_noise(rng, mix, SCENE_SNR_DB))
