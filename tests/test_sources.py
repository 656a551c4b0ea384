"""Source readers on tiny trees in each corpus's official layout, and the selection functions."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.errors import HarnessError
from harness.sources import UNIFORM_FIELDS, read_source, reader, source_names, youtube_id
from harness.sources.select import apportion, exclude, mix, nested_subsets, order, subset, write_cutset

MIRROR = Path(os.environ.get("HARNESS_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "mirror")
SR = 16000


def tone(path: Path, seconds: float = 0.3, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR)
    return path


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not audio at all" * 8)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def custom_of(cuts) -> dict[str, dict]:
    return {c.id: c.custom for c in cuts}


def check_uniform(cuts, source: str, report=None) -> None:
    if report is not None:  # every row is accounted for
        assert report.rows == report.kept + report.missing_audio + report.unreadable_audio + report.duplicates
        assert report.kept == len(cuts)
    for cut in cuts:
        assert set(UNIFORM_FIELDS) <= set(cut.custom), cut.custom
        assert cut.custom["source"] == source
        assert isinstance(cut.custom["captions"], list) and isinstance(cut.custom["tags"], list)
        assert isinstance(cut.custom["labels"], list)
        assert cut.recording is not None and cut.duration == pytest.approx(0.3, abs=0.01)


def test_importing_sources_and_select_imports_no_lhotse_or_torch():
    code = ("import sys, harness.sources, harness.sources.select; "
            "print(sorted(m for m in ('torch', 'lhotse', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_is_lazy_and_complete():
    assert set(source_names()) == {"uts", "audiocaps", "clotho", "wavcaps", "audioset", "generic"}
    for name in source_names():
        assert callable(reader(name))
    with pytest.raises(HarnessError, match="unknown source 'nope'"):
        reader("nope")


# ---------------------------------------------------------------------------------------
# UTS

def uts_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A UTS-style release: MonoCuts with audio_tag / caption / original_caption, relative paths."""
    from lhotse import MonoCut, Recording, SupervisionSegment

    audio = tmp_path / "audio"
    cuts = []
    specs = [  # id, relative audio path (None: missing), where the fields live
        ("YtS9FbMAKnFc", "audioset/YtS9FbMAKnFc.flac", "cut"),
        ("YvSll_S4JHcA", "audioset/YvSll_S4JHcA.wav", "supervision"),
        ("emilia_EN_B000001", "emilia/EN_B000001.mp3", "cut"),
        ("Ymissing0000", "audioset/Ymissing0000.wav", "cut"),
    ]
    for i, (cid, rel, where) in enumerate(specs):
        target = audio / rel
        if cid != "Ymissing0000":
            tone(target, freq=300 + 100 * i)
            rec = Recording.from_file(target, recording_id=cid, relative_path_depth=2)
        else:
            tone(tmp_path / "elsewhere" / rel)
            rec = Recording.from_file(tmp_path / "elsewhere" / rel, recording_id=cid, relative_path_depth=2)
        fields = {"audio_tag": ["speech", "male", "indoor"][: i + 1],
                  "caption": f"A detailed strong caption number {i}.",
                  "original_caption": f"weak caption {i}"}
        sup = SupervisionSegment(id=cid, recording_id=cid, start=0.0, duration=rec.duration, channel=0,
                                 custom=fields if where == "supervision" else None)
        cuts.append(MonoCut(id=cid, start=0.0, duration=rec.duration, channel=0, recording=rec, supervisions=[sup],
                            custom=fields if where == "cut" else None))
    manifest = tmp_path / "manifest" / "captionstew400k_tag_3k.jsonl.gz"
    manifest.parent.mkdir()
    with gzip.open(manifest, "wt", encoding="utf-8") as f:
        for cut in cuts + cuts[:1]:  # the first cut repeated: a duplicate
            f.write(json.dumps(cut.to_dict()) + "\n")
    return manifest, audio


def test_uts_reads_release_and_reroots_audio(tmp_path):
    manifest, audio = uts_tree(tmp_path)
    cuts, report = read_source("uts", manifests=manifest, audio_root=audio)
    assert (report.rows, report.kept, report.missing_audio, report.duplicates) == (5, 3, 1, 1)
    assert "Ymissing0000.wav" in report.missing_examples[0]
    check_uniform(cuts, "uts", report)
    c = custom_of(cuts)
    assert list(c) == ["YtS9FbMAKnFc", "YvSll_S4JHcA", "emilia_EN_B000001"]
    assert c["YtS9FbMAKnFc"]["tags"] == ["speech"] and c["YtS9FbMAKnFc"]["audio_tag"] == ["speech"]
    assert c["YvSll_S4JHcA"]["tags"] == ["speech", "male"]  # read from the supervision's custom
    assert c["YvSll_S4JHcA"]["caption"] == "A detailed strong caption number 1."
    assert c["YvSll_S4JHcA"]["captions"] == ["A detailed strong caption number 1."]
    assert c["YvSll_S4JHcA"]["original_caption"] == "weak caption 1"
    assert c["YtS9FbMAKnFc"]["youtube_id"] == "tS9FbMAKnFc" and "youtube_id" not in c["emilia_EN_B000001"]
    for cut in cuts:  # paths re-rooted to absolute ones that load
        assert Path(cut.recording.sources[0].source).is_absolute()
        assert cut.load_audio().shape[-1] == int(0.3 * SR)
    assert cuts[0].supervisions[0].id == "YtS9FbMAKnFc"  # the cut is kept as released

    kept_all, report = read_source("uts", manifests=[manifest], check_audio=False)
    assert (report.kept, report.missing_audio) == (4, 0)


def released_uts(tmp_path: Path, source_of=lambda corpus, cid: corpus) -> Path:
    """Cuts written in exactly the released form (the authors' README and dataset card): the
    fields in the cut's ``custom``, and ``recording.sources[0].source`` holding the *name* of
    the corpus the clip comes from, not a path."""
    specs = [("YtS9FbMAKnFc", "audioset"), ("YvSll_S4JHcA", "audioset"), ("-0gPZ8zVHKo_30", "vggsound"),
             ("Yabsent00000", "audioset")]
    manifest = tmp_path / "manifest" / "captionstew400k_full_tag_3k.jsonl.gz"
    manifest.parent.mkdir(parents=True)
    with gzip.open(manifest, "wt", encoding="utf-8") as f:
        for i, (cid, corpus) in enumerate(specs):
            cut = {"id": cid, "start": 0.0, "duration": 0.3, "channel": 0,
                   "supervisions": [],
                   "recording": {"id": cid, "sources": [{"type": "file", "channels": [0],
                                                         "source": source_of(corpus, cid)}],
                                 "sampling_rate": SR, "num_samples": int(0.3 * SR), "duration": 0.3,
                                 "channel_ids": [0]},
                   "custom": {"audio_tag": ["speech", "male", "indoor"][: i + 1],
                              "caption": f"A detailed strong caption number {i}.",
                              "original_caption": f"weak caption {i}"},
                   "type": "MonoCut"}
            f.write(json.dumps(cut) + "\n")
    return manifest


def test_uts_release_as_released_finds_audio_under_audio_root(tmp_path):
    """With only manifests and audio_root set, a cut's audio is audio_root/<corpus>/<id>.<ext>;
    missing audio is counted per corpus; the cuts keep their released fields."""
    manifest = released_uts(tmp_path)
    audio = tmp_path / "audio"
    tone(audio / "audioset" / "YtS9FbMAKnFc.wav")
    tone(audio / "audioset" / "YvSll_S4JHcA.flac", freq=500)
    tone(audio / "vggsound" / "deeper" / "-0gPZ8zVHKo_30.ogg", freq=700)  # a sub-folder: found by stem
    cuts, report = read_source("uts", manifests=manifest, audio_root=audio)
    assert [c.id for c in cuts] == ["YtS9FbMAKnFc", "YvSll_S4JHcA", "-0gPZ8zVHKo_30"]
    assert (report.rows, report.kept, report.missing_audio) == (4, 3, 1)
    assert report.notes["missing_by_corpus"] == {"audioset": 1}
    check_uniform(cuts, "uts", report)
    c = custom_of(cuts)
    assert c["YvSll_S4JHcA"]["tags"] == ["speech", "male"] and c["YvSll_S4JHcA"]["original_caption"] == "weak caption 1"
    for cut in cuts:
        assert cut.load_audio().shape[-1] == int(0.3 * SR)
    assert cuts[1].recording.sources[0].source == str((audio / "audioset" / "YvSll_S4JHcA.flac").resolve())


def test_uts_release_with_an_index_or_paths(tmp_path):
    """Other layouts: a CSV of recording_id,path; or manifests whose sources already are paths."""
    audio = tmp_path / "anywhere"
    for i, cid in enumerate(["YtS9FbMAKnFc", "YvSll_S4JHcA", "-0gPZ8zVHKo_30", "Yabsent00000"]):
        tone(audio / f"clip{i}.wav", freq=300 + 100 * i)
    index = tmp_path / "index.csv"
    index.write_text("recording_id,path\nYtS9FbMAKnFc,anywhere/clip0.wav\n-0gPZ8zVHKo_30,anywhere/clip2.wav\n")
    cuts, report = read_source("uts", manifests=released_uts(tmp_path / "a"), index=index)
    assert [c.id for c in cuts] == ["YtS9FbMAKnFc", "-0gPZ8zVHKo_30"] and report.missing_audio == 2
    ids = ["YtS9FbMAKnFc", "YvSll_S4JHcA", "-0gPZ8zVHKo_30", "Yabsent00000"]
    as_paths = released_uts(tmp_path / "b", source_of=lambda corpus, cid: str(audio / f"clip{ids.index(cid)}.wav"))
    cuts, report = read_source("uts", manifests=as_paths)
    assert len(cuts) == 4 and report.missing_audio == 0


def test_uts_release_without_any_audio_is_one_line(tmp_path):
    """No cut resolving is an error saying what was looked for and where, never an empty pool."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError) as info:
        read_source("uts", manifests=released_uts(tmp_path), audio_root=tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message and "none of the 4 cuts has its audio" in message
    assert f"{tmp_path / 'empty'}/<corpus>/<recording id>.{{wav,flac,mp3,ogg,opus," in message
    assert "audioset: 3" in message and "vggsound: 1" in message
    cuts, report = read_source("uts", manifests=released_uts(tmp_path / "t"), check_audio=False)
    assert len(cuts) == 4  # text only (captions -> tags): every cut kept as released


def test_uts_malformed_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "start": 0, "duration": 1, "channel": 0}\n{not json\n')
    with pytest.raises(HarnessError, match=r"bad.jsonl:2: not JSON.*MonoCut"):
        read_source("uts", manifests=bad)
    bad.write_text('{"type": "MixedCut", "id": "a"}\n')
    with pytest.raises(HarnessError, match=r"bad.jsonl:1: a MixedCut.*expected a Lhotse MonoCut"):
        read_source("uts", manifests=bad)
    with pytest.raises(HarnessError, match=r"nothere.jsonl.gz: no such file"):
        read_source("uts", manifests=tmp_path / "nothere.jsonl.gz")


# ---------------------------------------------------------------------------------------
# AudioCaps

def test_audiocaps_tree(tmp_path):
    root = tmp_path / "audiocaps"
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    write_csv(root / "dataset" / "train.csv", header, [
        [91139, "r1nicOVtvkQ", 130, "A woman talks nearby as water pours"],
        [58146, "UDGBjjwyaqE", 20, "Multiple clanging and clanking sounds"],
        [11111, "aaaaaaaaaaa", 0, "Wind blows"],
        [22222, "bbbbbbbbbbb", 30, "A dog barks"],
        [33333, "ccccccccccc", 10, "Birds chirp"],
    ])
    write_csv(root / "dataset" / "test.csv", header,
              [[100 + i, "ddddddddddd", 50, f"Rain falls, caption {i}"] for i in range(5)])
    audio = root / "audio"
    tone(audio / "train" / "r1nicOVtvkQ.wav")  # {youtube_id}
    tone(audio / "train" / "YUDGBjjwyaqE.flac")  # Y{youtube_id}
    tone(audio / "train" / "aaaaaaaaaaa_0.000_10.000.mp3")  # {youtube_id}_{start}_{end}
    tone(audio / "test" / "ddddddddddd_50.wav")  # {youtube_id}_{start}
    garbage(audio / "train" / "22222.wav")  # {audiocap_id}, undecodable
    (audio / "train" / "loop").symlink_to(audio)  # a symlink loop does not hang the audio search
    cuts, report = read_source("audiocaps", captions=[root / "dataset" / "train.csv", root / "dataset" / "test.csv"],
                               audio_dir=audio)
    assert (report.rows, report.kept, report.missing_audio, report.unreadable_audio, report.duplicates) == (10, 4, 1, 1, 4)
    assert report.missing_examples == ["ccccccccccc"] and "22222.wav" in report.unreadable_examples[0]
    check_uniform(cuts, "audiocaps", report)
    c = custom_of(cuts)
    assert set(c) == {"r1nicOVtvkQ", "UDGBjjwyaqE", "aaaaaaaaaaa", "ddddddddddd"}
    assert c["r1nicOVtvkQ"]["caption"] == "A woman talks nearby as water pours"
    assert c["r1nicOVtvkQ"]["split"] == "train" and c["r1nicOVtvkQ"]["youtube_id"] == "r1nicOVtvkQ"
    test = c["ddddddddddd"]
    assert test["captions"] == [f"Rain falls, caption {i}" for i in range(5)] and test["caption"] == test["captions"][0]
    assert test["audiocap_ids"] == ["100", "101", "102", "103", "104"] and test["split"] == "test"
    assert test["original_caption"] is None and test["tags"] == [] and test["labels"] == []
    assert "1 missing audio (e.g. ccccccccccc)" in report.summary()


def test_audiocaps_real_csv_header_without_audio():
    path = MIRROR / "audiocaps_train_v2.csv"
    if not path.is_file():
        pytest.skip("no shared mirror of audiocaps_train_v2.csv")
    cuts, report = read_source("audiocaps", captions=path)
    assert len(cuts) == 0
    assert (report.rows, report.kept, report.missing_audio, report.duplicates) == (49810, 0, 49810, 0)
    assert report.missing_examples[:2] == ["r1nicOVtvkQ", "UDGBjjwyaqE"]


def test_audiocaps_missing_column(tmp_path):
    bad = write_csv(tmp_path / "train.csv", ["audiocap_id", "youtube_id", "caption"], [[1, "x", "y"]])
    with pytest.raises(HarnessError, match=r"train.csv: missing column\(s\) start_time; expected an AudioCaps"):
        read_source("audiocaps", captions=bad)


# ---------------------------------------------------------------------------------------
# Clotho

def test_clotho_tree(tmp_path):
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    write_csv(tmp_path / "clotho_captions_development.csv", header, [
        ["Santa Motor.wav"] + [f"a motor hums {i}" for i in range(5)],
        ["rain_01.wav"] + [f"rain falls {i}" for i in range(5)],
        ["gone.wav"] + [f"nothing {i}" for i in range(5)],
    ])
    write_csv(tmp_path / "clotho_captions_evaluation.csv", header,
              [["birds, morning.wav"] + [f"birds sing {i}" for i in range(5)]])
    tone(tmp_path / "development" / "Santa Motor.wav")
    tone(tmp_path / "converted" / "rain_01.flac")  # found by stem elsewhere under the root
    tone(tmp_path / "evaluation" / "birds, morning.wav")
    cuts, report = read_source("clotho", root=tmp_path)
    assert (report.rows, report.kept, report.missing_audio) == (4, 3, 1)
    check_uniform(cuts, "clotho", report)
    c = custom_of(cuts)
    assert c["Santa Motor"]["captions"] == [f"a motor hums {i}" for i in range(5)]
    assert c["Santa Motor"]["caption"] == "a motor hums 0" and c["birds, morning"]["split"] == "evaluation"
    only_eval, _ = read_source("clotho", root=tmp_path, splits=["evaluation"])
    assert [c.id for c in only_eval] == ["birds, morning"]


def test_clotho_errors(tmp_path):
    with pytest.raises(HarnessError, match="no clotho_captions_"):
        read_source("clotho", root=tmp_path)
    write_csv(tmp_path / "clotho_captions_development.csv", ["file_name", "caption"], [["a.wav", "x"]])
    with pytest.raises(HarnessError, match=r"missing column\(s\) caption_1"):
        read_source("clotho", root=tmp_path)


# ---------------------------------------------------------------------------------------
# WavCaps

def wavcaps_json(path: Path, entries: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"num_captions_per_audio": 1, "data": entries}))
    return path


def test_wavcaps_tree(tmp_path):
    jdir = tmp_path / "json_files"
    bbc = wavcaps_json(jdir / "BBC_Sound_Effects" / "bbc_final.json", [
        {"description": "Footsteps on gravel, slow.", "category": "['Footsteps']", "caption": "Footsteps crunch on gravel.",
         "id": "07066104", "duration": 42.5, "audio": "wav_path", "download_link": "https://example.org/07066104.wav.zip"},
        {"description": "Door slam.", "caption": "A door slams shut.", "id": "07066105", "duration": 3.0,
         "audio": "wav_path"},
    ])
    fsd = wavcaps_json(jdir / "FreeSound" / "fsd_final.json", [
        {"id": "180913", "file_name": "rain.wav", "tags": ["rain", "weather", "field-recording"],
         "description": "rain on a tin roof", "caption": "Rain patters on a metal roof.", "duration": 12.0,
         "audio": "wav_path"},
    ])
    sb = wavcaps_json(jdir / "SoundBible" / "sb_final.json", [
        {"title": "Bell", "description": "A bell rings", "caption": "A bell rings twice.", "id": "180913",
         "duration": 2.0, "audio": "wav_path"},
    ])
    as_sl = wavcaps_json(jdir / "AudioSet_SL" / "as_final.json", [
        {"id": "Yb0RFKhbpFJA.wav", "caption": "A man speaks as a vehicle passes.", "audio": "wav_path", "duration": 10.0},
    ])
    audio = tmp_path / "audio"
    tone(audio / "BBC_Sound_Effects_flac" / "07066104.flac")
    tone(audio / "FreeSound_flac" / "180913.flac")
    tone(audio / "SoundBible_flac" / "180913.flac", freq=880)  # the same numeric id in another subset
    tone(audio / "AudioSet_SL_flac" / "Yb0RFKhbpFJA.flac")
    cuts, report = read_source("wavcaps", json_files=[bbc, fsd, sb, as_sl], audio_dir=audio)
    assert (report.rows, report.kept, report.missing_audio) == (5, 4, 1)
    assert report.missing_examples == ["bbc_07066105"]
    check_uniform(cuts, "wavcaps", report)
    c = custom_of(cuts)
    assert set(c) == {"bbc_07066104", "freesound_180913", "soundbible_180913", "audioset_sl_Yb0RFKhbpFJA"}
    assert c["bbc_07066104"]["caption"] == "Footsteps crunch on gravel."
    assert c["bbc_07066104"]["original_caption"] == "Footsteps on gravel, slow."
    assert c["freesound_180913"]["tags"] == ["rain", "weather", "field-recording"]
    assert c["audioset_sl_Yb0RFKhbpFJA"]["youtube_id"] == "b0RFKhbpFJA"
    assert c["audioset_sl_Yb0RFKhbpFJA"]["subset"] == "AudioSet_SL"
    by_id = {cut.id: cut for cut in cuts}
    assert "SoundBible_flac" in by_id["soundbible_180913"].recording.sources[0].source


def test_wavcaps_malformed(tmp_path):
    bad = tmp_path / "sb_final.json"
    bad.write_text(json.dumps({"num_captions_per_audio": 1, "entries": []}))
    with pytest.raises(HarnessError, match=r'sb_final.json: no list under "data"; expected a WavCaps JSON'):
        read_source("wavcaps", json_files=bad)
    bad.write_text(json.dumps({"data": [{"id": "1"}]}))
    with pytest.raises(HarnessError, match=r'data\[0\] has no "id" or no "caption"'):
        read_source("wavcaps", json_files=bad)
    bad.write_text("{oops")
    with pytest.raises(HarnessError, match="sb_final.json: not JSON"):
        read_source("wavcaps", json_files=bad)


# ---------------------------------------------------------------------------------------
# AudioSet

SEGMENTS_HEAD = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=4, num_segs=4, num_unique_labels=4, num_positive_labels=6\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def test_audioset_tree(tmp_path, monkeypatch):
    classes = MIRROR / "audioset_class_labels_indices.csv"
    if not classes.is_file():
        pytest.skip("no shared mirror of the AudioSet class labels")
    seg = tmp_path / "balanced_train_segments.csv"
    seg.write_text(SEGMENTS_HEAD
                   + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
                   + '--ZhevVpy1s, 50.000, 60.000, "/m/012xff"\n'
                   + '--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/09x0r"\n'
                   + '--aO5cdqSAg, 30.000, 40.000, "/m/04rlf,/m/not_a_mid"\n')
    ev = tmp_path / "eval_segments.csv"
    ev.write_text(SEGMENTS_HEAD + '--PJHxphWEs, 30.000, 40.000, "/m/04rlf"\n')  # a duplicate: labels merge
    audio = tmp_path / "audio"
    tone(audio / "balanced" / "Y--PJHxphWEs.wav")
    tone(audio / "balanced" / "--ZhevVpy1s_50.000_60.000.flac")
    tone(audio / "balanced" / "--aO5cdqSAg_30000_40000.wav")
    cuts, report = read_source("audioset", segments=[seg, ev], audio_dir=audio, classes=classes)
    assert (report.rows, report.kept, report.missing_audio, report.duplicates) == (5, 3, 1, 1)
    assert report.missing_examples == ["--aE2O5G5WE"] and report.notes == {"unknown_mids": 1}
    check_uniform(cuts, "audioset", report)
    c = custom_of(cuts)
    assert c["--PJHxphWEs"]["labels"] == ["Speech", "Gush", "Music"]
    assert c["--PJHxphWEs"]["mids"] == ["/m/09x0r", "/t/dd00088", "/m/04rlf"]
    assert c["--ZhevVpy1s"]["labels"] == ["Toothbrush"]
    assert c["--aO5cdqSAg"]["labels"] == ["Music", "/m/not_a_mid"]
    assert c["--PJHxphWEs"]["caption"] is None and c["--PJHxphWEs"]["youtube_id"] == "--PJHxphWEs"

    monkeypatch.setenv("HARNESS_MIRROR", str(MIRROR))  # classes=None: the verified audioset-classes asset
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    default, _ = read_source("audioset", segments=[seg, ev], audio_dir=audio)
    assert custom_of(default) == c

    ontology = MIRROR / "audioset_ontology.json"
    if ontology.is_file():  # the ontology JSON maps the same mids to the same names
        again, _ = read_source("audioset", segments=[seg, ev], audio_dir=audio, classes=ontology)
        assert custom_of(again)["--PJHxphWEs"]["labels"] == ["Speech", "Gush", "Music"]


def test_audioset_malformed(tmp_path):
    seg = tmp_path / "eval_segments.csv"
    seg.write_text(SEGMENTS_HEAD + "--PJHxphWEs, 30.000, 40.000\n")
    with pytest.raises(HarnessError, match=r"eval_segments.csv:4: 3 fields; expected an AudioSet segment CSV"):
        read_source("audioset", segments=seg, classes={})
    seg.write_text(SEGMENTS_HEAD + '--PJHxphWEs, thirty, 40.000, "/m/09x0r"\n')
    with pytest.raises(HarnessError, match=r"eval_segments.csv:4: start 'thirty'"):
        read_source("audioset", segments=seg, classes={})
    bad_classes = write_csv(tmp_path / "classes.csv", ["index", "name"], [[0, "Speech"]])
    with pytest.raises(HarnessError, match=r"classes.csv: missing column\(s\) mid, display_name"):
        read_source("audioset", segments=seg, classes=bad_classes)


# ---------------------------------------------------------------------------------------
# Generic

def test_generic_csv_and_jsonl(tmp_path):
    tone(tmp_path / "clips" / "a.wav")
    tone(tmp_path / "clips" / "b.flac")
    garbage(tmp_path / "clips" / "c.wav")
    write_csv(tmp_path / "list.csv", ["path", "caption", "tags", "labels", "original_caption"], [
        ["clips/a.wav", "a bell rings", "bell; metal;ring", "Bell", "bell"],
        ["clips/b.flac", "rain", "", "Rain;Water", ""],
        ["clips/c.wav", "broken", "", "", ""],
        ["clips/missing.wav", "absent", "", "", ""],
        ["clips/a.wav", "a second caption", "loud", "", ""],  # same id: merged
    ])
    cuts, report = read_source("generic", path=tmp_path / "list.csv")
    assert (report.rows, report.kept, report.missing_audio, report.unreadable_audio, report.duplicates) == (5, 2, 1, 1, 1)
    check_uniform(cuts, "generic", report)
    c = custom_of(cuts)
    assert c["a"] == {"caption": "a bell rings", "captions": ["a bell rings", "a second caption"],
                      "original_caption": "bell", "tags": ["bell", "metal", "ring", "loud"], "labels": ["Bell"],
                      "source": "generic"}
    assert c["b"]["labels"] == ["Rain", "Water"] and c["b"]["original_caption"] is None

    lines = [{"id": "clip-1", "path": str(tmp_path / "clips" / "a.wav"), "caption": "x", "tags": ["t1", "t2"],
              "labels": "L1;L2"},
             {"path": "b.flac", "captions": ["y1", "y2"]}]
    jl = tmp_path / "list.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in lines))
    cuts, report = read_source("generic", path=jl, audio_root=tmp_path / "clips", source="mine")
    c = custom_of(cuts)
    assert c["clip-1"]["tags"] == ["t1", "t2"] and c["clip-1"]["labels"] == ["L1", "L2"]
    assert c["b"]["caption"] == "y1" and c["b"]["captions"] == ["y1", "y2"] and c["b"]["source"] == "mine"


def test_generic_errors(tmp_path):
    bad = write_csv(tmp_path / "list.csv", ["wave", "caption"], [["a.wav", "x"]])
    with pytest.raises(HarnessError, match=r"list.csv:2: no audio path \(path / audio / file"):
        read_source("generic", path=bad)
    jl = tmp_path / "list.jsonl"
    jl.write_text('{"path": "a.wav", "tags": 3}\n')
    with pytest.raises(HarnessError, match=r"list.jsonl:1: expected a list or a .;.-separated string, found int"):
        read_source("generic", path=jl)
    jl.write_text('{"caption": "no path"}\n')
    with pytest.raises(HarnessError, match=r'list.jsonl:1: no audio path'):
        read_source("generic", path=jl)
    with pytest.raises(HarnessError, match="unknown format"):
        read_source("generic", path=tmp_path / "list.txt")


# ---------------------------------------------------------------------------------------
# Selection

def test_nested_subsets_deterministic_nested_and_stable():
    pool = [f"clip{i:04d}" for i in range(1000)]
    subsets = nested_subsets(pool, [400, 100, 1000, 250], seed=3)
    assert list(subsets) == [100, 250, 400, 1000]
    assert subsets == nested_subsets(list(reversed(pool)), [100, 250, 400, 1000], seed=3)  # input order is irrelevant
    sizes = list(subsets)
    for small, large in zip(sizes, sizes[1:]):
        assert subsets[large][:small] == subsets[small]
    assert set(subsets[1000]) == set(pool)
    assert nested_subsets(pool, [100], seed=4)[100] != subsets[100]

    grown = pool + [f"new{i:04d}" for i in range(500)]
    grown_order = order(grown, seed=3)
    assert [i for i in grown_order if i in set(pool)] == subsets[1000]  # old clips keep their order
    new_100 = nested_subsets(grown, [100], seed=3)[100]
    assert [i for i in new_100 if i in set(pool)] == subsets[100][: sum(i in set(pool) for i in new_100)]

    with pytest.raises(HarnessError, match="subset size 1001 exceeds the pool of 1000 clips"):
        nested_subsets(pool, [1001], seed=0)
    with pytest.raises(HarnessError, match="repeats clip ids"):
        nested_subsets(["a", "a"], [1], seed=0)


def test_mix_proportions_nested_and_errors():
    a = [{"id": f"a{i}", "custom": {}} for i in range(1000)]
    b = [{"id": f"b{i}", "custom": {}} for i in range(300)]
    c = [{"id": f"c{i}", "custom": {}} for i in range(50)]
    cuts, counts = mix({"a": (a, 3), "b": (b, 1)}, total=400, seed=0)
    assert counts == {"a": 300, "b": 100} and len(cuts) == 400 and len({x["id"] for x in cuts}) == 400
    assert sum(x["id"].startswith("a") for x in cuts) == 300
    again, _ = mix({"a": (a, 3), "b": (b, 1)}, total=400, seed=0)
    assert again == cuts
    bigger, _ = mix({"a": (a, 3), "b": (b, 1)}, total=800, seed=0)
    assert {x["id"] for x in cuts} <= {x["id"] for x in bigger}
    other_seed, _ = mix({"a": (a, 3), "b": (b, 1)}, total=400, seed=1)
    assert other_seed != cuts

    counts3 = apportion({"a": 0.5, "b": 0.3, "c": 0.2}, 7)
    assert sum(counts3.values()) == 7 and counts3 == {"a": 4, "b": 2, "c": 1}
    _, largest = mix({"a": (a, 1), "c": (c, 1)}, seed=0)  # total unset: the largest mix c allows
    assert largest == {"a": 51, "c": 50}  # 101 clips: the tie of the 101st goes to the source named first
    with pytest.raises(HarnessError, match="c has 50 clips, its share is 100"):
        mix({"a": (a, 1), "c": (c, 1)}, total=200, seed=0)
    with pytest.raises(HarnessError, match="chosen from two sources"):
        mix({"a": (a, 1), "a2": (a, 1)}, total=2000, seed=0)


def test_exclude_counts_and_youtube_matching():
    cuts = [
        {"id": "--PJHxphWEs", "custom": {"youtube_id": "--PJHxphWEs"}},  # AudioSet style
        {"id": "YtS9FbMAKnFc", "custom": {}},  # UTS style
        {"id": "audioset_sl_Yb0RFKhbpFJA", "custom": {"youtube_id": "b0RFKhbpFJA"}},  # WavCaps AudioSet_SL
        {"id": "abcdefghijk_30.000_40.000", "custom": {}},
        {"id": "Santa Motor", "custom": {}},  # not a YouTube clip
        {"id": "keep-me", "custom": {}},
    ]
    sets = {"audiocaps_test": ["--PJHxphWEs", "tS9FbMAKnFc", "b0RFKhbpFJA"],
            "vggsound_test": ["abcdefghijk_30", "YtS9FbMAKnFc"],
            "clotho_eval": ["Santa Motor"]}
    kept, removed = exclude(cuts, sets)
    assert [c["id"] for c in kept] == ["keep-me"]
    assert removed == {"audiocaps_test": 3, "vggsound_test": 2, "clotho_eval": 1}
    kept, removed = exclude(cuts, sets, match="exact")
    assert removed == {"audiocaps_test": 1, "vggsound_test": 1, "clotho_eval": 1}
    assert len(kept) == 3
    assert youtube_id("Y--PJHxphWEs") == "--PJHxphWEs" and youtube_id("Santa Motor") is None


def test_subset_exclude_and_write_on_real_cuts(tmp_path):
    manifest, audio = uts_tree(tmp_path)
    cuts, _ = read_source("uts", manifests=manifest, audio_root=audio)
    two = subset(cuts, 2, seed=0)
    assert [c.id for c in two] == nested_subsets([c.id for c in cuts], [2], seed=0)[2]
    kept, removed = exclude(cuts, {"audiocaps_test": ["tS9FbMAKnFc"]})
    assert removed == {"audiocaps_test": 1} and "YtS9FbMAKnFc" not in {c.id for c in kept}
    p1 = write_cutset(kept, tmp_path / "out" / "a.jsonl.gz")
    p2 = write_cutset(list(kept), tmp_path / "out" / "b.jsonl.gz")
    assert p1.read_bytes() == p2.read_bytes()
    from lhotse import CutSet

    back = CutSet.from_file(p1).to_eager()
    assert [c.id for c in back] == [c.id for c in kept] and back[kept[0].id].custom == kept[0].custom
    plain = write_cutset([c.to_dict() for c in kept], tmp_path / "out" / "c.jsonl")
    assert [json.loads(line)["id"] for line in plain.read_text().splitlines()] == [c.id for c in kept]
