"""What the mini suite contains: probe tasks, their classes, and clip counts (no heavy imports)."""

from __future__ import annotations

from harness.minisuite.vocab import ENV_EVENTS, LANGUAGES

GENERATOR_VERSION = "2"
"""Bump whenever the generated audio, captions or manifests change."""

SPEAKERS: dict[str, tuple[str, int, int, int]] = {
    f"{variant}_p{pitch}_r{rate}": (f"en+{variant}", pitch, rate, pitch_range)
    for variant, pitch_range, voices in (
        ("m1", 50, ((35, 165), (50, 180), (65, 155))),
        ("m3", 70, ((30, 150), (45, 175), (60, 160))),
        ("f1", 60, ((55, 170), (70, 160), (85, 180))),
        ("f2", 80, ((50, 155), (65, 185), (80, 165))),
    )
    for pitch, rate in voices
}
"""Speakers of ``speech_speaker``: label -> (espeak voice, pitch, rate in wpm, pitch range).
Four voice variants, three speakers each, 15 pitch steps and a few words a minute apart;
every clip jitters pitch by up to 8, rate by up to 8 % and pitch range by up to 10, as one
person's voice varies, so that neighbouring speakers of a variant overlap."""

FAMILY_NAMES = ("piano", "organ", "guitar", "bass", "strings", "brass", "reed", "pipe")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

TASKS: dict[str, dict] = {
    "speech_speaker": {
        "domain": "speech",
        "kind": "multiclass",
        "classes": list(SPEAKERS),
        "description": "Which of 12 espeak-ng speakers (voice variant + pitch + rate, English) reads a sentence, "
                       "in a room with noise and other sounds.",
    },
    "speech_language": {
        "domain": "speech",
        "kind": "multiclass",
        "classes": list(LANGUAGES),
        "description": "Spoken language of a sentence; voice, pitch, rate, room, noise and other sounds vary.",
    },
    "music_instrument": {
        "domain": "music",
        "kind": "multiclass",
        "classes": list(FAMILY_NAMES),
        "description": "General MIDI instrument family (5 programs each) playing a phrase at a random register, "
                       "dynamic and articulation, in a room with noise.",
    },
    "music_pitch": {
        "domain": "music",
        "kind": "multiclass",
        "classes": list(PITCH_CLASSES),
        "description": "Pitch class of one sustained note; octave, instrument, dynamic, room and noise at random, "
                       "sometimes under a quieter note of another pitch class.",
    },
    "env_event": {
        "domain": "environment",
        "kind": "multiclass",
        "classes": list(ENV_EVENTS),
        "description": "Which of 8 procedurally synthesised environmental sounds is heard, in noise, "
                       "sometimes with music over it.",
    },
    "env_mixture": {
        "domain": "environment",
        "kind": "multilabel",
        "classes": list(ENV_EVENTS),
        "description": "Which of 8 environmental sounds occur in a mixture of 1-3 of them (mAP, like FSD50K).",
    },
    "scene_captions": {
        "domain": "environment",
        "kind": "retrieval",
        "classes": [],
        "description": "Held-out scenes rendered like the pre-training pool, each with 5 captions "
                       "(for retrieval and captioning probes); labels: its sound events.",
        "splits": (("train", 0.6), ("valid", 0.1), ("test", 0.3)),
    },
}
"""Probe tasks: name -> domain, kind, classes, a one-line description and (optionally)
split shares other than :data:`SPLITS`."""

CLIPS = {
    "speech_speaker": 600,
    "speech_language": 600,
    "music_instrument": 640,
    "music_pitch": 600,
    "env_event": 640,
    "env_mixture": 600,
    "scene_captions": 1000,
}
"""Clips of each task at ``scale=1`` (multiclass tasks: the same number per class)."""

POOL_CLIPS = 1200
"""Pre-training scenes at ``scale=1``."""

SPLITS = (("train", 0.4), ("valid", 0.1), ("test", 0.5))
"""Split shares of a task (of each class, for a multiclass task), unless the task sets its own:
test sets of at least 300 clips at ``scale=1`` keep the paired bootstrap's intervals near 5 points."""

CAPTIONS_PER_CLIP = 5
"""Captions of every ``scene_captions`` clip (as Clotho's five), distinct where the templates allow."""

SENTENCE_BUCKETS = {
    "pool": frozenset(range(5)),
    "train": frozenset({5, 6, 7}),
    "valid": frozenset({8}),
    "test": frozenset({9}),
}
"""Hash buckets of sentences per use: pool, probe train, valid and test never share a sentence."""

UNIT = 10
"""Clip counts (per class, or per task without classes) are multiples of this, so the split shares are exact."""


def splits_of(task: str) -> tuple[tuple[str, float], ...]:
    """The split shares of ``task``."""
    return TASKS[task].get("splits", SPLITS)


def groups(task: str) -> int:
    """How many equal groups the task's clips are split in: its classes, or 1 (multilabel and retrieval)."""
    return len(TASKS[task]["classes"]) if TASKS[task]["kind"] == "multiclass" else 1


def clips_per_class(task: str, scale: float) -> int:
    """Clips per group (class, or the whole task, see :func:`groups`) at ``scale``: a multiple of
    :data:`UNIT`, at least :data:`UNIT`."""
    per_group = CLIPS[task] / groups(task)
    return max(UNIT, UNIT * round(per_group * scale / UNIT))


def pool_clips(scale: float) -> int:
    """Pre-training scenes at ``scale`` (at least 10)."""
    return max(10, round(POOL_CLIPS * scale))
