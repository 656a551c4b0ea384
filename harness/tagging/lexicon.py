"""Word lists and synonym tables of the rule-based caption parser.

Everything here is plain data, so the parser's behaviour can be read (and reviewed) in
one place. The tables follow the UTS parser prompt (arXiv 2603.25767): one-word,
lowercase, canonical and reusable tags, synonyms collapsed (always "car", never
"automobile"), covering scene, sources, events, audio traits and intent.

Keys are matched against a token's surface form first and then against its lemma, so a
row needs only the base form ("gust" covers "gusts" and "gusting") unless the lemmatiser
would turn the surface form into something else.

Tables:

- ``STOPWORDS``: function words (articles, pronouns, prepositions, auxiliaries, ...).
- ``NON_INFORMATIVE``: content words that say nothing about the audio ("sound",
  "heard", "someone", "followed", "several", ...).
- ``MINI_SUITE_SYNONYMS``: canonical tag -> surface forms, exactly the vocabulary the
  mini-suite generator writes captions from. These mappings are a contract.
- ``GENERAL_SYNONYMS``: canonical tag -> surface forms for AudioCaps-style captions.
- ``PHRASES``: multi-word surface form -> the tags it stands for.
- ``CONTEXT_SENSES``: a word that takes another tag when the caption also holds one of a
  set of context tags ("horn" is a trumpet, unless a car is around).
- ``KEEP_WHOLE``: words kept as they are instead of being lemmatised.
"""

from __future__ import annotations

STOPWORDS: frozenset[str] = frozenset(
    """
    a an the this that these those there here it its it's itself they them their theirs
    he him his himself she her hers herself we us our you your i me my one ones
    who whom whose which what whatever whoever where when while whilst why how
    and or but nor so yet if than as because though although until unless whether
    either neither both each every all any some such no not none only own
    of in on at by for from to into onto out off up down over under above below
    with without within through throughout during before after behind beneath
    between among amongst around about across along alongside against toward towards
    upon via per past beyond near inside underneath amid amidst like unlike
    be am is are was were been being do does did doing done have has had having
    can could may might must shall should will would
    isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't
    then again also just still even very really quite rather somewhat slightly too
    much more most less least almost nearly mostly mainly partly
    now soon later once twice thrice meanwhile already ever never always often
    sometimes usually eventually finally shortly briefly afterward afterwards
    away back forth apart aside together else otherwise instead
    two three four five six seven eight nine ten eleven twelve dozen hundred
    first second third last next
    """.split()
)
"""Function words: articles, pronouns, prepositions, conjunctions, auxiliaries,
numerals and adverbs of time, degree and sequence."""

NON_INFORMATIVE: frozenset[str] = frozenset(
    """
    sound sounding audio clip heard hear listen
    someone somebody something anyone anybody anything everyone everybody everything
    nobody nothing person thing stuff object item
    make get go come take give let put keep try use become remain seem
    appear begin start stop continue finish end follow occur happen produce emit
    create include accompany present proceed deliver run work operate turn cause play
    mix
    several multiple many few various different same other another certain whole
    entire single brief little lot lots bit couple series sequence group bunch number
    amount variety kind type sort way place time moment minute part rest instance
    surface area level total overall used further thereafter
    """.split()
)
"""Content words that carry no information about the audio.

"sound" is dropped because every caption describes a sound; "noise" and "background"
are kept (they describe the recording)."""

MINI_SUITE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "rain": ("rain", "rainfall", "downpour", "drizzle", "raindrops", "raining"),
    "engine": ("engine", "motor", "idling engine", "revving"),
    "siren": ("siren", "sirens", "wailing siren", "emergency siren"),
    "footsteps": ("footsteps", "footfalls", "steps", "walking", "walks"),
    "knock": ("knock", "knocks", "knocking", "rapping", "raps"),
    "bird": ("bird", "birds", "birdsong", "songbird", "chirping", "tweeting"),
    "wind": ("wind", "gusts", "gusting", "breeze", "blowing wind"),
    "bell": ("bell", "bells", "chime", "chimes", "ringing bell"),
    "speech": (
        "speech", "speaks", "speaking", "talks", "talking", "says", "voice",
        "narration", "narrates",
    ),
    "man": ("man", "male", "guy", "gentleman"),
    "woman": ("woman", "female", "lady"),
    "english": ("english",),
    "french": ("french",),
    "german": ("german",),
    "spanish": ("spanish",),
    "italian": ("italian",),
    "piano": ("piano", "pianist"),
    "guitar": ("guitar", "guitarist", "strummed guitar"),
    "violin": ("violin", "fiddle"),
    "trumpet": ("trumpet", "horn"),
    "flute": ("flute",),
    "organ": ("organ",),
    "saxophone": ("saxophone", "sax"),
    "bass": ("bass", "bassline"),
    "music": ("music", "tune", "melody playing", "song"),
}
"""The mini-suite vocabulary: canonical tag -> the surface forms its captions use.

The mini-suite generator builds its captions from this same table, so every row must
parse to exactly its canonical tag (tests check each one)."""

GENERAL_SYNONYMS: dict[str, tuple[str, ...]] = {
    # People and voices.
    "man": ("men", "males", "gentlemen", "guys", "adult male"),
    "woman": ("women", "females", "ladies", "adult female"),
    "child": ("kid", "kids", "children", "youngster", "toddler"),
    "baby": ("infant", "newborn"),
    "speech": (
        "speak", "talk", "say", "narrate", "narrating", "narrator", "voices",
        "monologue", "speeches", "spoken", "communicate", "lecture",
    ),
    "conversation": ("converse", "conversing", "dialogue", "discussion"),
    "singing": ("sing", "sings", "sang", "sung"),
    "laughter": ("laugh", "laughing"),
    "applause": ("applaud", "applauding"),
    "shout": ("yell", "holler"),
    "burp": ("belch",),
    "bleat": ("baa", "baas", "baaing"),
    "crowd": ("audience",),
    # Animals.
    "dog": ("pooch", "puppy", "puppies", "doggy", "hound"),
    "cat": ("kitten", "kitty"),
    "chicken": ("hen", "hens", "chick", "chicks"),
    "bird": ("tweet", "chirp"),
    "insect": ("bug",),
    "pigeon": ("dove",),
    # Vehicles and machines.
    "car": ("automobile", "auto", "sedan"),
    "truck": ("lorry",),
    "motorcycle": ("motorbike",),
    "airplane": ("aeroplane", "plane", "aircraft", "airliner"),
    "helicopter": ("chopper",),
    "motorboat": ("speedboat",),
    "train": ("locomotive",),
    "tire": ("tyre",),
    "engine": ("rev", "revs", "revved"),
    "footsteps": ("footstep", "footfall", "step", "walk"),
    "knock": ("rap",),
    "bell": ("chiming",),
    "wind": ("gust", "breezes", "windy"),
    "rain": ("raindrop", "rainy"),
    "gunshot": ("gunfire",),
    # Music.
    "music": ("musical",),
    "drum": ("drums", "drummer", "drumming"),
    # Scene and traits.
    "distant": ("distance", "far", "faraway", "afar", "far away", "far off"),
    "close": ("nearby", "close by", "up close"),
    "indoor": ("indoors",),
    "outdoor": ("outdoors", "outside"),
    "high-pitched": ("high pitched", "high-pitch", "high pitch"),
    "low-pitched": ("low pitched", "low-pitch", "low pitch"),
    "fast": ("quick", "quickly"),
    "continuous": ("continuously", "constant", "constantly", "ongoing"),
    "intermittent": ("intermittently", "sporadic", "sporadically", "periodically"),
    "repetitive": ("repeat", "repeated", "repeatedly", "repeating", "repetitively"),
    "tick-tock": ("ticktock", "ticktocks", "tick-tocking", "tick tock"),
    "leaf": ("leaves",),
    "low": ("lowly",),
    "noise": ("white noise",),
    # Inflections and spellings the lemmatiser misses, and near-duplicates.
    "meow": ("meowing", "mew"),
    "muffled": ("muffle",),
    "clip-clop": ("clop", "clip clop"),
    "whir": ("whirr",),
    "vibration": ("vibrate",),
    "rustling": ("rustle",),
    "scrape": ("scrapping",),
}
"""Synonyms for AudioCaps-style captions: canonical tag -> surface forms (single words
or phrases). Kept apart from the mini-suite table, which is a contract."""

CONTEXT_SENSES: dict[str, tuple[frozenset[str], str]] = {
    "horn": (
        frozenset(
            "car vehicle truck train bus boat ship van taxi traffic motorcycle honk beep "
            "blare".split()
        ),
        "horn",
    ),
    "chirp": (frozenset({"cricket", "insect", "frog"}), "chirp"),
    "rap": (frozenset({"rapper", "hip-hop", "lyric"}), "rap"),
}
"""Lemma -> (context tags, tag). A word whose lemma is listed here takes the given tag
instead of its synonym when the caption's other tags include a context tag: "horn" is
"trumpet" (mini-suite contract) except near a vehicle, "chirping" is "bird" except near
crickets, "rapping" is "knock" except near a rapper. Context tags never include a
mini-suite tag, so mini-suite captions always parse to their canonical tags."""

KEEP_WHOLE: frozenset[str] = frozenset(
    """
    typing sewing rustling clothing building ceiling morning evening wedding meeting
    recording painting tuning wiring plumbing bedding railing siding shopping clothes
    washing
    muffled distorted compressed amplified
    """.split()
)
"""Words kept whole instead of being lemmatised: "-ing" nouns ("typing", not "type") and
"-ed" adjectives that describe a recording ("muffled", not "muffle")."""


def _pairs() -> tuple[dict[str, str], dict[tuple[str, ...], tuple[str, ...]]]:
    """Flatten the synonym tables into single-word and multi-word lookups.

    Mini-suite rows are applied last, so they win over a general row for the same
    surface form.
    """
    single: dict[str, str] = {}
    phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
    for table in (GENERAL_SYNONYMS, MINI_SUITE_SYNONYMS):
        for canonical, forms in table.items():
            for form in forms:
                words = tuple(form.split())
                if len(words) == 1:
                    single[words[0]] = canonical
                else:
                    phrases[words] = (canonical,)
    return single, phrases


SYNONYMS, _SYNONYM_PHRASES = _pairs()
"""Single surface word (or lemma) -> canonical tag."""

PHRASES: dict[tuple[str, ...], tuple[str, ...]] = {
    **_SYNONYM_PHRASES,
    # Vehicle horns are horns, not trumpets; the source is kept too.
    **{(v, "horn"): (v, "horn") for v in ("car", "truck", "train", "bus", "boat", "ship")},
    ("vehicle", "horn"): ("vehicle", "horn"),
    ("air", "horn"): ("horn",),
    ("fog", "horn"): ("horn",),
    # Other sources that chirp.
    ("cricket", "chirp"): ("cricket",),
    ("chirp", "cricket"): ("cricket",),
    ("insect", "chirp"): ("insect",),
    ("chirp", "insect"): ("insect",),
    # Wind and bell events in the other word order.
    ("wind", "blow"): ("wind",),
    ("bell", "ring"): ("bell",),
    ("engine", "idle"): ("engine",),
    ("siren", "wail"): ("siren",),
    # A voice is speech; a male voice is a man's speech.
    ("male", "voice"): ("man", "speech"),
    ("female", "voice"): ("woman", "speech"),
    # Idioms with no one-word surface form.
    ("high", "frequency"): ("high-pitched",),
    ("low", "frequency"): ("low-pitched",),
    ("in", "the", "background"): ("background",),
    ("in", "the", "foreground"): ("foreground",),
    ("rap", "music"): ("rap", "music"),
}
"""Multi-word surface form (as a tuple of lemmas) -> the tags it stands for.

Keys are written as lemmas of their words ("wind blow" covers "wind blowing" and "wind
blows"); the parser lemmatises phrase keys with the same lemmatiser it uses on
captions, so surface spellings such as "idling engine" also work."""
