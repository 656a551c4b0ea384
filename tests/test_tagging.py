"""Tests of the caption parser and the df·idf tag system (harness.tagging)."""

from __future__ import annotations

import ast
import json
import math
import os
import random
import re
from pathlib import Path

import pytest

from harness.tagging import (
    PARSER_VERSION,
    TAGSYSTEM_VERSION,
    build_tag_system,
    filter_clips,
    multi_hot,
    parse_caption,
    parse_many,
    parse_size_name,
    read_label_file,
    score,
    size_name,
    tag_index,
    tag_sequence,
    write_label_file,
)
from harness.tagging.rules import lexicon_digest

SHARED = Path(os.environ.get("HARNESS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
UTS = SHARED / "reference" / "uts"
SIZES = {"800": 800, "1k": 1000, "1.5k": 1500, "2k": 2000, "3k": 3000}
needs_uts = pytest.mark.skipif(not UTS.is_dir(), reason=f"released UTS labels not at {UTS}")

# The mini-suite vocabulary, copied from the brief (independently of harness.tagging.lexicon):
# every surface form must parse to exactly its canonical tag.
MINI_SUITE = {
    "rain": ["rain", "rainfall", "downpour", "drizzle", "raindrops", "raining"],
    "engine": ["engine", "motor", "idling engine", "revving"],
    "siren": ["siren", "sirens", "wailing siren", "emergency siren"],
    "footsteps": ["footsteps", "footfalls", "steps", "walking", "walks"],
    "knock": ["knock", "knocks", "knocking", "rapping", "raps"],
    "bird": ["bird", "birds", "birdsong", "songbird", "chirping", "tweeting"],
    "wind": ["wind", "gusts", "gusting", "breeze", "blowing wind"],
    "bell": ["bell", "bells", "chime", "chimes", "ringing bell"],
    "speech": ["speech", "speaks", "speaking", "talks", "talking", "says", "voice",
               "narration", "narrates"],
    "man": ["man", "male", "guy", "gentleman"],
    "woman": ["woman", "female", "lady"],
    "english": ["English", "in English"],
    "french": ["French", "in French"],
    "german": ["German", "in German"],
    "spanish": ["Spanish", "in Spanish"],
    "italian": ["Italian", "in Italian"],
    "piano": ["piano", "pianist"],
    "guitar": ["guitar", "guitarist", "strummed guitar"],
    "violin": ["violin", "fiddle"],
    "trumpet": ["trumpet", "horn"],
    "flute": ["flute"],
    "organ": ["organ"],
    "saxophone": ["saxophone", "sax"],
    "bass": ["bass", "bassline"],
    "music": ["music", "tune", "melody playing", "song"],
}
MINI_ROWS = [(form, tag) for tag, forms in MINI_SUITE.items() for form in forms]


# --- parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(("form", "tag"), MINI_ROWS, ids=[f for f, _ in MINI_ROWS])
def test_mini_suite_surface_form_maps_to_canonical_tag(form: str, tag: str) -> None:
    assert parse_caption(form) == [tag]
    assert parse_caption(f"A {form} is heard.") == [tag]


def test_mini_suite_scene_captions_parse_to_exactly_their_tags() -> None:
    """Captions mixing several mini-suite forms and descriptive words (as the generator may
    write them) yield each named canonical tag and no other mini-suite tag."""
    rng = random.Random(0)
    canonical = set(MINI_SUITE)
    joins = [" and ", " while ", " with ", ", then ", " as ", " followed by "]
    extras = ["", " loudly", " in the distance", " in a quiet room", " on a street", " outdoors"]
    for _ in range(300):
        tags = rng.sample(sorted(MINI_SUITE), 3)
        parts = [f"a {rng.choice(MINI_SUITE[t])}{rng.choice(extras)}" for t in tags]
        caption = rng.choice(joins).join(parts[:2]) + rng.choice(joins) + parts[2]
        assert set(parse_caption(caption)) & canonical == set(tags), caption


@pytest.mark.parametrize(
    "word",
    ["loud", "quiet", "distant", "close", "indoor", "outdoor", "street", "room", "steady",
     "rhythmic", "high-pitched", "low-pitched", "fast", "slow", "melody", "background"],
)
def test_descriptive_words_are_kept(word: str) -> None:
    assert parse_caption(word) == [word]


@pytest.mark.parametrize(
    ("text", "tag"),
    [("loudly", "loud"), ("quietly", "quiet"), ("softly", "soft"), ("high pitched", "high-pitched"),
     ("in the distance", "distant"), ("automobile", "car"), ("puppies", "dog"),
     ("kids", "child"), ("ladies", "woman"), ("gentlemen", "man"), ("barking", "bark"),
     ("geese", "goose"), ("rhythmically", "rhythmic"), ("clip-clopping", "clip-clop")],
)
def test_variants_map_to_canonical_form(text: str, tag: str) -> None:
    assert parse_caption(text) == [tag]


def test_parser_drops_stopwords_and_non_informative_words() -> None:
    caption = "Someone is heard as the sounds of a dog barking are followed by it and then more"
    assert parse_caption(caption) == ["dog", "bark"]
    assert parse_caption("The, a, an; and it is being heard!") == []


def test_parser_output_is_unique_one_word_lowercase_in_caption_order() -> None:
    tags = parse_caption(
        "A MAN speaks loudly, then a man's voice and Birds chirp while a car's engine "
        "revs in the distance; a man speaks again"
    )
    assert tags == ["man", "speech", "loud", "bird", "car", "engine", "distant"]
    pattern = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
    for caption in ["A high-pitched beep, 3 times!", "Rain & wind: a storm's roar", "Dogs' barks"]:
        out = parse_caption(caption)
        assert out and all(pattern.fullmatch(t) for t in out) and len(out) == len(set(out))


def test_horn_is_a_trumpet_unless_a_vehicle_is_named() -> None:
    assert parse_caption("a horn plays a slow melody") == ["trumpet", "slow", "melody"]
    assert parse_caption("a car horn honks") == ["car", "horn", "honk"]
    assert parse_caption("horns honk in traffic") == ["horn", "honk", "traffic"]
    assert parse_caption("crickets chirping") == ["cricket"]


def test_max_tags_and_parse_many() -> None:
    caption = "a woman speaks while rain falls and a dog barks"
    assert parse_caption(caption) == ["woman", "speech", "rain", "fall", "dog", "bark"]
    assert parse_caption(caption, max_tags=3) == ["woman", "speech", "rain"]
    assert parse_many([caption, "", "wind"], max_tags=2) == [["woman", "speech"], [], ["wind"]]


def test_parser_version_tracks_the_lexicon() -> None:
    digest = lexicon_digest()
    assert PARSER_VERSION.rsplit(".", 1)[1] == digest, (
        f"the lexicon changed: set PARSER_VERSION = \"rules-<n>.{digest}\" in harness/tagging/rules.py"
    )


@pytest.mark.parametrize(("module", "name"), [("rules", "PARSER_VERSION"), ("tagsystem", "TAGSYSTEM_VERSION")])
def test_versions_are_literal_constants(module: str, name: str) -> None:
    """The planner reads versions from the source without importing: they must be literals."""
    source = (Path(__file__).resolve().parents[1] / "harness" / "tagging" / f"{module}.py").read_text()
    values = [stmt.value.value for stmt in ast.parse(source).body
              if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
              and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets)]
    assert values == [PARSER_VERSION if module == "rules" else TAGSYSTEM_VERSION]


# --- score and ranking ----------------------------------------------------------------

# Five clips; by hand: df(dog)=3, df(bark)=2, df(man)=2, df(car)=1, N=5.
TOY = [["dog", "bark"], ["dog", "man", "dog"], ["bark", "man", "dog"], ["car"], []]
# s = df * ln((N+1)/(df+1)): dog 3*ln(6/4), bark and man 2*ln(6/3), car 1*ln(6/2).
TOY_SCORES = {"dog": 1.2163953243244932, "bark": 1.3862943611198906,
              "man": 1.3862943611198906, "car": 1.0986122886681098}


def test_score_matches_hand_computed_values() -> None:
    assert score(3, 5) == pytest.approx(3 * 0.4054651081081644)
    assert score(2, 5) == pytest.approx(2 * 0.6931471805599453)
    assert score(0, 5) == 0.0
    assert score(5, 5) == pytest.approx(5 * math.log(6 / 6))
    with pytest.raises(ValueError):
        score(6, 5)


def test_build_tag_system_on_toy_corpus() -> None:
    ts = build_tag_system(TOY)
    assert ts.n_clips == 5
    assert ts.df == {"dog": 3, "bark": 2, "man": 2, "car": 1}  # repeats within a clip count once
    assert ts.score == pytest.approx(TOY_SCORES)
    # dog has the highest df but not the highest score; bark and man tie, broken by name.
    assert ts.ranked == ["bark", "man", "dog", "car"]
    assert ts.rank == {"bark": 0, "man": 1, "dog": 2, "car": 3}
    assert ts.top(2) == ["bark", "man"] and ts.top(10) == ts.ranked
    assert ts.to_rows()[2] == {"tag": "dog", "df": 3, "score": pytest.approx(1.2163953243244932),
                               "rank": 2}
    # Clips with a tag in the top k: k=1 -> clips 0, 2; k=2 adds 1; k=4 adds 3; clip 4 never.
    assert [ts.coverage(k) for k in range(5)] == [0.0, 0.4, 0.6, 0.6, 0.8]
    assert ts.occurrence_coverage(1) == pytest.approx(2 / 8)


def test_ranking_is_independent_of_clip_and_tag_order() -> None:
    shuffled = [list(reversed(c)) for c in reversed(TOY)]
    assert build_tag_system(shuffled).ranked == build_tag_system(TOY).ranked
    # Equal score and df: alphabetical.
    assert build_tag_system([["b"], ["a"], ["c"]]).ranked == ["a", "b", "c"]


# --- size names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "name"),
    [(800, "800"), (1000, "1k"), (1500, "1.5k"), (2000, "2k"), (3000, "3k"), (16, "16"),
     (1250, "1.25k"), (10000, "10k"), (1001, "1.001k")],
)
def test_size_name_round_trip(k: int, name: str) -> None:
    assert size_name(k) == name
    assert parse_size_name(name) == k


@pytest.mark.parametrize("bad", ["", "k", "1.0005k", "-5", "0", "abc", "1.5m", "nan"])
def test_parse_size_name_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size_name(bad)


def test_size_name_rejects_non_positive() -> None:
    for bad in (0, -800, True):
        with pytest.raises(ValueError):
            size_name(bad)


# --- label files ----------------------------------------------------------------------


@needs_uts
@pytest.mark.parametrize("name", list(SIZES))
def test_released_label_file_round_trips_byte_identically(name: str, tmp_path: Path) -> None:
    src = UTS / f"label_{name}.json"
    tags = read_label_file(src, allow_duplicates=True)
    assert len(tags) == SIZES[name]
    out = tmp_path / "sub" / f"label_{name}.json"
    write_label_file(out, tags, allow_duplicates=True)
    assert out.read_bytes() == src.read_bytes()
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temporary file left


@needs_uts
def test_released_files_are_nested_prefixes_of_the_3k_file() -> None:
    full = read_label_file(UTS / "label_3k.json", allow_duplicates=True)
    for name in ("800", "1k", "1.5k"):
        assert read_label_file(UTS / f"label_{name}.json", allow_duplicates=True) == full[: SIZES[name]]
    # The released 2k file swaps two neighbours (indices 1840 and 1841) relative to the 3k.
    two_k = read_label_file(UTS / "label_2k.json", allow_duplicates=True)
    assert set(two_k) == set(full[:2000])
    assert [i for i in range(2000) if two_k[i] != full[i]] == [1840, 1841]


@needs_uts
def test_released_duplicate_is_rejected_by_default() -> None:
    with pytest.raises(ValueError, match=r"label_1\.5k\.json.*'instructional'.*89 and 1348"):
        read_label_file(UTS / "label_1.5k.json")
    assert len(read_label_file(UTS / "label_800.json")) == 800


def test_write_then_read_label_file(tmp_path: Path) -> None:
    path = tmp_path / "label_3.json"
    write_label_file(path, ["dog", "pokémon", "high-pitched"])
    assert path.read_bytes() == b'{\n  "0": "dog",\n  "1": "pok\\u00e9mon",\n  "2": "high-pitched"\n}'
    assert read_label_file(path) == ["dog", "pokémon", "high-pitched"]
    with pytest.raises(ValueError, match="appears twice"):
        write_label_file(path, ["dog", "dog"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "not a JSON label file"),
     ('["dog", "cat"]', "expected a JSON object"),
     ("{}", "no tags"),
     ('{"0": "dog", "2": "cat"}', r"keys must be the indices 0\.\.1.*'2'"),
     ('{"1": "dog", "2": "cat"}', "keys must be the indices"),
     ('{"0": "dog", "1": ""}', "entry 1 is not a non-empty string"),
     ('{"0": "dog", "1": 7}', "entry 1 is not a non-empty string"),
     ('{"0": "dog", "1": "dog"}', "'dog' appears twice")],
)
def test_read_label_file_rejects_bad_files(content: str, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=problem) as err:
        read_label_file(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message


# --- filtering and targets ------------------------------------------------------------


def test_filter_clips_drops_out_of_vocabulary_tags_and_empty_clips() -> None:
    clips = [["dog", "bark", "zebra"], ["zebra"], [], ["man", "dog"]]
    kept, filtered = filter_clips(clips, ["dog", "man", "bark"])
    assert kept == [0, 3]
    assert filtered == [["dog", "bark"], ["man", "dog"]]


def test_multi_hot_and_tag_sequence() -> None:
    vocab = ["speech", "music", "dog", "bark"]
    index = tag_index(vocab)
    assert multi_hot(["bark", "speech", "zebra", "bark"], index) == [1, 0, 0, 1]
    assert multi_hot([], index, size=6) == [0] * 6
    # PAR target: in-vocabulary tags ordered by tag-system rank, not by caption order.
    assert tag_sequence(["bark", "zebra", "dog", "speech", "dog"], index) == "speech, dog, bark"
    assert tag_sequence(["zebra"], index) == ""
    assert tag_index(["a", "b", "a"]) == {"a": 0, "b": 1}


def test_pipeline_parse_build_write_read(tmp_path: Path) -> None:
    captions = ["A dog barks", "A dog barks and a man speaks", "Wind blows", "A man talks"]
    ts = build_tag_system(parse_many(captions))
    assert ts.df == {"dog": 2, "bark": 2, "man": 2, "speech": 2, "wind": 1}
    path = tmp_path / f"label_{size_name(3)}.json"
    write_label_file(path, ts.top(3))
    assert read_label_file(path) == ["bark", "dog", "man"]
    assert json.loads(path.read_text()) == {"0": "bark", "1": "dog", "2": "man"}
