"""The tag-system figures (UTS Fig. 2) and `harness figure`: what the figures show, not that files exist."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.errors import HarnessError
from results import figures
from results.figures import (coverage, embed_texts, labelled_classes, load_label_file, longtail_figure,
                             tag_frequencies, tsne_figure, wordcloud_figure)
from results.style import text_problems

SHARED = Path(__file__).resolve().parents[2] / "shared"
MIRROR = Path(os.environ.get("HARNESS_MIRROR") or SHARED / "mirror")
AUDIOSET_CSV = MIRROR / "audioset_class_labels_indices.csv"
AUDIOSET_JSON = SHARED / "reference" / "labels" / "id2label_audioset.json"
UTS_800 = SHARED / "reference" / "uts" / "label_800.json"
UTS_15K = SHARED / "reference" / "uts" / "label_1.5k.json"
needs_shared = pytest.mark.skipif(not (AUDIOSET_CSV.is_file() and UTS_800.is_file()),
                                  reason="../shared (mirror and reference) is not beside the project")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Each test gets its own $HARNESS_HOME: the embedding cache starts empty."""
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2, loaded once for the module (also registered as results.figures' model)."""
    embed = figures._embedder(None)
    return embed


def unit(*degrees: float) -> np.ndarray:
    return np.array([[np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))] for a in degrees])


def fake_embed(table: dict[str, np.ndarray]):
    return lambda texts: np.stack([table[t] for t in texts])


def direct_coverage(t: np.ndarray, a: np.ndarray, d: float) -> tuple[float, float]:
    """The definition written out label by label, in float64."""
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    a_hits = [min(1 - float(np.dot(x, y)) for y in t) <= d for x in a]
    t_hits = [min(1 - float(np.dot(y, x)) for x in a) <= d for y in t]
    return float(np.mean(a_hits)), float(np.mean(t_hits))


# --------------------------------------------------------------------------- reading files


def test_tag_frequencies_reads_every_format_as_document_frequency(tmp_path):
    clips = [["dog", "bark", "dog"], ["dog", "rain"], ["rain"]]  # "dog" twice in one clip counts once
    expected = Counter({"dog": 2, "bark": 1, "rain": 2})

    tags = tmp_path / "tags.jsonl"
    tags.write_text("".join(json.dumps({"id": str(i), "tags": t}) + "\n" for i, t in enumerate(clips)) + "\n")
    assert tag_frequencies(tags) == expected

    manifest = tmp_path / "cuts.jsonl.gz"
    cuts = [{"id": "a", "custom": {"audio_tag": clips[0]}},
            {"id": "b", "custom": {"audio_tag": "dog, rain"}},  # one comma-separated string
            {"id": "c", "supervisions": [{"id": "s", "custom": {"audio_tag": ["rain"]}}]}]
    with gzip.open(manifest, "wt") as f:
        f.writelines(json.dumps(c) + "\n" for c in cuts)
    assert tag_frequencies(manifest) == expected

    table = tmp_path / "tags.csv"
    table.write_text('id,tags\n1,"[""dog"", ""bark"", ""dog""]"\n2,dog;rain\n3,rain\n')
    assert tag_frequencies(table) == expected

    stats = tmp_path / "stats.csv"  # `harness tags build` writes rank,tag,df,score
    stats.write_text("rank,tag,df,score\n1,dog,2,0.1\n2,rain,2,0.1\n3,bark,1,0.4\n")
    assert tag_frequencies(stats) == expected


@pytest.mark.parametrize("name, content, message", [
    ("missing.jsonl", None, "tags file not found"),
    ("tags.txt", "dog\n", "expected a TAGS.jsonl"),
    ("tags.jsonl", '{"id": "1", "caption": "a dog"}\n', ":1: expected one JSON object per line with a 'tags' list"),
    ("tags.jsonl", "not json\n", ":1: not JSON"),
    ("tags.csv", "id,caption\n1,a dog\n", "expected a CSV with a 'tags' column"),
    ("tags.jsonl", "", "no tags in the file"),
])
def test_tag_frequencies_rejects_bad_files_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(HarnessError) as exc:
        tag_frequencies(path)
    assert len(exc.value.problems) == 1 and "\n" not in exc.value.problems[0]
    assert str(path) in exc.value.problems[0] and message in exc.value.problems[0]


@needs_shared
def test_load_label_file_reads_tag_systems_and_audioset():
    uts = load_label_file(UTS_800)
    assert len(uts) == 800 and uts[0] == "electronic"
    assert len(load_label_file(UTS_15K)) == 1500  # the released file repeats one tag: kept here
    audioset = load_label_file(AUDIOSET_CSV)
    assert len(audioset) == 527 and audioset[:2] == ["Speech", "Male speech, man speaking"]
    if AUDIOSET_JSON.is_file():
        assert load_label_file(AUDIOSET_JSON) == audioset


def test_load_label_file_orders_by_index_and_rejects_bad_files(tmp_path):
    classes = tmp_path / "classes.csv"
    classes.write_text('index,mid,display_name\n1,/m/b,"Bark"\n0,/m/a,"Dog, puppy"\n')
    assert load_label_file(classes) == ["Dog, puppy", "Bark"]
    bad = {"list.json": '["dog", "bark"]', "gaps.json": '{"0": "dog", "2": "bark"}', "broken.json": "{",
           "nocol.csv": "index,name\n0,dog\n", "labels.txt": "dog\n"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(HarnessError) as exc:
            load_label_file(tmp_path / name)
        line = exc.value.problems[0]
        assert len(exc.value.problems) == 1 and str(tmp_path / name) in line and "expected" in line, line


# --------------------------------------------------------------------------- long tail


def test_longtail_plots_rank_frequency_on_log_axes_with_head_shares(tmp_path):
    freqs = {f"t{i:02d}": 1000 // i for i in range(1, 51)}
    result = longtail_figure(freqs, tmp_path / "lt", ks=(5, 10, 100), return_figure=True)
    counts = np.array(sorted(freqs.values(), reverse=True))
    assert result["n_tags"] == 50 and result["total"] == counts.sum()
    for k in (5, 10):
        assert result["head_share"][k] == pytest.approx(counts[:k].sum() / counts.sum())
        assert result["tail_share"][k] == pytest.approx(1 - counts[:k].sum() / counts.sum())
    assert result["head_share"][100] == 1.0 and result["ks_marked"] == [5, 10]

    ax = result["figure"].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "tag rank" and ax.get_ylabel() == "clips with the tag"
    curve = next(line for line in ax.get_lines() if line.get_label() == "clips per tag")
    np.testing.assert_array_equal(curve.get_xdata(), np.arange(1, 51))
    np.testing.assert_array_equal(curve.get_ydata(), counts)
    lines = [line for line in ax.get_lines() if line.get_label().startswith("K = ")]
    assert [line.get_xdata()[0] for line in lines] == [5, 10]  # K=100 > 50 tags: no line
    assert all(line.get_linestyle() == "--" for line in lines)  # dashed lines, as the caption says
    fig = result["figure"]
    assert ax.get_legend() is None and len(fig.legends) == 1  # one legend, outside the axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"K = 5: top 5 tags cover {result['head_share'][5]:.1%} of occurrences" in legend
    assert f"K = 10: top 10 tags cover {result['head_share'][10]:.1%} of occurrences" in legend
    assert text_problems(fig) == []
    assert fig.get_size_inches()[0] == pytest.approx(6.9)


def test_every_tag_figure_fits_one_column_with_clean_text(tmp_path, monkeypatch):
    """Acceptance: at 3.3 in (one column) and 6.9 in, no text under 7 pt, no overlapping
    text, legends clear of the data; the word cloud's smallest word is 7 pt at print size."""
    from results import style

    problems = {}
    real = style.save

    def checked(fig, stem):
        problems[Path(stem).name] = (fig.get_size_inches()[0], text_problems(fig))
        return real(fig, stem)

    monkeypatch.setattr(style, "save", checked)
    freqs = Counter({f"tag{i:03d}": 2000 // i for i in range(1, 199)})
    cloud = wordcloud_figure(freqs, tmp_path / "wc", one_column=tmp_path / "wc_1col")
    longtail_figure(freqs, tmp_path / "lt", ks=(32, 64), one_column=tmp_path / "lt_1col")
    assert {name: size for name, (size, _) in problems.items()} == {"wc": 6.9, "wc_1col": 3.3, "lt": 6.9,
                                                                   "lt_1col": 3.3}
    assert all(not p for _, p in problems.values()), problems
    assert cloud["min_font_pt"] >= 7.0
    # the narrower cloud holds fewer of the most frequent tags, and says how many
    assert 0 < cloud["one_column"]["n_words"] < cloud["n_words"] < 198
    assert cloud["words"] == [t for t, _ in freqs.most_common(cloud["n_words"])]


# --------------------------------------------------------------------------- word cloud


def test_wordcloud_draws_input_words_most_frequent_first_and_is_byte_stable(tmp_path):
    freqs = Counter({"speech": 500, "dog": 120, "rain": 90, "engine": 60, "bird": 40, "car": 30, "wind": 20,
                     "music": 15, "siren": 10, "bell": 5, "hum": 3, "clap": 2})
    a = wordcloud_figure(freqs, tmp_path / "a", max_words=8, seed=3, return_figure=True)
    assert a["words"][0] == "speech"  # the most frequent tag is drawn, and drawn first (largest)
    assert set(a["words"]) <= set(freqs) and a["n_words"] == len(a["words"]) <= 8
    assert set(a["words"]) <= {t for t, _ in freqs.most_common(8)}
    assert a["top"][:2] == [["speech", 500], ["dog", 120]]
    image = a["figure"].axes[0].get_images()[0].get_array()
    assert image.shape[:2] == (1035, 2070) and not a["figure"].axes[0].axison  # 6.9 x 3.45 in at 300 dpi
    b = wordcloud_figure(dict(reversed(list(freqs.items()))), tmp_path / "b", max_words=8, seed=3)
    assert b["words"] == a["words"]  # input order does not matter
    for ext in ("png", "pdf"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


# --------------------------------------------------------------------------- coverage


def test_coverage_of_identical_sets_is_complete_at_any_distance():
    table = dict(zip("abcd", unit(0, 40, 100, 250)))
    result = coverage(list("abcd"), list("dcba"), d=(0.0, 0.2, 0.5), embed=fake_embed(table))
    assert result["audioset_covered"] == {0.0: 1.0, 0.2: 1.0, 0.5: 1.0}
    assert result["tags_covered"] == {0.0: 1.0, 0.2: 1.0, 0.5: 1.0}
    assert result["nn_audioset_to_tag"]["q100"] == 0.0 and result["nn_tag_to_audioset"]["mean"] == 0.0


def test_coverage_of_known_vectors_matches_the_definition():
    # tags at 0 and 90 degrees; AudioSet at 0, 60 and 180 degrees:
    # AudioSet NN distances 0, 1 - cos 30 = 0.134, 1 - cos 90 = 1; tag NN distances 0, 0.134
    table = {"t0": unit(0)[0], "t90": unit(90)[0], "A0": unit(0)[0], "A60": unit(60)[0], "A180": unit(180)[0]}
    result = coverage(["t0", "t90", "t0"], ["A0", "A60", "A180"], d=(0.1, 0.2, 1.0), embed=fake_embed(table))
    assert result["audioset_covered"] == pytest.approx({0.1: 1 / 3, 0.2: 2 / 3, 1.0: 1.0})
    assert result["tags_covered"] == pytest.approx({0.1: 1 / 2, 0.2: 1.0, 1.0: 1.0})
    assert result["nn_audioset_to_tag"]["q100"] == pytest.approx(1.0)
    assert result["nn_tag_to_audioset"]["q100"] == pytest.approx(1 - np.cos(np.deg2rad(30)))
    assert result["n_tags"] == 2 and result["duplicates_dropped"] == {"tags": 1, "audioset": 0}
    assert result["least_covered"][0][:2] == ["A180", "t90"] or result["least_covered"][0][:2] == ["A180", "t0"]


def test_coverage_with_minilm_matches_direct_numpy_and_is_cached(minilm, home, monkeypatch):
    tags = ["dog", "bark", "rain", "engine", "guitar", "speech", "laughter"]
    audioset = ["Dog", "Bark", "Rain on surface", "Vehicle", "Acoustic guitar", "Male speech, man speaking", "Oink"]
    result = coverage(tags, audioset, d=(0.2, 0.3, 0.4, 0.5))
    t, a = minilm(tags), minilm(audioset)  # multi-word AudioSet names embedded whole
    for d in (0.2, 0.3, 0.4, 0.5):
        a_share, t_share = direct_coverage(t, a, d)
        assert result["audioset_covered"][d] == pytest.approx(a_share)
        assert result["tags_covered"][d] == pytest.approx(t_share)
    direct = np.min(1 - (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1,
                                                                                                keepdims=True)).T, 1)
    assert result["nn_audioset_to_tag"]["q50"] == pytest.approx(float(np.median(direct)), abs=1e-5)
    assert result["audioset_covered"][0.2] > 0 and result["tags_covered"][0.5] < 1  # not a trivial case

    cached = sorted((home / "text-embeddings").glob("*.npy"))
    assert len(cached) == 2  # one entry per label list, named by content
    monkeypatch.setattr(figures, "_embedder", lambda *_: pytest.fail("the model ran on a cache hit"))
    assert coverage(tags, audioset, d=(0.2, 0.3, 0.4, 0.5)) == result
    assert any(np.array_equal(embed_texts(tags), np.load(path)) for path in cached)


# --------------------------------------------------------------------------- t-SNE


@needs_shared
def test_tsne_scatters_both_sets_with_nn_distance_panel_and_is_deterministic(minilm, tmp_path):
    tags = load_label_file(UTS_800)[:90]
    audioset = load_label_file(AUDIOSET_CSV)[:40]
    a = tsne_figure(tags, audioset, tmp_path / "a", seed=1, tag_name="UTS-800", return_figure=True,
                    one_column=tmp_path / "a_1col")
    left, right = a["figure"].axes
    points = [c.get_offsets() for c in left.collections[:2]]
    assert [len(p) for p in points] == [90, 40]  # every label drawn once, in its own set
    assert sum(len(p) for p in points) == a["n_tags"] + a["n_audioset"] == 130
    np.testing.assert_allclose(np.vstack(points), a["xy"])
    tags_dots, audioset_dots = left.collections[:2]
    assert tags_dots.get_zorder() > audioset_dots.get_zorder()  # the tags on top, and larger
    assert tags_dots.get_sizes()[0] > audioset_dots.get_sizes()[0]
    colours = [tuple(c.get_facecolor()[0][:3]) for c in left.collections[:2]]
    assert colours[0] != colours[1]
    fig = a["figure"]
    assert left.get_legend() is None and right.get_legend() is None and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "UTS-800 (90 tags)", "AudioSet (40 labels)", "tag \u2192 nearest AudioSet label",
        "AudioSet label \u2192 nearest tag"]
    # a few AudioSet classes written with their nearest tag, as the result says
    written = [t.get_text() for t in left.texts]
    assert written and written == [f"{c} \u2192 {t}" for c, t, _ in a["labelled"]]
    assert all(dist <= 0.3 for _, _, dist in a["labelled"])
    assert text_problems(fig) == []
    assert (left.get_xlabel(), left.get_ylabel()) == ("t-SNE 1", "t-SNE 2")
    assert right.get_xlabel() == "nearest-neighbour cosine distance d"
    steps = [line for line in right.get_lines() if line.get_drawstyle() == "steps-post"]
    tag_curve, audioset_curve = steps  # tags first, in the tags' colour
    assert tuple(tag_curve.get_color()[:3]) == pytest.approx(colours[0])
    x, y = audioset_curve.get_xdata(), audioset_curve.get_ydata()
    for d in a["d"]:  # the curve's value at d is the coverage share
        assert y[np.searchsorted(x, d, side="right") - 1] == pytest.approx(a["audioset_covered"][d])
    assert len(tag_curve.get_xdata()) == 91

    b = tsne_figure(tags, audioset, tmp_path / "b", seed=1, tag_name="UTS-800", one_column=tmp_path / "b_1col")
    assert {k: v for k, v in a.items() if k not in ("figure", "xy")} == b
    assert (tmp_path / "a_1col.png").read_bytes() == (tmp_path / "b_1col.png").read_bytes()
    for ext in ("png", "pdf"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes()


# --------------------------------------------------------------------------- the command


@needs_shared
def test_cli_tsne_on_a_released_tag_system(minilm, tmp_path, capsys):
    out = tmp_path / "fig" / "tsne.png"
    assert cli.main(["figure", "tsne", "--uts", str(UTS_800), "--audioset", str(AUDIOSET_CSV),
                     "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert numbers["n_tags"] == 800 and numbers["n_audioset"] == 527
    assert numbers["points"] == {"tags": 800, "audioset": 527}
    assert set(numbers["audioset_covered"]) == {"0.2", "0.3", "0.4", "0.5"}
    share = numbers["audioset_covered"]["0.3"]
    assert 0 < numbers["tags_covered"]["0.3"] < 1 and 0 < share < 1
    assert f"within d=0.3: {share:6.1%} of AudioSet labels have a tag" in printed
    assert out.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_cli_longtail_and_wordcloud_on_a_tags_file(tmp_path, capsys):
    tags = tmp_path / "tags.jsonl"
    rows = [{"id": str(i), "tags": [f"w{j}" for j in range(1 + i % 30)]} for i in range(300)]
    tags.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["figure", "longtail", "--tags", str(tags), "--out", str(tmp_path / "lt.png"),
                     "--k", "5", "10", "50"]) == 0
    printed = capsys.readouterr().out
    numbers = json.loads((tmp_path / "lt.json").read_text())
    assert numbers["n_tags"] == 30 and numbers["ks_marked"] == [5, 10]
    assert f"K=5: head {numbers['head_share']['5']:.1%}" in printed
    assert "K=50: head 100.0%" in printed and "not marked" in printed
    assert cli.main(["figure", "wordcloud", "--tags", str(tags), "--out", str(tmp_path / "wc.png"),
                     "--max-words", "12"]) == 0
    assert "12 of 30 tags drawn; most frequent: w0 (300)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["longtail", "--tags", "{missing}", "--out", "{tmp}/x.png"], "tags file not found"),
    (["wordcloud", "--tags", "{labels}", "--out", "{tmp}/x.png"], "expected a TAGS.jsonl"),
    (["tsne", "--uts", "{bad_json}", "--audioset", "{labels}", "--out", "{tmp}/x.png"], "expected a label map"),
    (["tsne", "--uts", "{labels}", "--audioset", "{bad_csv}", "--out", "{tmp}/x.png"], "display_name"),
    (["longtail", "--tags", "{labels}", "--out", "{tmp}/x.svg"], "expected FILE.png"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, argv, message, harness_env):
    (tmp_path / "labels.json").write_text('{"0": "dog", "1": "bark"}')
    (tmp_path / "bad.json").write_text('["dog", "bark"]')
    (tmp_path / "bad.csv").write_text("index,name\n0,Dog\n")
    paths = {"missing": tmp_path / "missing.jsonl", "labels": tmp_path / "labels.json", "tmp": tmp_path,
             "bad_json": tmp_path / "bad.json", "bad_csv": tmp_path / "bad.csv"}
    args = [a.format(**paths) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "harness", "figure", *args], capture_output=True, text=True,
                          env={**harness_env, "HARNESS_HOME": str(tmp_path / "home")}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not list(tmp_path.glob("x.*"))


def test_figures_module_reads_no_csv_dialect_surprises(tmp_path):
    """A quoted AudioSet-style CSV with commas inside names keeps each name whole."""
    path = tmp_path / "classes.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(["index", "mid", "display_name"])
        w.writerow([0, "/m/x", "Male speech, man speaking"])
    assert load_label_file(path) == ["Male speech, man speaking"]


def test_labelled_classes_are_covered_and_far_apart():
    xy = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    distances = np.array([0.1, 0.0, 0.25, 0.2, 0.6])  # the last has no tag within 0.3
    chosen = labelled_classes(xy, distances, 3)
    assert chosen[0] == 1  # the class closest to its tag first
    assert set(chosen) == {1, 2, 3} and 4 not in chosen  # then the farthest apart, among the covered
    assert labelled_classes(xy, distances, 0) == []
