"""The mini-suite caption vocabulary, shared with the rules tag parser.

Captions of the pre-training pool name each sound event with one of the surface forms
below; the rules parser maps each surface form back to its canonical tag. Multi-word
forms ("idling engine", "melody playing") are matched as contiguous words.
"""

from __future__ import annotations

# One table serves both sides of the contract: the captions use these surface forms and
# the rules parser maps each back to its canonical tag.
from harness.tagging.lexicon import MINI_SUITE_SYNONYMS as SURFACE_FORMS  # canonical tag -> surface forms

ENV_EVENTS = ("rain", "engine", "siren", "footsteps", "knock", "bird", "wind", "bell")
"""The environmental sound classes, in the order of the ``env_event`` task."""

INSTRUMENT_TAGS = ("piano", "guitar", "violin", "trumpet", "flute", "organ", "saxophone", "bass")
"""Instruments of the pre-training scenes."""

LANGUAGES = ("english", "french", "german", "spanish", "italian")
"""Spoken languages, in the order of the ``speech_language`` task."""


def tags_in(text: str) -> list[str]:
    """Canonical tags whose surface forms occur in ``text`` as whole words (or runs of words),
    in order of first occurrence.

    A reference matcher for the generator's own checks and tests, not the harness's parser.
    """
    import re

    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    first: dict[str, int] = {}
    for tag, forms in SURFACE_FORMS.items():
        for form in forms:
            parts = form.split()
            for i in range(len(words) - len(parts) + 1):
                if words[i : i + len(parts)] == parts:
                    first[tag] = min(first.get(tag, i), i)
                    break
    return sorted(first, key=first.__getitem__)
