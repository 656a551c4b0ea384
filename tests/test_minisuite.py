"""Tests of the built-in mini suite (harness.minisuite).

One suite is built per session at a small scale; a second, tiny pair of builds checks
determinism. Audio checks are real: spectral features must separate the environmental
classes, a pitch tracker must recover the pitch labels, and no two clips share audio.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.minisuite import GENERATOR_VERSION, TASKS, build
from harness.minisuite.spec import SENTENCE_BUCKETS, clips_per_class, groups, pool_clips, splits_of
from harness.minisuite.vocab import ENV_EVENTS, INSTRUMENT_TAGS, SURFACE_FORMS, tags_in

SCALE = 0.25
SOUND_TAGS = set(ENV_EVENTS) | {"speech"} | set(INSTRUMENT_TAGS)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("minisuite") / "suite"
    return out, build(out, seed=0, scale=SCALE, progress=False, workers=2)


def _cuts(root: Path, rel: str):
    from lhotse import CutSet

    return list(CutSet.from_file(root / rel))


def _task_cuts(suite, task: str):
    root, index = suite
    return _cuts(root, index["tasks"][task]["path"])


def _md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_package_import_is_light():
    code = (
        "import sys, harness.minisuite as m; "
        "heavy = [k for k in ('torch', 'lhotse', 'numpy', 'scipy') if k in sys.modules]; "
        "assert not heavy, heavy; assert m.TASKS and m.GENERATOR_VERSION"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_index_matches_files_and_spec(suite):
    root, index = suite
    assert json.loads((root / "index.json").read_text()) == index
    assert (index["generator_version"], index["seed"], index["scale"]) == (GENERATOR_VERSION, 0, SCALE)
    assert index["pretrain"]["num_clips"] == pool_clips(SCALE) == len(_cuts(root, index["pretrain"]["path"]))
    assert 0.05 < index["pretrain"]["hours"] < 0.3
    assert set(index["tasks"]) == set(TASKS)
    for name, entry in index["tasks"].items():
        assert entry["classes"] == TASKS[name]["classes"] and entry["domain"] == TASKS[name]["domain"]
        assert entry["kind"] == TASKS[name]["kind"]
        n = clips_per_class(name, SCALE) * groups(name)
        assert entry["counts"] == {split: round(share * n) for split, share in splits_of(name)}
        assert len(_task_cuts(suite, name)) == n
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name], "temporary folder left behind"


def test_manifests_load_audio_from_any_cwd(suite, tmp_path, monkeypatch):
    root, index = suite
    monkeypatch.chdir(tmp_path)
    cut = _task_cuts(suite, "env_event")[0]
    audio = cut.load_audio()
    assert audio.shape == (1, cut.num_samples) and cut.sampling_rate == 16000
    assert set(cut.custom) == {"label", "split"}
    assert set(_task_cuts(suite, "env_mixture")[0].custom) == {"split", "labels"}
    assert set(_task_cuts(suite, "scene_captions")[0].custom) == {"split", "captions", "labels"}
    pool_cut = _cuts(root, index["pretrain"]["path"])[0]
    assert set(pool_cut.custom) == {"caption", "weak_caption", "events", "labels", "source"}
    assert pool_cut.custom["source"] == "mini"
    assert pool_cut.load_audio().shape[0] == 1


def test_wavs_are_16k_mono_pcm16_and_not_silent(suite):
    root, _ = suite
    wavs = sorted((root / "audio").rglob("*.wav"))
    assert len(wavs) > 500
    for path in wavs:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        assert 2.0 <= info.duration <= 4.0, path
        x, _ = sf.read(path, dtype="float32")
        assert np.sqrt(np.mean(x**2)) > 10 ** (-45 / 20), f"{path} is (nearly) silent"
        assert np.abs(x).max() < 1.0, f"{path} clips"


def test_every_task_has_at_least_300_test_clips_at_scale_1():
    for name in TASKS:
        n = clips_per_class(name, 1.0) * groups(name)
        assert round(dict(splits_of(name))["test"] * n) >= 300, name
    assert round(dict(splits_of("scene_captions"))["train"] * clips_per_class("scene_captions", 1.0)) >= 600


def test_splits_are_balanced_and_disjoint(suite):
    for name in TASKS:
        cuts = _task_cuts(suite, name)
        per_group = clips_per_class(name, SCALE)
        assert len({c.id for c in cuts}) == len(cuts)
        per_split = Counter((c.custom.get("label"), c.custom["split"]) for c in cuts)
        labels = TASKS[name]["classes"] if TASKS[name]["kind"] == "multiclass" else [None]
        for label in labels:
            for split, share in splits_of(name):
                assert per_split[label, split] == round(share * per_group), (name, label, split)
        audio_by_split: dict[str, set[str]] = {}
        for c in cuts:
            audio_by_split.setdefault(c.custom["split"], set()).add(_md5(c.recording.sources[0].source))
        train, valid, test = audio_by_split["train"], audio_by_split["valid"], audio_by_split["test"]
        assert not (train & valid or train & test or valid & test), name


def test_mixture_labels_are_one_to_three_events(suite):
    cuts = _task_cuts(suite, "env_mixture")
    sizes = Counter(len(c.custom["labels"]) for c in cuts)
    assert set(sizes) == {1, 2, 3}
    for c in cuts:
        labels = c.custom["labels"]
        assert labels == sorted(set(labels)) and set(labels) <= set(ENV_EVENTS)
    assert {lab for c in cuts for lab in c.custom["labels"]} == set(ENV_EVENTS)


def test_scene_captions_describe_their_held_out_scenes(suite):
    """Every held-out scene carries up to 5 distinct captions, each naming exactly its sound
    events; hardly any test caption is word for word a pool caption (other scenes)."""
    root, index = suite
    cuts = _task_cuts(suite, "scene_captions")
    for c in cuts:
        captions, labels = c.custom["captions"], c.custom["labels"]
        assert 1 <= len(captions) <= 5 and len(set(captions)) == len(captions) and all(captions)
        for caption in captions:
            assert set(tags_in(caption)) & SOUND_TAGS == set(labels), caption
    assert np.mean([len(c.custom["captions"]) for c in cuts]) >= 4.5
    pool = {c.custom["caption"] for c in _cuts(root, index["pretrain"]["path"])}
    test = [cap for c in cuts if c.custom["split"] == "test" for cap in c.custom["captions"]]
    assert np.mean([cap in pool for cap in test]) < 0.05


def test_pool_and_probes_share_no_audio(suite):
    root, _ = suite
    digests = Counter(_md5(p) for p in (root / "audio").rglob("*.wav"))
    assert digests.most_common(1)[0][1] == 1, "two clips have identical audio"


def test_tables_agree():
    from harness.minisuite import environment, music

    assert TASKS["music_instrument"]["classes"] == list(music.FAMILIES)
    assert set(music.INSTRUMENTS) == set(INSTRUMENT_TAGS) and set(environment.VARIANTS) == set(ENV_EVENTS)
    programs = {p for group in (*music.FAMILIES.values(), *music.INSTRUMENTS.values()) for p in group}
    assert programs | set(music.PITCH_PROGRAMS) <= set(music.PROGRAM_RANGES)
    for program in music.PITCH_PROGRAMS:  # every pitch class is playable on every pitch-task program
        lo, hi = music.PROGRAM_RANGES[program]
        assert {k % 12 for k in range(max(lo, 36), min(hi, 96) + 1)} == set(range(12)), program


def test_sentence_buckets_keep_pool_and_splits_apart():
    from harness.minisuite import speech

    buckets = list(SENTENCE_BUCKETS.values())
    assert all(not (a & b) for i, a in enumerate(buckets) for b in buckets[i + 1 :])
    rng = np.random.default_rng(0)
    for allowed in SENTENCE_BUCKETS.values():
        for language in speech.GRAMMAR:
            assert all(speech.sentence_bucket(speech.sentence(rng, language, allowed)) in allowed for _ in range(20))


def _log_mel_stats(path: str) -> np.ndarray:
    import torch
    import torchaudio

    x, _ = sf.read(path, dtype="float32")
    fbank = torchaudio.compliance.kaldi.fbank(torch.from_numpy(x)[None] * 32768, num_mel_bins=40)
    return torch.cat([fbank.mean(0), fbank.std(0)]).numpy()


def _features(cuts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised log-mel statistics, labels, and the train mask of a task's cuts."""
    X = np.array([_log_mel_stats(c.recording.sources[0].source) for c in cuts])
    y = np.array([c.custom["label"] for c in cuts])
    train = np.array([c.custom["split"] == "train" for c in cuts])
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    return (X - mu) / sd, y, train


def _nearest_centroid_accuracy(cuts) -> float:
    Z, y, train = _features(cuts)
    classes = sorted(set(y))
    centroids = np.stack([Z[train & (y == k)].mean(0) for k in classes])
    pred = np.array(classes)[((Z[~train, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    return float(np.mean(pred == y[~train]))


def test_env_classes_are_distinguishable(suite):
    accuracy = _nearest_centroid_accuracy(_task_cuts(suite, "env_event"))
    assert accuracy >= 0.6, f"nearest-centroid accuracy {accuracy:.2f} (chance 0.125)"


# floors well above chance (1/12, 1/8) with 4-5 training clips a class at this scale, in noise and rooms
@pytest.mark.parametrize("task, floor", [("speech_speaker", 0.25), ("music_instrument", 0.2)])
def test_speakers_and_instruments_are_learnable(suite, task, floor):
    from sklearn.linear_model import LogisticRegression

    Z, y, train = _features(_task_cuts(suite, task))
    accuracy = LogisticRegression(max_iter=3000).fit(Z[train], y[train]).score(Z[~train], y[~train])
    chance = 1 / len(TASKS[task]["classes"])
    assert accuracy >= floor, f"{task}: linear probe on log-mel statistics {accuracy:.2f} (chance {chance:.3f})"


def _pitch_class(x: np.ndarray, sr: int = 16000) -> int:
    """Pitch class of a note by the harmonic product spectrum."""
    n = 4 * len(x)
    log_spec = np.log(np.abs(np.fft.rfft(x * np.hanning(len(x)), n=n)) + 1e-9)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    m = len(log_spec) // 4
    hps = log_spec[:m] + log_spec[::2][:m] + log_spec[::3][:m] + log_spec[::4][:m]
    lo = np.searchsorted(freqs, 30.0)
    f0 = freqs[lo + int(np.argmax(hps[lo:]))]
    return int(round(69 + 12 * np.log2(f0 / 440.0))) % 12


def test_pitch_labels_match_the_audio(suite):
    classes = TASKS["music_pitch"]["classes"]
    cuts = _task_cuts(suite, "music_pitch")
    hits = [classes[_pitch_class(c.load_audio()[0])] == c.custom["label"] for c in cuts]
    assert np.mean(hits) >= 0.9


def test_captions_are_varied_and_consistent(suite):
    root, index = suite
    cuts = _cuts(root, index["pretrain"]["path"])
    captions = [c.custom["caption"] for c in cuts]
    assert len(set(captions)) >= 0.97 * len(captions)
    openings = Counter(" ".join(c.split()[:2]).lower() for c in captions)
    assert len(openings) >= 40 and openings.most_common(1)[0][1] < 0.15 * len(captions)
    assert len({w for c in captions for w in c.lower().split()}) >= 300
    forms_used: dict[str, set[str]] = {}
    for cut in cuts:
        caption, weak, events, labels = (cut.custom[k] for k in ("caption", "weak_caption", "events", "labels"))
        assert 1 <= len(labels) <= 3 and len(set(labels)) == len(labels)
        assert events == tags_in(caption)
        assert set(events) & SOUND_TAGS == set(labels), caption
        assert set(tags_in(weak)) & SOUND_TAGS == set(labels), weak
        assert len(weak.split()) <= 8 and len(weak) < len(caption)
        for tag in labels:
            used = {f for f in SURFACE_FORMS[tag] if re.search(rf"\b{re.escape(f)}\b", caption.lower())}
            forms_used.setdefault(tag, set()).update(used)
    labels_seen = {lab for c in cuts for lab in c.custom["labels"]}
    assert "speech" in labels_seen and labels_seen & set(ENV_EVENTS) and labels_seen & set(INSTRUMENT_TAGS)
    for tag in ENV_EVENTS + ("speech",):
        assert len(forms_used.get(tag, ())) >= 3, (tag, forms_used.get(tag))


def test_rebuild_returns_the_existing_index_and_refuses_mismatches(suite, tmp_path):
    root, index = suite
    stamp = (root / "pretrain.jsonl.gz").stat().st_mtime_ns
    assert build(root, seed=0, scale=SCALE, progress=False) == index
    assert (root / "pretrain.jsonl.gz").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        build(root, seed=1, scale=SCALE, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a suite")
    with pytest.raises(FileExistsError):
        build(foreign, seed=0, scale=SCALE, progress=False)


def _manifest_text(root: Path) -> dict[str, str]:
    """Every manifest of a suite, decompressed, with the suite's own path replaced."""
    return {
        str(p.relative_to(root)): gzip.decompress(p.read_bytes()).decode().replace(str(root), "<ROOT>")
        for p in sorted(root.rglob("*.jsonl.gz"))
    }


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    build(a, seed=3, scale=0.05, progress=False, workers=2)
    build(b, seed=3, scale=0.05, progress=False, workers=1)
    wavs_a = {str(p.relative_to(a)): _md5(p) for p in sorted(a.rglob("*.wav"))}
    wavs_b = {str(p.relative_to(b)): _md5(p) for p in sorted(b.rglob("*.wav"))}
    assert wavs_a == wavs_b and len(wavs_a) > 200
    assert _manifest_text(a) == _manifest_text(b)
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes()
    # the gzip header carries no timestamp, so a rebuild in place gives the same bytes
    assert (a / "pretrain.jsonl.gz").read_bytes()[4:8] == bytes(4)


def test_a_different_seed_gives_different_clips(tmp_path):
    from harness.minisuite.builder import plan
    from harness.minisuite.render import render_job

    for seed, folder in ((0, tmp_path / "s0"), (1, tmp_path / "s1")):
        for job in [j for j in plan(seed, 0.05) if j.index < 3]:
            render_job(job, str(folder))
    wavs = sorted(p.relative_to(tmp_path / "s0") for p in (tmp_path / "s0").rglob("*.wav"))
    assert len(wavs) == 3 * (1 + len(TASKS))
    assert all(_md5(tmp_path / "s0" / w) != _md5(tmp_path / "s1" / w) for w in wavs)


def test_renderers_do_not_depend_on_history():
    from harness.minisuite import music, speech

    first = speech.synthesize("The baker buys fresh bread.", "en+m3", 170, 50)
    speech.synthesize("Le boulanger achète du pain frais.", "fr+f2", 200, 80)
    assert np.array_equal(first, speech.synthesize("The baker buys fresh bread.", "en+m3", 170, 50))
    notes = [music.Note(0.0, 1.0, 67, 100)]
    violin = music.render(40, notes, 24000)
    music.render(48, [music.Note(0.0, 1.5, k, 90) for k in (48, 55, 64)], 16000)  # cut off mid-note
    assert np.array_equal(violin, music.render(40, notes, 24000))
