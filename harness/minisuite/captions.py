"""Caption grammar of the pre-training scenes.

Every sound event of a scene is realised as a noun phrase ("a distant wailing siren")
and as a clause ("a siren wails in the distance") from per-class templates with random
synonyms and optional modifiers (loudness, distance, pitch, tempo, variant, place). A
scene template then combines the events (about 40 scene templates for one to three
events), an optional place phrase and an optional closing remark. The weak caption
just lists one short surface form per event ("rain and talking").

Surface forms come from :data:`harness.minisuite.vocab.SURFACE_FORMS`; the generator
checks that each caption names every event of its scene and no other sound class.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from harness.minisuite.vocab import ENV_EVENTS, INSTRUMENT_TAGS, tags_in

if TYPE_CHECKING:
    from harness.minisuite.scene import Event, Scene

LOUD = {
    "loud": ("loud", "strong", "intense", "prominent", "powerful"),
    "quiet": ("quiet", "faint", "soft", "gentle", "subtle"),
}
LOUD_ADV = {"loud": ("loudly", "at high volume"), "quiet": ("quietly", "softly", "at low volume")}
DIST_ADJ = {"close": ("nearby",), "distant": ("distant", "far-off", "faraway")}
DIST_PP = {
    "close": ("close by", "nearby", "up close", "right next to the microphone", "very close to the listener"),
    "distant": ("in the distance", "far away", "from far off", "somewhere in the distance", "from a distance"),
}
PLACE_PP = {
    "indoor": ("in a room", "indoors", "inside a house", "in a small room", "in a large hall", "in an office"),
    "outdoor": ("outdoors", "outside", "in a park", "in the countryside", "in an open field"),
    "street": ("on a street", "on a city street", "at a street corner", "by the roadside"),
}
PLACE_INTRO = {
    "indoor": ("Indoors, ", "Inside a room, ", "In a small room, ", "Inside a building, "),
    "outdoor": ("Outdoors, ", "Outside, ", "In a park, ", "Out in the open, "),
    "street": ("On a street, ", "On a city street, ", "At a street corner, "),
}


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def tidy(text: str) -> str:
    """Collapse spaces, fix a/an, spacing before punctuation, and capitalise sentences."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;])", r"\1", text)
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)
    text = re.sub(r"\b([Aa])n (?=[b-df-hj-np-tv-zB-DF-HJ-NP-TV-Z])", r"\1 ", text)
    return re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


class _Mods:
    """The loudness and distance modifiers of one event, drawn once per caption."""

    def __init__(self, rng: np.random.Generator, ev: Event):
        self.loud = _pick(rng, LOUD[ev.loudness]) if ev.loudness and rng.random() < 0.85 else ""
        self.loud_adv = _pick(rng, LOUD_ADV[ev.loudness]) if ev.loudness and rng.random() < 0.85 else ""
        as_adj = ev.distance is not None and rng.random() < 0.35
        said = ev.distance is not None and rng.random() < 0.85
        self.dist_adj = _pick(rng, DIST_ADJ[ev.distance]) if said and as_adj else ""
        self.dist_pp = _pick(rng, DIST_PP[ev.distance]) if said and not as_adj else ""

    def adjs(self, *more: str) -> str:
        """Loudness and distance adjectives followed by ``more`` (empties dropped)."""
        return _words(self.loud, self.dist_adj, *more)


def _maybe(rng: np.random.Generator, options, p: float = 0.6) -> str:
    return _pick(rng, options) if rng.random() < p else ""


# --- environmental events ----------------------------------------------------------------
# Per class and variant: noun heads (determiner, noun, plural?), variant adjectives,
# verbs (singular, plural), and optional trailing details.

ENV_HEADS = {
    "rain": {
        "heavy": [("", "rain", False), ("", "rainfall", False), ("a", "downpour", False), ("", "raindrops", True)],
        "light": [("", "rain", False), ("", "rainfall", False), ("a", "drizzle", False), ("", "raindrops", True)],
    },
    "engine": {
        "idling": [("an", "engine", False), ("a", "motor", False), ("a", "car engine", False),
                   ("a", "truck engine", False), ("a", "diesel engine", False), ("a", "boat motor", False)],
        "revving": [("an", "engine", False), ("a", "motor", False), ("a", "car engine", False),
                    ("a", "motorcycle engine", False), ("a", "sports car engine", False)],
    },
    "siren": {v: [("a", "siren", False), ("an", "emergency siren", False), ("an", "ambulance siren", False),
                  ("a", "police siren", False), ("a", "fire truck siren", False), ("", "sirens", True)]
              for v in ("wail", "yelp", "hilo")},
    "footsteps": {v: [("", "footsteps", True), ("", "footfalls", True), ("", "steps", True)]
                  for v in ("wood", "gravel", "concrete", "tile")},
    "knock": {v: [("a", "knock", False), ("", "knocks", True), ("", "knocking", False), ("", "rapping", False),
                  ("", "raps", True)] for v in ("door", "table", "window")},
    "bird": {
        "single": [("a", "bird", False), ("a", "songbird", False), ("a", "small bird", False)],
        "flock": [("", "birds", True), ("several", "birds", True), ("a flock of", "birds", True),
                  ("", "birdsong", False)],
    },
    "wind": {
        "gusty": [("", "wind", False), ("", "gusts", True), ("", "gusting wind", False), ("", "blowing wind", False)],
        "steady": [("", "wind", False), ("a", "breeze", False), ("", "blowing wind", False)],
    },
    "bell": {
        "church": [("a", "church bell", False), ("a", "large bell", False), ("a", "bell", False),
                   ("a", "ringing bell", False)],
        "hand": [("a", "small bell", False), ("a", "hand bell", False), ("a", "bell", False),
                 ("a", "ringing bell", False)],
        "chimes": [("", "chimes", True), ("", "metal chimes", True), ("a set of", "chimes", True)],
    },
}

ENV_ADJ = {
    ("rain", "heavy"): ("heavy", "pouring", "torrential", "steady"),
    ("rain", "light"): ("light", "fine", "gentle", "sparse"),
    ("engine", "idling"): ("idling", "running", "rumbling", "steady"),
    ("engine", "revving"): ("revving", "roaring", "accelerating"),
    ("siren", "wail"): ("wailing", "howling", "slowly rising"),
    ("siren", "yelp"): ("yelping", "rapid", "warbling"),
    ("siren", "hilo"): ("two-tone", "alternating", "high-low"),
    ("footsteps", "*"): ("rhythmic", "steady", "regular"),
    ("knock", "*"): ("sharp", "firm", "repeated", "rhythmic"),
    ("bird", "single"): ("little", "lone", "cheerful"),
    ("bird", "flock"): ("cheerful", "lively", "busy"),
    ("wind", "gusty"): ("gusty", "blustery", "howling", "swirling"),
    ("wind", "steady"): ("steady", "constant", "continuous"),
    ("bell", "church"): ("deep", "resonant", "low-pitched", "booming"),
    ("bell", "hand"): ("high-pitched", "tinkling", "bright", "clear"),
    ("bell", "chimes"): ("tinkling", "delicate", "high-pitched", "metallic"),
}

ENV_VERBS = {
    ("rain", "heavy"): (("falls", "fall"), ("pours down", "pour down"), ("drums", "drum"),
                        ("comes down hard", "come down hard")),
    ("rain", "light"): (("falls", "fall"), ("patters", "patter"), ("drips", "drip"),
                        ("comes down softly", "come down softly")),
    ("engine", "idling"): (("idles", "idle"), ("runs", "run"), ("hums", "hum"), ("rumbles", "rumble"),
                           ("ticks over", "tick over")),
    ("engine", "revving"): (("revs up", "rev up"), ("roars", "roar"), ("revs repeatedly", "rev repeatedly")),
    ("siren", "wail"): (("wails", "wail"), ("howls", "howl"), ("rises and falls", "rise and fall"),
                        ("blares", "blare")),
    ("siren", "yelp"): (("yelps", "yelp"), ("warbles", "warble"), ("blares", "blare")),
    ("siren", "hilo"): (("alternates between two tones", "alternate between two tones"), ("blares", "blare"),
                        ("sounds", "sound")),
    ("footsteps", "*"): (("sounds", "sound"), ("echoes", "echo"), ("can be heard", "can be heard"), ("go by", "go by")),
    ("knock", "*"): (("sounds", "sound"), ("comes", "come"), ("repeats", "repeat"), ("can be heard", "can be heard")),
    ("bird", "single"): (("chirps", "chirp"), ("sings", "sing"), ("whistles", "whistle"), ("calls", "call")),
    ("bird", "flock"): (("fills the air", "chirp"), ("can be heard", "sing"), ("is heard", "call to each other")),
    ("wind", "gusty"): (("blows", "blow"), ("howls", "howl"), ("whistles", "whistle"), ("rushes past", "rush past")),
    ("wind", "steady"): (("blows", "blow"), ("rushes past", "rush past"), ("whooshes", "whoosh")),
    ("bell", "church"): (("tolls", "toll"), ("rings", "ring"), ("rings out", "ring out"), ("chimes", "chime")),
    ("bell", "hand"): (("rings", "ring"), ("jingles", "jingle"), ("is rung", "are rung")),
    ("bell", "chimes"): (("tinkles", "tinkle"), ("jingles", "jingle"), ("rings", "ring")),
}

ENV_DETAIL = {
    "rain": ("on a roof", "against a window", "on the pavement", "on leaves", "onto a tin roof"),
    "footsteps:wood": ("on a wooden floor", "on wooden boards", "on creaky floorboards"),
    "footsteps:gravel": ("on gravel", "on a gravel path", "on crunchy gravel"),
    "footsteps:concrete": ("on concrete", "on a concrete floor", "on the pavement"),
    "footsteps:tile": ("on a tiled floor", "on tiles", "on a hard tiled floor"),
    "knock:door": ("on a door", "at the door", "on a wooden door"),
    "knock:table": ("on a table", "on a wooden table", "on a desk"),
    "knock:window": ("on a window", "on a glass pane", "against the window"),
}

STEP_TEMPO = {"fast": ("fast", "hurried", "quick", "brisk"), "slow": ("slow", "unhurried", "leisurely")}
WALK_TEMPO = {"fast": ("quickly", "briskly", "hurriedly", "fast"), "slow": ("slowly", "at a leisurely pace", "calmly")}


def _env_detail(rng: np.random.Generator, ev: Event, p: float) -> str:
    key = ev.label if ev.label == "rain" else f"{ev.label}:{ev.variant}"
    if key not in ENV_DETAIL:
        return ""
    return _pick(rng, ENV_DETAIL[key]) if rng.random() < p else ""


def _env_special_clause(rng: np.random.Generator, ev: Event, m: _Mods) -> str:
    """Clauses that do not follow the subject-verb pattern ("it is raining", "someone walks")."""
    lab, var = ev.label, ev.variant
    if lab == "rain":
        how = _pick(rng, ("heavily", "hard") if var == "heavy" else ("lightly", "softly", "gently"))
        return _words("it is raining", how, m.dist_pp)
    if lab == "engine" and var == "revving":
        return _words("someone is revving", _pick(rng, ("an engine", "a motor", "a car engine")), m.loud_adv, m.dist_pp)
    if lab == "footsteps":
        who = _pick(rng, ("someone", "a person", "somebody"))
        verb = _pick(rng, ("walks", "is walking"))
        tempo = _pick(rng, WALK_TEMPO[ev.tempo]) if ev.tempo and rng.random() < 0.8 else ""
        return _words(who, verb, tempo, _env_detail(rng, ev, 0.8), m.dist_pp)
    if lab == "knock":
        who = _pick(rng, ("someone", "somebody", "a visitor" if var == "door" else "someone"))
        verb = _pick(rng, ("knocks", "is knocking", "raps", "keeps knocking"))
        return _words(who, verb, m.loud_adv, _env_detail(rng, ev, 1.0), m.dist_pp)
    if lab == "bird" and var == "flock":
        return _words(_pick(rng, ("birds are", "several birds are", "a few birds are")),
                      _pick(rng, ("chirping", "tweeting", "singing")), m.dist_pp)
    if lab == "wind":
        return _words("the wind", _pick(rng, ("is gusting", "is blowing", "keeps gusting") if var == "gusty"
                                        else ("is blowing", "blows steadily")), m.loud_adv, m.dist_pp)
    if lab == "bell":
        return _words("someone rings", _pick(rng, ("a bell", "a small bell", "a hand bell") if var == "hand"
                                             else ("a bell", "a large bell", "a church bell")), m.dist_pp)
    return ""


def _env(rng: np.random.Generator, ev: Event) -> tuple[str, str]:
    m = _Mods(rng, ev)
    lab, var = ev.label, ev.variant
    det, head, plural = ENV_HEADS[lab][var][int(rng.integers(len(ENV_HEADS[lab][var])))]
    key = (lab, var) if (lab, var) in ENV_ADJ else (lab, "*")
    var_adj = _maybe(rng, ENV_ADJ[key], 0.5)
    if var_adj and var_adj in head:
        var_adj = ""
    tempo_adj = _pick(rng, STEP_TEMPO[ev.tempo]) if lab == "footsteps" and ev.tempo and rng.random() < 0.8 else ""
    if var_adj and tempo_adj:
        var_adj = ""
    detail = _env_detail(rng, ev, 0.6)
    noun_phrase = _words(det, m.adjs(tempo_adj, var_adj), head, detail, m.dist_pp)
    special = _env_special_clause(rng, ev, m)
    if special and rng.random() < 0.35:
        return noun_phrase, special
    single, many = _pick(rng, ENV_VERBS[key])
    subject = _words(det, m.adjs(tempo_adj, var_adj), head)
    clause = _words(subject, many if plural else single, detail, m.dist_pp)
    return noun_phrase, clause


# --- speech --------------------------------------------------------------------------------

GENDER_NOUNS = {"man": ("man", "guy", "gentleman", "male speaker"), "woman": ("woman", "lady", "female speaker")}
GENDER_ADJ = {"man": "male", "woman": "female"}
VOICE_PITCH = {"high": ("high-pitched", "high"), "low": ("low-pitched", "deep", "low")}
SPEECH_TEMPO = {"fast": ("quickly", "rapidly", "fast"), "slow": ("slowly", "calmly", "at a slow pace")}


def _speech(rng: np.random.Generator, ev: Event) -> tuple[str, str]:
    m = _Mods(rng, ev)
    lang = ev.language.capitalize() if ev.language and rng.random() < 0.85 else ""
    lang_pp = f"in {lang}" if lang else ""
    pitch = _pick(rng, VOICE_PITCH[ev.pitch]) if ev.pitch and rng.random() < 0.8 else ""
    tempo = _pick(rng, SPEECH_TEMPO[ev.tempo]) if ev.tempo and rng.random() < 0.8 else ""
    noun = _pick(rng, GENDER_NOUNS[ev.gender])
    speaker = _words("a", m.dist_adj, noun)  # loudness goes to the voice or an adverb
    voice = _words("a", m.adjs(pitch, GENDER_ADJ[ev.gender]), "voice")
    with_voice = f"with a {pitch} voice" if pitch else ""
    noun_phrases = [
        _words(speaker, with_voice, "speaking", lang_pp, tempo, m.dist_pp),
        _words(speaker, with_voice, "talking", tempo, lang_pp, m.dist_pp),
        _words(voice, lang_pp, m.dist_pp),
        _words(lang, "speech from", speaker, with_voice, m.dist_pp),
        _words(lang, "narration by", speaker, with_voice, m.dist_pp),
    ]
    clauses = [
        _words(speaker, with_voice, "speaks", tempo, lang_pp, m.loud_adv, m.dist_pp),
        _words(speaker, with_voice, "is talking", lang_pp, tempo, m.dist_pp),
        _words(speaker, with_voice, "says something", lang_pp, m.dist_pp),
        _words(speaker, with_voice, "narrates a sentence", lang_pp, tempo, m.dist_pp),
        _words(speaker, with_voice, "talks", tempo, lang_pp, m.loud_adv, m.dist_pp),
        _words(voice, "speaks", lang_pp, tempo, m.dist_pp),
        _words(voice, "says a short sentence", lang_pp, m.dist_pp),
    ]
    return _pick(rng, noun_phrases), _pick(rng, clauses)


# --- music ---------------------------------------------------------------------------------

INSTRUMENT_HEADS = {
    "piano": ("piano", "grand piano", "piano"),
    "guitar": ("guitar", "acoustic guitar", "guitar"),
    "violin": ("violin", "fiddle", "solo violin"),
    "trumpet": ("trumpet", "horn", "trumpet"),
    "flute": ("flute", "wooden flute", "flute"),
    "organ": ("organ", "electric organ", "organ"),
    "saxophone": ("saxophone", "sax", "saxophone"),
    "bass": ("bass", "electric bass", "double bass"),
}
PLAYERS = {"piano": "pianist", "guitar": "guitarist"}
MUSIC_TEMPO = {"fast": ("fast", "quick", "lively", "upbeat"), "slow": ("slow", "gentle", "calm", "leisurely")}
MUSIC_TEMPO_ADV = {"fast": ("fast", "quickly", "briskly"), "slow": ("slowly", "gently", "calmly")}
REGISTER = {"high": ("high", "high-pitched", "bright"), "low": ("low", "low-pitched", "deep")}


def _music(rng: np.random.Generator, ev: Event) -> tuple[str, str]:
    m = _Mods(rng, ev)
    head = _pick(rng, INSTRUMENT_HEADS[ev.label])
    if ev.program == 59 and ev.label == "trumpet" and rng.random() < 0.7:
        head = "muted trumpet"
    if ev.program == 19 and ev.label == "organ" and rng.random() < 0.7:
        head = "church organ"
    if ev.label == "guitar" and ev.style == "chords" and rng.random() < 0.5:
        head = "strummed guitar"
    tempo = _pick(rng, MUSIC_TEMPO[ev.tempo]) if ev.tempo and rng.random() < 0.8 else ""
    tempo_adv = _pick(rng, MUSIC_TEMPO_ADV[ev.tempo]) if ev.tempo and rng.random() < 0.8 else ""
    register = _pick(rng, REGISTER[ev.pitch]) if ev.pitch and rng.random() < 0.8 else ""
    if ev.label == "bass" and rng.random() < 0.3:  # the part itself names the instrument
        bassline = _words("a", m.adjs(tempo, register), "bassline")
        verb = _pick(rng, ("plays", "grooves", "rumbles along", "repeats"))
        return _words(bassline, m.dist_pp), _words(bassline, verb, m.dist_pp)
    if ev.style == "chords":
        content_det, content = _pick(rng, (("", "chords"), ("a", "chord progression"), ("", "chords")))
    else:
        content_det, content = "a", _pick(rng, ("melody", "tune", "phrase", "line", "motif"))
    piece = _words(content_det, m.adjs(tempo, register), content)
    instrument = _words("a", head)
    player = PLAYERS.get(ev.label, "musician")
    noun_phrases = [
        _words(content_det, m.adjs(tempo, register), head, content, m.dist_pp),
        _words(instrument, "playing", piece, m.dist_pp),
        _words(m.adjs(tempo), head, "music", m.dist_pp),
        _words(piece, "on", instrument, m.dist_pp),
        _words("a", player, "playing", instrument, tempo_adv, m.dist_pp),
    ]
    clauses = [
        _words(instrument, "plays", piece, m.dist_pp),
        _words("someone plays", piece, "on", instrument, m.dist_pp),
        _words("a", m.adjs(), player, "plays", instrument, tempo_adv, m.dist_pp),
        _words(piece, "is played on", instrument, m.dist_pp),
        _words(instrument, "is playing", tempo_adv, m.loud_adv, m.dist_pp),
        _words(m.adjs(tempo), head, "music plays", m.dist_pp),
    ]
    if ev.style != "chords":
        noun_phrases.append(_words("a", m.adjs(tempo, register), "melody playing on", instrument, m.dist_pp))
    return _pick(rng, noun_phrases), _pick(rng, clauses)


# --- scenes --------------------------------------------------------------------------------

SINGLE = (
    "{C1}{P}.", "{N1}{P}.", "{I}{c1}.", "The sound of {n1}{P}.", "You can hear {n1}{P}.",
    "A recording of {n1}{P}.", "We hear {n1}{P}.", "This clip features {n1}{P}.", "In this recording, {c1}{P}.",
    "{N1} can be heard{P}.", "A short clip in which {c1}{P}.", "Audio of {n1}{P}.",
)
PAIR = (
    "{C1}, while {c2}{P}.", "{C1} as {c2}{P}.", "{I}{c1} and {c2}.", "{N1} and {n2}{P}.", "{N1} mixed with {n2}{P}.",
    "You can hear {n1} and {n2}{P}.", "Over {n1}, {c2}{P}.", "{C1}. Meanwhile, {c2}{P}.",
    "{C1}, and at the same time {c2}{P}.", "A recording of {n1} with {n2}{P}.", "{N1} accompanied by {n2}{P}.",
    "{C1}. {C2}{P}.", "{N1} can be heard along with {n2}{P}.", "{I}{n1} and {n2} can be heard.",
    "The sound of {n1} and {n2}{P}.", "{C1}; {c2}{P}.",
)
BACKGROUND = {
    2: ("{C1}; in the background, {c2}{P}.", "{N1} with {n2} in the background{P}.",
        "{C1}, and in the background {c2}{P}."),
    3: ("{C1}. In the background, {c2} and {c3}{P}.", "{N1}, with {n2} and {n3} in the background{P}."),
}
"""Scene templates whose later events are in the background (quiet or distant)."""
TRIPLE = (
    "{C1}, {c2}, and {c3}{P}.", "{N1}, {n2} and {n3}{P}.", "A mix of {n1}, {n2} and {n3}{P}.",
    "{I}{c1}, while {c2} and {c3}.", "You can hear {n1}, {n2}, and {n3}{P}.", "{C1}. Also, {c2} and {c3}{P}.",
    "{N1} together with {n2} and {n3}{P}.", "{C1} as {c2}. {C3}{P}.", "{I}{n1}, {n2} and {n3}.",
    "A busy scene: {n1}, {n2} and {n3}{P}.", "{C1}, {c2}; meanwhile {c3}{P}.",
)

CLOSING = {
    "many": ("The sounds overlap.", "Several sounds overlap.", "The sounds blend together."),
    "indoor": ("The room adds a slight echo.", "There is some reverberation."),
    "quiet": ("Overall the scene is quiet.", "The recording is calm and soft."),
    "loud": ("The recording is fairly loud.", "It is a loud scene."),
}

WEAK_FORMS = {
    "rain": ("rain", "rainfall", "raindrops"), "engine": ("engine", "motor", "engine noise"),
    "siren": ("siren", "sirens"), "footsteps": ("footsteps", "steps", "walking", "footfalls"),
    "knock": ("knocking", "knock", "knocks"), "bird": ("birds", "birdsong", "bird", "chirping"),
    "wind": ("wind", "breeze", "gusts"), "bell": ("bell", "bells", "ringing bell"),
    "speech": ("speech", "talking", "voice", "speaking"), "piano": ("piano", "piano music"),
    "guitar": ("guitar", "guitar music"), "violin": ("violin", "fiddle"), "trumpet": ("trumpet",),
    "flute": ("flute", "flute music"), "organ": ("organ", "organ music"), "saxophone": ("saxophone", "sax"),
    "bass": ("bass", "bassline"),
}


def _realise(rng: np.random.Generator, ev: Event) -> tuple[str, str]:
    if ev.domain == "speech":
        return _speech(rng, ev)
    if ev.domain == "music":
        return _music(rng, ev)
    return _env(rng, ev)


def _in_background(ev: Event) -> bool:
    return (ev.loudness == "quiet" or ev.distance == "distant") and ev.distance != "close"


def _closing(rng: np.random.Generator, scene: Scene) -> str:
    kinds = []
    if len(scene.events) > 1:
        kinds.append("many")
    if scene.place == "indoor":
        kinds.append("indoor")
    if all(ev.loudness == "quiet" for ev in scene.events):
        kinds.append("quiet")
    if any(ev.loudness == "loud" for ev in scene.events):
        kinds.append("loud")
    if not kinds or rng.random() < 0.7:
        return ""
    return _pick(rng, CLOSING[_pick(rng, kinds)])


def detailed_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A detailed caption of ``scene`` from the template grammar."""
    order = [scene.events[i] for i in rng.permutation(len(scene.events))]
    k = len(order)
    templates = {1: SINGLE, 2: PAIR, 3: TRIPLE}[k]
    if k > 1 and rng.random() < 0.4:
        fore = [ev for ev in order if not _in_background(ev)]
        back = [ev for ev in order if _in_background(ev)]
        if len(fore) == 1:
            order, templates = fore + back, BACKGROUND[k]
    template = _pick(rng, templates)
    slots: dict[str, str] = {}
    for i, ev in enumerate(order, start=1):  # upper-case slots start a sentence (tidy capitalises)
        slots[f"n{i}"], slots[f"c{i}"] = _realise(rng, ev)
        slots[f"N{i}"], slots[f"C{i}"] = slots[f"n{i}"], slots[f"c{i}"]
    has_place = scene.place is not None and rng.random() < 0.8
    slots["P"] = " " + _pick(rng, PLACE_PP[scene.place]) if has_place and "{I}" not in template else ""
    slots["I"] = _pick(rng, PLACE_INTRO[scene.place]) if has_place and "{I}" in template else ""
    text = tidy(template.format(**slots))
    closing = _closing(rng, scene)
    return f"{text} {closing}" if closing else text


def weak_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A terse caption: one short surface form per event ("rain and talking")."""
    forms = [_pick(rng, WEAK_FORMS[ev.label]) for ev in (scene.events[i] for i in rng.permutation(len(scene.events)))]
    if len(forms) == 1:
        return forms[0]
    joiner = _pick(rng, (" and ", " with ", ", ")) if len(forms) == 2 else ""
    if joiner:
        return joiner.join(forms)
    return ", ".join(forms[:-1]) + _pick(rng, (" and ", ", ")) + forms[-1]


SOUND_TAGS = frozenset(ENV_EVENTS) | {"speech"} | frozenset(INSTRUMENT_TAGS)


def caption_scene(rng: np.random.Generator, scene: Scene) -> tuple[str, str, list[str]]:
    """``(caption, weak_caption, events)`` for ``scene``; ``events`` are the canonical tags
    the caption expresses, in order of appearance.

    Raises ``AssertionError`` if a caption would miss a sound of the scene or name one
    that is not there (a grammar bug, never expected).
    """
    labels = {ev.label for ev in scene.events}
    caption = detailed_caption(rng, scene)
    weak = weak_caption(rng, scene)
    events = tags_in(caption)
    for text, found in ((caption, set(events)), (weak, set(tags_in(weak)))):
        sounds = found & SOUND_TAGS
        assert sounds == labels, f"caption {text!r} names {sorted(sounds)}, scene has {sorted(labels)}"
    return caption, weak, events
