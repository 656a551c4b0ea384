"""Music from the General MIDI soundfont ``TimGM6mb.sf2`` (shipped in the ``pretty_midi``
wheel), rendered at 16 kHz by ``tinysoundfont``.

One synthesiser per process renders every clip. Before each clip all voices are cut
and the release tails drained, so that no voice of an earlier clip is still sounding:
otherwise voices would be summed in a different order and the samples of a clip would
depend on the clips rendered before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.minisuite.dsp import SR

FAMILIES: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2, 4, 5),
    "organ": (16, 17, 18, 19, 20),
    "guitar": (24, 25, 26, 27, 28),
    "bass": (32, 33, 34, 35, 38),
    "strings": (40, 41, 42, 48, 49),
    "brass": (56, 57, 58, 60, 61),
    "reed": (64, 65, 66, 68, 71),
    "pipe": (72, 73, 74, 75, 79),
}
"""Instrument families of the ``music_instrument`` task: General MIDI programs (0-based)."""

INSTRUMENTS: dict[str, tuple[int, ...]] = {
    "piano": (0, 1, 2),
    "guitar": (24, 25, 26, 27),
    "violin": (40,),
    "trumpet": (56, 59),
    "flute": (73, 72),
    "organ": (16, 17, 19),
    "saxophone": (64, 65, 66, 67),
    "bass": (32, 33, 34, 35),
}
"""Named instruments of the pre-training scenes (the caption vocabulary): GM programs."""

PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    **{p: (45, 84) for p in (0, 1, 2, 4, 5)},
    **{p: (43, 84) for p in (16, 17, 18, 19, 20)},
    **{p: (45, 79) for p in (24, 25, 26, 27, 28)},
    **{p: (28, 55) for p in (32, 33, 34, 35, 38)},
    40: (57, 91), 41: (50, 81), 42: (38, 72), 48: (45, 84), 49: (45, 84),
    56: (55, 82), 57: (40, 70), 58: (30, 58), 59: (55, 82), 60: (43, 74), 61: (48, 79),
    64: (58, 86), 65: (51, 79), 66: (46, 74), 67: (38, 67), 68: (59, 88), 71: (50, 84),
    72: (74, 96), 73: (60, 91), 74: (60, 88), 75: (60, 88), 79: (62, 86),
}
"""Playable MIDI key range of every program used."""

PITCH_PROGRAMS = (0, 4, 16, 19, 24, 40, 42, 48, 56, 60, 65, 68, 71, 73)
"""Programs of the ``music_pitch`` task (mostly sustaining instruments)."""

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
}

TEMPI = {"fast": (135.0, 180.0), "slow": (55.0, 80.0), None: (85.0, 125.0)}
"""Beats per minute drawn for each tempo word of a caption."""


@dataclass(frozen=True)
class Note:
    """One note: start and duration in seconds, MIDI key, velocity (1-127)."""

    start: float
    duration: float
    key: int
    velocity: int


DRAIN_SAMPLES = SR // 4
"""Samples rendered (and dropped) after cutting all voices, so their quick release ends."""


def soundfont_path() -> Path:
    """The General MIDI soundfont shipped inside the ``pretty_midi`` wheel."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


@lru_cache(maxsize=1)
def _synth():
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    return synth, synth.sfload(str(soundfont_path()))


def render(program: int, notes: list[Note], n: int) -> np.ndarray:
    """Render ``notes`` on GM ``program`` into ``n`` samples (mono float64, 16 kHz)."""
    synth, sfid = _synth()
    synth.sounds_off()
    synth.generate_simple(DRAIN_SAMPLES)
    synth.program_select(0, sfid, 0, program)
    events = sorted(
        [(int(nt.start * SR), 1, nt.key, nt.velocity) for nt in notes]
        + [(int((nt.start + nt.duration) * SR), 0, nt.key, 0) for nt in notes]
    )
    chunks = []
    pos = 0
    for at, is_on, key, velocity in events:
        at = min(at, n)
        if at > pos:
            chunks.append(np.frombuffer(synth.generate_simple(at - pos), dtype=np.float32))
            pos = at
        if is_on:
            synth.noteon(0, key, velocity)
        else:
            synth.noteoff(0, key)
    if n > pos:
        chunks.append(np.frombuffer(synth.generate_simple(n - pos), dtype=np.float32))
    stereo = np.concatenate(chunks).reshape(-1, 2)
    return stereo.mean(axis=1).astype(np.float64)


def _register(lo: int, hi: int, register: str | None) -> tuple[int, int]:
    """Narrow a key range to its low or high part for a "low"/"high" caption word."""
    mid = (lo + hi) // 2
    if register == "low":
        return lo, max(mid, lo + 12)
    if register == "high":
        return min(mid, hi - 12), hi
    return lo + 3, hi - 3


def phrase(
    rng: np.random.Generator, program: int, seconds: float, tempo: str | None = None, register: str | None = None,
    chords: bool = False, velocity: tuple[int, int] = (60, 118), legato: tuple[float, float] = (0.6, 1.0),
) -> list[Note]:
    """A random melodic phrase (or strummed chords) filling ``seconds``.

    Notes walk a random scale from a random root within the program's range; ``tempo``
    and ``register`` follow the caption words ("fast"/"slow", "high"/"low"). Each note's
    velocity is drawn from ``velocity`` (the dynamic) and it sounds for a share of its beat
    drawn once from ``legato`` (the articulation: about 0.2 staccato, 1.0 legato).
    """
    lo, hi = _register(*PROGRAM_RANGES[program], register)
    beat = 60.0 / rng.uniform(*TEMPI[tempo])
    scale = SCALES[str(rng.choice(list(SCALES)))]
    root = int(rng.integers(lo, max(lo + 1, hi - 11)))
    keys = [root + 12 * octave + step for octave in range(-1, 3) for step in scale]
    keys = [k for k in keys if lo <= k <= hi]
    idx = int(rng.integers(0, len(keys)))
    notes: list[Note] = []
    t = rng.uniform(0.0, 0.25)
    legato_share = rng.uniform(*legato)
    while t < seconds - 0.15:
        length = beat * float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
        note_velocity = int(rng.integers(*velocity))
        if chords:
            stack = [keys[min(idx + j, len(keys) - 1)] for j in (0, 2, 4)]
            strum = rng.uniform(0.008, 0.03)
            notes += [Note(t + j * strum, length * legato_share, k, note_velocity) for j, k in enumerate(sorted(set(stack)))]
        else:
            notes.append(Note(t, length * legato_share, keys[idx], note_velocity))
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 1, 1, 2, 0, 3, -3]), 0, len(keys) - 1))
        t += length
    return notes


def sustained_note(rng: np.random.Generator, program: int, pitch_class: int, seconds: float) -> list[Note]:
    """One note of ``pitch_class`` (0 = C) in a random octave inside the program's range, at a random dynamic."""
    lo, hi = PROGRAM_RANGES[program]
    candidates = [k for k in range(max(lo, 36), min(hi, 96) + 1) if k % 12 == pitch_class]
    key = int(rng.choice(candidates))
    start = rng.uniform(0.0, 0.15)
    return [Note(start, seconds * rng.uniform(0.7, 0.85) - start, key, int(rng.integers(35, 127)))]
