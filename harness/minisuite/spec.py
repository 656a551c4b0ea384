"""What the mini suite contains: probe tasks, their classes, and clip counts (no heavy imports)."""

from __future__ import annotations

from harness.minisuite.vocab import ENV_EVENTS, LANGUAGES

GENERATOR_VERSION = "1"
"""Bump whenever the generated audio, captions or manifests change."""

SPEAKERS: dict[str, tuple[str, int, int, int]] = {
    "m1_p40_r165": ("en+m1", 40, 165, 50),
    "m1_p60_r185": ("en+m1", 60, 185, 50),
    "m3_p50_r150": ("en+m3", 50, 150, 70),
    "m7_p30_r175": ("en+m7", 30, 175, 35),
    "f1_p65_r170": ("en+f1", 65, 170, 60),
    "f2_p75_r155": ("en+f2", 75, 155, 80),
    "f4_p70_r190": ("en-us+f4", 70, 190, 45),
    "f4_p85_r160": ("en-us+f4", 85, 160, 45),
}
"""Speakers of ``speech_speaker``: label -> (espeak voice, pitch, rate in wpm, pitch range).
Two pairs share a voice variant and differ only in pitch and rate; every clip jitters
pitch by up to 5 and rate by up to 6 %, as one person's voice varies."""

FAMILY_NAMES = ("piano", "organ", "guitar", "bass", "strings", "brass", "reed", "pipe")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

TASKS: dict[str, dict] = {
    "speech_speaker": {
        "domain": "speech",
        "kind": "multiclass",
        "classes": list(SPEAKERS),
        "description": "Which of 8 espeak-ng speakers (voice variant + pitch + rate, English) reads a sentence.",
    },
    "speech_language": {
        "domain": "speech",
        "kind": "multiclass",
        "classes": list(LANGUAGES),
        "description": "Spoken language of a sentence; voice variant, pitch and rate vary at random.",
    },
    "music_instrument": {
        "domain": "music",
        "kind": "multiclass",
        "classes": list(FAMILY_NAMES),
        "description": "General MIDI instrument family (5 programs each) playing a random phrase.",
    },
    "music_pitch": {
        "domain": "music",
        "kind": "multiclass",
        "classes": list(PITCH_CLASSES),
        "description": "Pitch class of one sustained note; octave and instrument at random.",
    },
    "env_event": {
        "domain": "environment",
        "kind": "multiclass",
        "classes": list(ENV_EVENTS),
        "description": "Which of 8 procedurally synthesised environmental sounds is heard.",
    },
}
"""Probe tasks: name -> domain, kind, classes and a one-line description."""

CLIPS_PER_CLASS = {
    "speech_speaker": 30,
    "speech_language": 40,
    "music_instrument": 30,
    "music_pitch": 30,
    "env_event": 40,
}
"""Clips per class at ``scale=1`` (rounded to a multiple of 5 so 60/20/20 splits are exact)."""

POOL_CLIPS = 800
"""Pre-training scenes at ``scale=1``."""

SPLITS = (("train", 0.6), ("valid", 0.2), ("test", 0.2))

SENTENCE_BUCKETS = {
    "pool": frozenset(range(5)),
    "train": frozenset({5, 6, 7}),
    "valid": frozenset({8}),
    "test": frozenset({9}),
}
"""Hash buckets of sentences per use: pool, probe train, valid and test never share a sentence."""


def clips_per_class(task: str, scale: float) -> int:
    """Clips per class of ``task`` at ``scale``: a multiple of 5, at least 5."""
    return max(5, 5 * round(CLIPS_PER_CLASS[task] * scale / 5))


def pool_clips(scale: float) -> int:
    """Pre-training scenes at ``scale`` (at least 10)."""
    return max(10, round(POOL_CLIPS * scale))
