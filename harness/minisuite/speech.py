"""Speech through espeak-ng (the ``espeakng-loader`` wheel ships the library and its data).

espeak-ng keeps state between utterances (glottal phase, pitch flutter, noise
generators), so the same text synthesised twice in one process gives slightly
different samples. To make every clip a pure function of its parameters, each
utterance is synthesised in a forked child of a process where espeak-ng was
initialised but has not spoken yet, with both random generators it uses (libc's and
its own) seeded: every child starts from the same state.

Sentences come from a small grammar per language (subject x predicate x optional
adverbial, 880 sentences per language). :func:`sentence` draws one from a given
*bucket* of a stable hash, which keeps pre-training and probe sentences disjoint.
"""

from __future__ import annotations

import ctypes
import os
import zlib

import numpy as np

from harness.minisuite.dsp import resample_22050_to_16000

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flag values from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _PITCH, _RANGE = 1, 3, 4
_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

LANGUAGE_VOICES = {
    "english": ("en", "en-us"),
    "french": ("fr",),
    "german": ("de",),
    "spanish": ("es",),
    "italian": ("it",),
}
"""espeak-ng language voices used for each language label."""

MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")


class _Espeak:
    """A process-wide espeak-ng handle, initialised once and never used to speak directly."""

    _instance: _Espeak | None = None

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds the pointer
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self.sample_rate = int(rate)
        self.lib.espeak_SetSynthCallback(self._callback)
        # Load the phoneme tables once here, so that forked children do not each load them.
        self.lib.espeak_SetVoiceByName(b"en")

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), n: int, events: ctypes.c_void_p) -> int:
        if n > 0:
            self.chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    @classmethod
    def get(cls) -> _Espeak:
        if cls._instance is None:
            cls._instance = _Espeak()
        return cls._instance

    def _speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> bytes:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"unknown espeak-ng voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode("utf-8")
        self.chunks = []
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        return b"".join(self.chunks)

    def speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> bytes:
        """PCM-16 samples at :attr:`sample_rate`, synthesised from a pristine state (forked child)."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak once, send the samples, exit without cleanup
            status = 0
            try:
                os.close(read_fd)
                # espeak-ng draws noise from libc rand() and from its own generator: fix both
                ctypes.CDLL(None).srand(0)
                self.lib.espeak_ng_SetRandSeed(0)
                payload = self._speak(text, voice, rate, pitch, pitch_range)
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(payload)
            except BaseException:
                status = 1
            os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            raise RuntimeError(f"espeak-ng failed on voice {voice!r} for text {text!r}")
        return payload


def synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int = 50) -> np.ndarray:
    """Speak ``text`` with espeak-ng ``voice`` (e.g. "fr+f2"); float64 samples at 16 kHz.

    ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` in 0-100.
    """
    engine = _Espeak.get()
    pcm = np.frombuffer(engine.speak(text, voice, rate, pitch, pitch_range), dtype=np.int16)
    return resample_22050_to_16000(pcm.astype(np.float64) / 32768.0)


GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "english": (
        ("The old fisherman", "My younger sister", "Our new neighbour", "The tired teacher", "A little boy",
         "The baker", "Her best friend", "The young doctor", "My grandfather", "The clever student"),
        ("repairs the blue boat", "reads a long letter", "buys fresh bread", "paints the kitchen wall",
         "opens the heavy door", "writes a short story", "cooks a warm soup", "finds the lost key",
         "visits the small village", "carries a wooden box"),
        ("every morning", "after dinner", "before the storm", "on Sunday", "near the station",
         "in the garden", "with great care", "without a word"),
    ),
    "french": (
        ("Le vieux pêcheur", "Ma petite sœur", "Notre nouveau voisin", "Le professeur fatigué", "Un petit garçon",
         "Le boulanger", "Sa meilleure amie", "Le jeune médecin", "Mon grand-père", "L'étudiant intelligent"),
        ("répare le bateau bleu", "lit une longue lettre", "achète du pain frais", "peint le mur de la cuisine",
         "ouvre la porte lourde", "écrit une courte histoire", "prépare une soupe chaude", "trouve la clé perdue",
         "visite le petit village", "porte une boîte en bois"),
        ("chaque matin", "après le dîner", "avant l'orage", "le dimanche", "près de la gare",
         "dans le jardin", "avec beaucoup de soin", "sans un mot"),
    ),
    "german": (
        ("Der alte Fischer", "Meine kleine Schwester", "Unser neuer Nachbar", "Der müde Lehrer", "Ein kleiner Junge",
         "Der Bäcker", "Ihre beste Freundin", "Der junge Arzt", "Mein Großvater", "Der kluge Student"),
        ("repariert das blaue Boot", "liest einen langen Brief", "kauft frisches Brot", "streicht die Küchenwand",
         "öffnet die schwere Tür", "schreibt eine kurze Geschichte", "kocht eine warme Suppe",
         "findet den verlorenen Schlüssel", "besucht das kleine Dorf", "trägt eine Holzkiste"),
        ("jeden Morgen", "nach dem Abendessen", "vor dem Sturm", "am Sonntag", "in der Nähe des Bahnhofs",
         "im Garten", "mit großer Sorgfalt", "ohne ein Wort"),
    ),
    "spanish": (
        ("El viejo pescador", "Mi hermana pequeña", "Nuestro nuevo vecino", "El profesor cansado", "Un niño pequeño",
         "El panadero", "Su mejor amiga", "El joven médico", "Mi abuelo", "El estudiante listo"),
        ("repara el barco azul", "lee una carta larga", "compra pan fresco", "pinta la pared de la cocina",
         "abre la puerta pesada", "escribe un cuento corto", "cocina una sopa caliente", "encuentra la llave perdida",
         "visita el pueblo pequeño", "lleva una caja de madera"),
        ("cada mañana", "después de la cena", "antes de la tormenta", "el domingo", "cerca de la estación",
         "en el jardín", "con mucho cuidado", "sin decir nada"),
    ),
    "italian": (
        ("Il vecchio pescatore", "La mia sorella minore", "Il nostro nuovo vicino", "Il professore stanco",
         "Un bambino piccolo", "Il fornaio", "La sua migliore amica", "Il giovane medico", "Mio nonno",
         "Lo studente intelligente"),
        ("ripara la barca blu", "legge una lunga lettera", "compra il pane fresco", "dipinge il muro della cucina",
         "apre la porta pesante", "scrive una breve storia", "cucina una zuppa calda", "trova la chiave perduta",
         "visita il piccolo villaggio", "porta una scatola di legno"),
        ("ogni mattina", "dopo cena", "prima del temporale", "la domenica", "vicino alla stazione",
         "in giardino", "con molta cura", "senza una parola"),
    ),
}
"""Per language: subjects, predicates and adverbials (the adverbial is optional)."""

SENTENCE_BUCKETS = 10
"""Sentences are split into this many buckets by a stable hash of their text."""


def sentence_bucket(text: str) -> int:
    """Stable bucket of a sentence in ``range(SENTENCE_BUCKETS)``."""
    return zlib.crc32(text.encode("utf-8")) % SENTENCE_BUCKETS


def sentence(rng: np.random.Generator, language: str, buckets: frozenset[int]) -> str:
    """Draw a sentence in ``language`` whose :func:`sentence_bucket` is in ``buckets``."""
    subjects, predicates, adverbials = GRAMMAR[language]
    while True:
        parts = [str(rng.choice(subjects)), str(rng.choice(predicates))]
        if rng.random() < 0.9:
            parts.append(str(rng.choice(adverbials)))
        text = " ".join(parts) + "."
        if sentence_bucket(text) in buckets:
            return text


def voice_name(language: str, variant: str, rng: np.random.Generator) -> str:
    """An espeak-ng voice string such as "de+m3" for ``language`` and voice ``variant``."""
    return f"{rng.choice(LANGUAGE_VOICES[language])}+{variant}"
