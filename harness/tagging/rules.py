"""Offline rule-based caption -> tags parser (the default parser).

It follows the tag conventions of the UTS parser prompt (arXiv 2603.25767): one-word,
lowercase tags (hyphens allowed), canonical terms with synonyms collapsed, no
duplicates. The steps for one caption:

1. Lowercase and tokenise into words (letters and digits, inner hyphens kept:
   "high-pitched"); possessives and contractions are cut at the apostrophe.
2. Lemmatise each word with lemminflect (its dictionaries ship in its wheel). Part of
   speech is unknown, so the first lemma that undoes an inflection wins, trying the
   verb first for a word ending in "-ing" ("barking" -> "bark"), the adjective first
   for "-ed", and the noun first otherwise ("closer" -> "close", "comes" -> "come").
   An adverb in "-ly" becomes its adjective when the dictionary knows one ("loudly" ->
   "loud"). Words in ``lexicon.KEEP_WHOLE`` and canonical tags are left as they are.
3. Replace multi-word phrases of ``lexicon.PHRASES`` ("idling engine" -> "engine"),
   longest match first, matched on lemmas.
4. Map every other word through ``lexicon.SYNONYMS`` (surface form first, then lemma)
   and drop stopwords and non-informative words.
5. Resolve ``lexicon.CONTEXT_SENSES`` ("horn" is "trumpet" unless a vehicle is named).
6. Deduplicate, keeping the first occurrence, and cut to ``max_tags``.

Results are deterministic; per-word analysis is cached, so parsing is fast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable

from harness.tagging import lexicon

PARSER_VERSION = "rules-1.aa5aced7"
"""Version of the rule-based parser: "rules-<code revision>.<lexicon digest>".

It is a literal so that the planner can read it without importing this module. Bump the
revision when the parsing code changes its output; the digest part must equal
:func:`lexicon_digest` (a test checks it), so any edit of the lexicon forces a new
version and re-runs the tag nodes that used the old one."""


def lexicon_digest() -> str:
    """Short digest of every lexicon table (the second part of ``PARSER_VERSION``)."""
    tables = {
        "stop": sorted(lexicon.STOPWORDS),
        "noninf": sorted(lexicon.NON_INFORMATIVE),
        "syn": sorted(lexicon.SYNONYMS.items()),
        "phr": sorted([list(k), list(v)] for k, v in lexicon.PHRASES.items()),
        "ctx": sorted([k, sorted(c), t] for k, (c, t) in lexicon.CONTEXT_SENSES.items()),
        "keep": sorted(lexicon.KEEP_WHOLE),
    }
    blob = json.dumps(tables, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_TAG_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_DROP = lexicon.STOPWORDS | lexicon.NON_INFORMATIVE
_CANONICAL = frozenset(lexicon.SYNONYMS.values()) | frozenset(
    t for tags in lexicon.PHRASES.values() for t in tags
)


@functools.cache
def _lemmas(word: str) -> dict[str, tuple[str, ...]]:
    """lemminflect's dictionary lemmas of ``word`` by part of speech ({} when unknown)."""
    from lemminflect import getAllLemmas  # imported here: it pulls in numpy

    return getAllLemmas(word)


def _oov_lemma(word: str) -> str:
    """Lemma of a word lemminflect's dictionary lacks, from its inflection rules.

    Only regular inflections are undone ("wooshes" -> "woosh", "oinking" -> "oink");
    other unknown words are returned unchanged.
    """
    from lemminflect import getAllLemmasOOV

    if word.endswith(("ing", "ed")):
        upos = "VERB"
    elif word.endswith("s") and not word.endswith("ss"):
        upos = "NOUN"
    else:
        return word
    return getAllLemmasOOV(word, upos).get(upos, (word,))[0]


def _adverb_to_adjective(word: str) -> str | None:
    """The adjective an "-ly" adverb derives from ("loudly" -> "loud"), if one is known."""
    if not word.endswith("ly"):
        return None
    stem = word[:-2]
    candidates = [stem, stem[:-1] + "y" if stem.endswith("i") else "", word[:-1] + "e"]
    if word.endswith("ically"):
        candidates.insert(0, word[:-4])
    for candidate in candidates:
        if candidate and "ADJ" in _lemmas(candidate):
            return candidate
    return None


@functools.cache
def lemma(word: str) -> str:
    """Lemma of one lowercase word, with the part-of-speech preferences described above.

    Hyphenated words are lemmatised on their last part ("clip-clopping" -> "clip-clop").
    """
    if word in lexicon.KEEP_WHOLE or word in _CANONICAL:
        return word
    by_pos = _lemmas(word)
    if not by_pos:
        if "-" in word:
            head, _, last = word.rpartition("-")
            return f"{head}-{lemma(last)}"
        return _adverb_to_adjective(word) or _oov_lemma(word)
    if word.endswith("ing"):
        order = ("VERB", "NOUN", "ADJ", "ADV")
    elif word.endswith("ed"):
        order = ("ADJ", "VERB", "NOUN", "ADV")
    else:
        order = ("NOUN", "VERB", "ADJ", "ADV")
    for pos in order:
        if pos in by_pos and by_pos[pos][0] != word:
            return by_pos[pos][0]
    if word.endswith("ing"):  # a gerund the dictionary knows only as a noun
        stem = _oov_lemma(word)
        return stem if stem != word and _lemmas(stem) else word
    return _adverb_to_adjective(word) or word


@functools.cache
def _analyse(token: str) -> tuple[str, str | None]:
    """(lemma, tag) of one token; the tag is None for a word that yields no tag."""
    if token in _DROP or token.endswith("n't"):
        return token, None
    word = token.split("'", 1)[0]  # "man's" -> "man", "they're" -> "they"
    if word in _DROP:
        return word, None
    base = lemma(word)
    tag = lexicon.SYNONYMS.get(word) or lexicon.SYNONYMS.get(base) or base
    if tag in _DROP or len(tag) < 2 or not _TAG_RE.fullmatch(tag):
        return base, None
    return base, tag


@functools.cache
def _phrase_index() -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    """Phrases keyed by the lemma of their first word, longest first."""
    index: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for words, tags in lexicon.PHRASES.items():
        key = tuple(_analyse(w)[0] for w in words)
        index.setdefault(key[0], []).append((key, tags))
    for entries in index.values():
        entries.sort(key=lambda e: (-len(e[0]), e[0]))
    return index


def parse_caption(text: str, max_tags: int | None = None) -> list[str]:
    """Parse one caption into an ordered list of unique one-word lowercase tags.

    Tags come in the order their words appear in the caption. ``max_tags`` keeps only
    the first ``max_tags`` tags (None keeps all).

    >>> parse_caption("A man speaks while a car engine idles in the distance")
    ['man', 'speech', 'car', 'engine', 'distant']
    """
    tokens = _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))
    analysed = [_analyse(t) for t in tokens]
    phrases = _phrase_index()
    found: list[tuple[str, str | None]] = []  # (tag, lemma it came from, or None)
    i = 0
    while i < len(analysed):
        base, tag = analysed[i]
        for key, tags in phrases.get(base, ()):
            end = i + len(key)
            if tuple(a[0] for a in analysed[i:end]) == key:
                found.extend((t, None) for t in tags)
                i = end
                break
        else:
            if tag is not None:
                found.append((tag, base))
            i += 1
    present = {t for t, _ in found}
    out: list[str] = []
    for tag, base in found:
        sense = lexicon.CONTEXT_SENSES.get(base) if base else None
        if sense is not None and sense[0] & (present - {tag}):
            tag = sense[1]
        if tag not in out:
            out.append(tag)
    return out if max_tags is None else out[:max_tags]


def parse_many(captions: Iterable[str], max_tags: int | None = None) -> list[list[str]]:
    """Parse every caption of ``captions`` (see :func:`parse_caption`)."""
    return [parse_caption(c, max_tags) for c in captions]
