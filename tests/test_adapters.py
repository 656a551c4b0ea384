"""Dataset adapters: tiny trees in each dataset's official layout, with generated audio.

Every test writes a few short clips (0.3 s at 16 kHz) where the dataset keeps them, points
a task at the tree, and checks the records and the Lhotse manifest the dataset stage
writes against what it wrote: ids, splits and folds, labels, multi-label sets, captions,
missing and unreadable clips counted and listed, never fatal.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness import sources, tasks
from harness.sources._build import build
from harness.errors import StudyError
from harness.stages.manifests import iter_cut_dicts

SR = 16000


def wav(path: Path, seconds: float = 0.3, freq: float = 440.0, fmt: str | None = None) -> Path:
    """A short sine + noise clip; ``fmt='MP3'`` writes MP3 (libsndfile >= 1.1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, x.astype(np.float32), SR, format=fmt)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MIRROR = Path(os.environ.get("HARNESS_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "mirror")


def task_with_data(name: str, data: Path, monkeypatch) -> dict:
    monkeypatch.setenv("HARNESS_DATA", str(data))
    return tasks.load_task(name)


def built(task: dict, tmp_path: Path) -> tuple[dict, list[dict], dict]:
    """(index, manifest cuts as dicts, report) of the task's dataset built under tmp_path."""
    out = tmp_path / "built" / task["name"].replace("/", "-")
    index = build(out, task["adapter"], task["args"], log=lambda m: None, workers=2)
    info = index["tasks"][task["adapter"]]
    cuts = list(iter_cut_dicts(out / info["path"]))
    report = json.loads((out / index["report"]).read_text())
    return index, cuts, report


def by_id(cuts: list[dict]) -> dict[str, dict]:
    return {c["id"]: c["custom"] for c in cuts}


# ---------------------------------------------------------------------------------------
# ESC-50 and UrbanSound8K: k-fold, default split fold 1 test, fold 2 valid, rest train.


def esc50_tree(root: Path) -> dict[str, tuple[int, str]]:
    rows = {"1-100-A-0": (1, "dog"), "2-200-A-1": (2, "rooster"), "3-300-A-0": (3, "dog"),
            "4-400-A-1": (4, "rooster"), "5-500-A-0": (5, "dog"), "5-501-A-1": (5, "rooster")}
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for i, (stem, (fold, cat)) in enumerate(rows.items()):
        lines.append(f"{stem}.wav,{fold},{0 if cat == 'dog' else 1},{cat},{'True' if i % 2 == 0 else 'False'},100,A")
        wav(root / "audio" / f"{stem}.wav", freq=300 + 50 * i)
    write(root / "meta" / "esc50.csv", "\n".join(lines) + "\n")
    return rows


def test_esc50_folds_and_labels(tmp_path, monkeypatch):
    rows = esc50_tree(tmp_path / "data" / "ESC-50-master")
    task = task_with_data("paper/esc50", tmp_path / "data", monkeypatch)
    assert task["folds"] == 5 and task["kind"] == "multiclass" and task["metric"] == "accuracy"
    index, cuts, report = built(task, tmp_path)
    got = by_id(cuts)
    assert set(got) == set(rows)
    for stem, (fold, cat) in rows.items():
        split = "test" if fold == 1 else "valid" if fold == 2 else "train"
        assert got[stem] == {"split": split, "fold": fold, "label": cat}
    assert index["tasks"]["esc50"]["counts"] == {"train": 4, "valid": 1, "test": 1}
    assert index["missing"] == 0 and report == {"missing": [], "unreadable": []}
    # the audio path is absolute and decodes
    src = cuts[0]["recording"]["sources"][0]["source"]
    assert Path(src).is_absolute() and sf.info(src).samplerate == SR


def test_esc10_variant_and_fold_choice(tmp_path, monkeypatch):
    esc50_tree(tmp_path / "data" / "ESC-50-master")
    task = task_with_data("paper/esc10", tmp_path / "data", monkeypatch)
    assert task["args"]["subset"] == "esc10" and task["adapter"] == "esc50"
    _, cuts, _ = built(task, tmp_path)
    assert sorted(by_id(cuts)) == ["1-100-A-0", "3-300-A-0", "5-500-A-0"]
    records = sources.get_adapter("esc50").load({**task["args"], "subset": None, "test_fold": 5, "valid_fold": 4})
    splits = {r.id: r.split for r in records}
    assert splits["5-500-A-0"] == splits["5-501-A-1"] == "test" and splits["4-400-A-1"] == "valid"


def test_urbansound8k(tmp_path, monkeypatch):
    root = tmp_path / "data" / "UrbanSound8K"
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    rows = {}
    for fold in (1, 2, 3, 10):
        name = f"{100 + fold}-3-0-{fold}.wav"
        cls = "siren" if fold % 2 else "dog_bark"
        lines.append(f"{name},{100 + fold},0.0,0.3,1,{fold},{fold % 2},{cls}")
        wav(root / "audio" / f"fold{fold}" / name)
        rows[name[:-4]] = (fold, cls)
    write(root / "metadata" / "UrbanSound8K.csv", "\n".join(lines) + "\n")
    task = task_with_data("paper/urbansound8k", tmp_path / "data", monkeypatch)
    assert task["folds"] == 10
    _, cuts, _ = built(task, tmp_path)
    got = by_id(cuts)
    assert {k: (v["fold"], v["label"]) for k, v in got.items()} == rows
    assert [got[k]["split"] for k in sorted(got, key=lambda k: rows[k][0])] == ["test", "valid", "train", "train"]


# ---------------------------------------------------------------------------------------
# FSD50K: multi-label, dev train/val + eval; a missing clip is counted, not fatal.


def test_fsd50k_multilabel_and_missing(tmp_path, monkeypatch):
    root = tmp_path / "data" / "FSD50K"
    write(root / "FSD50K.ground_truth" / "dev.csv",
          'fname,labels,mids,split\n'
          '11,"Speech,Human_voice",/m/09x0r,train\n'
          '12,Bark,/m/05tny_,train\n'
          '13,"Bark,Dog,Animal","/m/05tny_,/m/0bt9lr,/m/0jbk",val\n'
          '14,Speech,/m/09x0r,train\n')  # 14 has no audio
    write(root / "FSD50K.ground_truth" / "eval.csv", 'fname,labels,mids\n11,"Dog,Speech","/m/0bt9lr,/m/09x0r"\n')
    for name in ("11", "12", "13"):
        wav(root / "FSD50K.dev_audio" / f"{name}.wav")
    wav(root / "FSD50K.eval_audio" / "11.wav")
    task = task_with_data("paper/fsd50k", tmp_path / "data", monkeypatch)
    assert (task["kind"], task["metric"]) == ("multilabel", "map")
    index, cuts, report = built(task, tmp_path)
    got = by_id(cuts)
    assert got == {"dev-11": {"split": "train", "labels": ["Speech", "Human_voice"]},
                   "dev-12": {"split": "train", "labels": ["Bark"]},
                   "dev-13": {"split": "valid", "labels": ["Bark", "Dog", "Animal"]},
                   "eval-11": {"split": "test", "labels": ["Dog", "Speech"]}}
    assert index["missing"] == 1 and [m["id"] for m in report["missing"]] == ["dev-14"]
    assert index["tasks"]["fsd50k"]["labels"] == ["Animal", "Bark", "Dog", "Human_voice", "Speech"]


# ---------------------------------------------------------------------------------------
# The generic task: a CSV or JSONL, no code.


def generic_task(tmp_path: Path, manifest: str, extra: str = "kind: multiclass\nmetric: accuracy\n") -> str:
    tasks_dir = tmp_path / "tasks"
    write(tasks_dir / "birds.yaml", f"domain: environment\n{extra}adapter: generic\nargs: {{manifest: {manifest}}}\n")
    return str(tasks_dir)


def test_generic_csv(tmp_path, monkeypatch):
    data = tmp_path / "birds"
    for name in ("a", "b", "c", "d"):
        wav(data / "clips" / f"{name}.wav")
    write(data / "clips.csv", "path,label,split\nclips/a.wav,owl,train\nclips/b.wav,crow,val\n"
                              "clips/c.wav,owl,test\nclips/d.wav,crow,train\nclips/gone.wav,owl,train\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(data / "clips.csv")))
    task = tasks.load_task("birds")
    index, cuts, report = built(task, tmp_path)
    assert by_id(cuts) == {"clips/a": {"split": "train", "label": "owl", "labels": ["owl"]},
                           "clips/b": {"split": "valid", "label": "crow", "labels": ["crow"]},
                           "clips/c": {"split": "test", "label": "owl", "labels": ["owl"]},
                           "clips/d": {"split": "train", "label": "crow", "labels": ["crow"]}}
    assert index["missing"] == 1 and report["missing"][0]["id"] == "clips/gone"


def test_generic_jsonl_multilabel_folds(tmp_path, monkeypatch):
    data = tmp_path / "sfx"
    rows = [{"id": f"x{i}", "path": str(wav(data / f"{i}.wav")), "labels": labels, "fold": fold}
            for i, (labels, fold) in enumerate([(["door", "knock"], 1), ("door;steps", 2), (["steps"], 3)])]
    write(data / "clips.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("HARNESS_TASK_PATH",
                       generic_task(tmp_path, "../sfx/clips.jsonl", "kind: multilabel\nmetric: map\nfolds: 3\n"))
    task = tasks.load_task("birds")
    assert task["args"]["manifest"] == str(data / "clips.jsonl")  # relative to the task file
    _, cuts, _ = built(task, tmp_path)
    got = by_id(cuts)
    assert got["x0"]["labels"] == ["door", "knock"] and got["x1"]["labels"] == ["door", "steps"]
    assert [got[f"x{i}"]["split"] for i in range(3)] == ["test", "valid", "train"]
    assert [got[f"x{i}"]["fold"] for i in range(3)] == [1, 2, 3]


def test_generic_errors_are_one_line(tmp_path, monkeypatch):
    write(tmp_path / "bad.csv", "file,category\na.wav,x\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(tmp_path / "bad.csv")))
    with pytest.raises(StudyError) as err:
        tasks.load_task("birds")
    text = str(err.value)
    assert "birds.yaml: args.manifest: expected a column for labels or captions" in text
    assert "a split or fold" in text
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(tmp_path / "nope.csv")))
    with pytest.raises(StudyError, match=r"birds\.yaml: args\.manifest: file not found: .*nope\.csv"):
        tasks.load_task("birds")


# ---------------------------------------------------------------------------------------
# The registry: adapters, root errors, every paper task.


def test_missing_root_is_one_line_naming_file_key_and_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("ESC50_ROOT", raising=False)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with pytest.raises(StudyError) as err:
        tasks.load_task("paper/esc50")
    (line,) = str(err.value).strip().splitlines()
    assert "paper/esc50.yaml: args.root: expected the ESC-50 folder (meta/esc50.csv" in line
    assert "ESC50_ROOT and HARNESS_DATA not set" in line
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    with pytest.raises(StudyError, match=r"args\.root: .*ESC-50-master'.*no such folder"):
        tasks.load_task("paper/esc50")
    (tmp_path / "ESC-50-master").mkdir()
    with pytest.raises(StudyError, match=r"args\.root: expected the ESC-50 folder .* without meta/esc50.csv, audio/"):
        tasks.load_task("paper/esc50")


def test_unknown_adapter_and_bad_args(tmp_path, monkeypatch):
    write(tmp_path / "t" / "x.yaml", "domain: music\nkind: multiclass\nmetric: accuracy\nadapter: esc51\n")
    write(tmp_path / "t" / "y.yaml", "domain: music\nkind: multilabel\nmetric: map\nadapter: esc50\n"
                                     "args: {root: /, test_fold: 9, colour: red}\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", str(tmp_path / "t"))
    with pytest.raises(StudyError, match=r"x\.yaml: adapter: expected one of .*'esc50'.*did you mean 'esc50'"):
        tasks.load_task("x")
    with pytest.raises(StudyError) as err:
        tasks.load_task("y")
    text = str(err.value)
    assert "y.yaml: args.colour: unknown key" in text
    assert "y.yaml: args.test_fold: expected a fold in 1..5, found 9" in text
    assert "y.yaml: kind: the 'esc50' adapter gives multiclass clips" in text


# ---------------------------------------------------------------------------------------
# Corrupt audio: the dataset stage leaves out what it cannot open; extraction skips what
# fails to decode later. Both are counted and listed; the probe stage never sees them.


def _ctx(stage: str, config: dict, workdir: Path, home: Path, inputs: dict | None = None):
    from harness.job import StageContext

    workdir.mkdir(parents=True, exist_ok=True)
    return StageContext(stage=stage, key=f"{stage}-test", config=config, runtime={}, inputs=inputs or {},
                        workdir=workdir, cache_dir=home)


def test_corrupt_audio_is_skipped_counted_and_listed(tmp_path, monkeypatch, capsys):
    import torch

    from encoders import build_encoder
    from encoders.checkpoint import checkpoint_digest, save_encoder
    from harness import components
    from harness.graph import dataset_node
    from harness.job import InputRef
    from harness.stages import dataset as dataset_stage, embed as embed_stage, probe as probe_stage
    from probes.embed import load_shards

    data, home = tmp_path / "clips", tmp_path / "home"
    rows = ["path,label,split"]
    for i in range(12):
        wav(data / f"c{i:02d}.wav", freq=300 if i % 2 else 900)
        rows.append(f"c{i:02d}.wav,{'low' if i % 2 else 'high'},{['train', 'train', 'valid', 'test'][i % 4]}")
    write(data / "bad-header.wav", "this is not audio")  # unreadable at the dataset stage
    rows.append("bad-header.wav,low,train")
    write(data / "clips.csv", "\n".join(rows) + "\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(data / "clips.csv")))
    task = tasks.load_task("birds")

    node = dataset_node(task["adapter"], task["args"])
    ds_out = dataset_stage.run(_ctx("dataset", node.config, tmp_path / "ds", home))
    assert ds_out["num_clips"] == 12 and ds_out["unreadable"] == 1 and ds_out["missing"] == 0
    assert ds_out["unreadable_clips"][0]["id"] == "bad-header" and ds_out["unreadable_clips"][0]["error"]

    # After the manifest is written, one file is truncated and one overwritten with garbage.
    good = (data / "c00.wav").read_bytes()
    (data / "c00.wav").write_bytes(good[: len(good) // 4])
    (data / "c05.wav").write_bytes(b"\x00garbage" * 64)

    torch.manual_seed(0)
    encoder = build_encoder("transformer", size="tiny")
    (tmp_path / "pre").mkdir()
    save_encoder(tmp_path / "pre" / "encoder.pt", encoder, "transformer", {"size": "tiny"})
    (tmp_path / "pre" / "_done.json").write_text(json.dumps(
        {"outputs": {"checkpoint": "encoder.pt", "digest": checkpoint_digest(tmp_path / "pre" / "encoder.pt")}}))
    inputs = {"pretrain": InputRef("pretrain", "p", tmp_path / "pre"), "data": InputRef("dataset", "d", tmp_path / "ds")}
    config = {"task": task, "layer": -1, "features": components.FEATURES}
    capsys.readouterr()
    out = embed_stage.run(_ctx("embed", config, tmp_path / "emb", home, inputs))
    assert out["num_clips"] == 10 and out["skipped"] == 2
    skipped = {s["id"]: s for s in out["skipped_clips"]}
    assert set(skipped) == {"c00", "c05"}
    assert skipped["c00"]["path"] == str(data / "c00.wav") and skipped["c05"]["error"]
    assert "skipping clip c00" in capsys.readouterr().out
    assert json.loads((tmp_path / "emb" / "skipped.json").read_text()) == out["skipped_clips"]

    cache = Path(json.loads((tmp_path / "emb" / "embeddings.json").read_text())["path"])
    clips = json.loads((cache / "clips.json").read_text())
    assert len(clips) == len(load_shards(cache)) == 10
    assert {c["id"] for c in clips} == {f"c{i:02d}" for i in range(12)} - {"c00", "c05"}

    # A second run reuses the cache and still reports the skipped clips.
    again = embed_stage.run(_ctx("embed", config, tmp_path / "emb2", home, inputs))
    assert again["reused"] and again["skipped"] == 2

    probe_cfg = {"heads": ["linear"], "poolings": ["mean"], "lrs": [1e-2], "weight_decays": [0.0], "epochs": 2,
                 "batch_size": 8, "seed": 0, "precision": "auto", "task": task}
    result = probe_stage.run(_ctx("probe", probe_cfg, tmp_path / "probe", home,
                                  {"embed": InputRef("embed", "e", tmp_path / "emb")}))
    assert result["n_train"] + result["n_valid"] + result["n_test"] == 10


# ---------------------------------------------------------------------------------------
# The other paper datasets, in one tree under $HARNESS_DATA (built once for the module).


def us8k_tree(root: Path) -> None:
    write(root / "metadata" / "UrbanSound8K.csv",
          "slice_file_name,fsID,start,end,salience,fold,classID,class\n1-0-0-0.wav,1,0,0.3,1,1,0,siren\n")
    wav(root / "audio" / "fold1" / "1-0-0-0.wav")


def fsd50k_tree(root: Path) -> None:
    write(root / "FSD50K.ground_truth" / "dev.csv", "fname,labels,mids,split\n1,Bark,/m/x,train\n")
    write(root / "FSD50K.ground_truth" / "eval.csv", "fname,labels,mids\n1,Bark,/m/x\n")
    wav(root / "FSD50K.dev_audio" / "1.wav")
    wav(root / "FSD50K.eval_audio" / "1.wav")


def vggsound_tree(root: Path) -> dict:
    rows = [("abc", 30, "dog barking", "train"), ("def", 0, "playing piano", "train"),
            ("ghi", 5, "dog barking", "test"), ("jkl", 120, "playing piano", "test"),
            ("zzz", 10, "dog barking", "train")]  # zzz: not downloaded
    write(root / "vggsound.csv", "".join(f'{y},{s},"{lab}",{sp}\n' for y, s, lab, sp in rows))
    wav(root / "video" / "abc_000030.wav")
    wav(root / "video" / "sub" / "def_000000.flac")
    (root / "video" / "def_000000.mp4").write_bytes(b"not read: the flac is preferred")
    wav(root / "audio" / "ghi_5.wav")
    wav(root / "audio" / "jkl.wav")
    return {"abc_000030": ("train", "dog barking"), "def_000000": ("train", "playing piano"),
            "ghi_000005": ("test", "dog barking"), "jkl_000120": ("test", "playing piano")}


def audioset_tree(root: Path) -> dict:
    """Balanced train and eval segment CSVs (official format, comments included) and the clips
    under audio/ in the downloaders' names; one listed segment has no file."""
    head = "# Segments csv created Sun Mar  5 10:54:31 2017\n# YTID, start_seconds, end_seconds, positive_labels\n"
    write(root / "balanced_train_segments.csv", head + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"\n'
          'abcdEFGhijk, 0.000, 10.000, "/m/0bt9lr"\nmissing0000, 5.000, 15.000, "/m/0bt9lr"\n')
    write(root / "eval_segments.csv", head + 'zyxwVUTsrqp, 10.000, 20.000, "/m/0bt9lr,/m/09x0r"\n')
    wav(root / "audio" / "balanced" / "Y--PJHxphWEs.wav")
    wav(root / "audio" / "abcdEFGhijk_0.000_10.000.flac")
    wav(root / "audio" / "eval" / "zyxwVUTsrqp.wav")
    return {"--PJHxphWEs": ("train", ["Speech", "Music"]), "abcdEFGhijk": ("train", ["Dog"]),
            "zyxwVUTsrqp": ("test", ["Dog", "Speech"])}


def voxceleb1_tree(root: Path) -> dict:
    rows = {"id10001/vidA/00001": "1", "id10001/vidA/00002": "1", "id10001/vidB/00001": "2", "id10001/vidC/00001": "3",
            "id10002/vidD/00001": "1", "id10002/vidE/00001": "3"}
    write(root / "iden_split.txt", "".join(f"{code} {rel}.wav\n" for rel, code in rows.items()))
    for rel in rows:
        if rel != "id10002/vidE/00001":
            wav(root / "wav" / f"{rel}.wav")
    wav(root / "wav" / "id10002/vidE/00001.flac")  # converted: found with another extension
    return {rel: ({"1": "train", "2": "valid", "3": "test"}[code], rel.split("/")[0]) for rel, code in rows.items()}


def voxceleb2_tree(root: Path) -> None:
    for spk, videos in (("id00012", ["v1", "v2", "v3", "v4"]), ("id00015", ["w1", "w2"])):
        for v in videos:
            for clip in ("00001", "00002"):
                wav(root / "dev" / "aac" / spk / v / f"{clip}.wav", seconds=0.2)


def cremad_tree(root: Path) -> dict:
    out = {}
    for actor in range(1001, 1008):
        for emo, name in (("ANG", "anger"), ("NEU", "neutral")):
            stem = f"{actor}_IEO_{emo}_{'HI' if emo == 'ANG' else 'XX'}"
            wav(root / "AudioWAV" / f"{stem}.wav", seconds=0.2)
            out[stem] = ((actor - 1001) % 5 + 1, name)
    return out


def mtat_tree(root: Path, fmt: str = "MP3") -> dict:
    tags = ["guitar", "piano", "rock", "quiet"]
    clips = [(2, "0/a-b-1.mp3", {"guitar", "rock"}), (6, "b/c-d-2.mp3", {"piano"}), (9, "c/e-f-3.mp3", {"guitar"}),
             (12, "d/g-h-4.mp3", {"rock", "quiet"}), (15, "f/i-j-5.mp3", {"piano", "guitar"}),
             (20, "e/k-l-6.mp3", {"quiet"})]
    header = "\t".join(f'"{c}"' for c in ["clip_id", *tags, "mp3_path"])
    lines = [header]
    for cid, path, on in clips:
        lines.append("\t".join([f'"{cid}"', *(f'"{int(t in on)}"' for t in tags), f'"{path}"']))
        wav(root / "mp3" / path, fmt=fmt)
    write(root / "annotations_final.csv", "\n".join(lines) + "\n")
    return {str(cid): (path, on) for cid, path, on in clips}


def nsynth_tree(root: Path) -> dict:
    out = {}
    for split, notes in (("train", ["guitar_acoustic_000-060-100", "bass_synthetic_001-040-075"]),
                         ("valid", ["keyboard_electronic_002-062-050"]), ("test", ["guitar_electronic_003-064-127"])):
        examples = {}
        for note in notes:
            family = note.split("_")[0]
            examples[note] = {"note_str": note, "instrument_family_str": family, "pitch": int(note.split("-")[1]),
                              "instrument_source_str": note.split("_")[1]}
            wav(root / f"nsynth-{split}" / "audio" / f"{note}.wav")
            out[note] = (split, family)
        write(root / f"nsynth-{split}" / "examples.json", json.dumps(examples))
    return out


def audiocaps_tree(root: Path) -> None:
    write(root / "dataset" / "train.csv", "audiocap_id,youtube_id,start_time,caption\n"
          "1,aaa,30,A dog barks\n2,bbb,0,Rain falls\n")
    write(root / "dataset" / "val.csv", "audiocap_id,youtube_id,start_time,caption\n"
          "3,ccc,10,Wind blows\n4,ccc,10,Strong wind\n")
    write(root / "dataset" / "test.csv", "audiocap_id,youtube_id,start_time,caption\n"
          '5,ddd,20,"A man speaks, then a car passes"\n6,ddd,20,Speech and a car\n7,eee,0,Missing clip\n')
    wav(root / "audio" / "train" / "Yaaa.wav")
    wav(root / "audio" / "train" / "bbb_0.wav")
    wav(root / "audio" / "val" / "ccc.wav")
    wav(root / "audio" / "test" / "5.wav")  # named by audiocap_id


def clotho_tree(root: Path) -> None:
    for part, names in (("development", ["rain on roof.wav", "birds.wav"]), ("validation", ["car.wav"]),
                        ("evaluation", ["sea.wav"])):
        rows = ["file_name,caption_1,caption_2,caption_3,caption_4,caption_5"]
        for name in names:
            rows.append(f'{name},"{name} one",{name} two,{name} three,{name} four,{name} five')
            wav(root / ("clotho_audio_validation" if part == "validation" else part) / name)
        write(root / f"clotho_captions_{part}.csv", "\n".join(rows) + "\n")


def musiccaps_tree(root: Path) -> None:
    write(root / "musiccaps-public.csv",
          "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,author_id,is_balanced_subset,is_audioset_eval\n"
          "m1,30,40,\"['/m/04rlf']\",\"['low quality', 'piano']\",\"A solo piano, slow.\",1,False,True\n"
          "m2,0,10,[],\"['drums']\",Fast drums.,2,False,False\n"
          "m3,10,20,[],[],Not downloaded.,3,False,False\n")
    wav(root / "clips" / "m1.wav")
    wav(root / "clips" / "[m2]-[0-10].wav")


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("paper-data")
    expected = {
        "esc50": esc50_tree(data / "ESC-50-master"),
        "vggsound": vggsound_tree(data / "VGGSound"),
        "voxceleb1": voxceleb1_tree(data / "VoxCeleb1"),
        "cremad": cremad_tree(data / "CREMA-D"),
        "mtat": mtat_tree(data / "MagnaTagATune"),
        "nsynth": nsynth_tree(data / "NSynth"),
        "audioset": audioset_tree(data / "AudioSet"),
    }
    us8k_tree(data / "UrbanSound8K")
    fsd50k_tree(data / "FSD50K")
    voxceleb2_tree(data / "VoxCeleb2")
    audiocaps_tree(data / "AudioCaps")
    clotho_tree(data / "Clotho")
    musiccaps_tree(data / "MusicCaps")
    return data, expected


PAPER_TASKS = {"esc50": "esc50", "esc10": "esc50", "urbansound8k": "urbansound8k", "fsd50k": "fsd50k",
               "vggsound": "vggsound", "voxceleb1": "voxceleb1", "voxceleb2": "voxceleb2", "cremad": "cremad",
               "mtat": "mtat", "nsynth": "nsynth", "nsynth_pitch": "nsynth", "audiocaps": "audiocaps",
               "clotho": "clotho", "musiccaps": "musiccaps", "audioset": "audioset",
               # other evaluations of the same datasets (issue 16): they read the base task's clips
               "esc50_zeroshot": "esc50", "urbansound8k_zeroshot": "urbansound8k", "vggsound_zeroshot": "vggsound",
               "audioset_zeroshot": "audioset", "audiocaps_retrieval": "audiocaps", "clotho_retrieval": "clotho",
               "audiocaps_captioning": "audiocaps", "clotho_captioning": "clotho"}


def test_every_paper_task_validates_and_builds(paper_data, monkeypatch, tmp_path):
    from harness.graph import dataset_node

    data, _ = paper_data
    monkeypatch.setenv("HARNESS_DATA", str(data))
    names = sorted(n for n in tasks.available() if n.startswith("paper/"))
    assert names == sorted(f"paper/{n}" for n in PAPER_TASKS)
    metrics = {"fsd50k": "map", "vggsound": "accuracy", "voxceleb2": "accuracy", "cremad": "accuracy",
               "mtat": "map", "nsynth": "accuracy", "audioset": "map", "audioset_zeroshot": "map"}
    monkeypatch.setenv("HARNESS_MIRROR", str(MIRROR))  # AudioSet's class names: the verified asset
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    keys, datasets = set(), set()
    for name in names:
        task = tasks.load_task(name)
        leaf = name.split("/")[1]
        assert task["adapter"] == PAPER_TASKS[leaf]
        assert task["domain"] in tasks.DOMAINS and task["args"]["root"].startswith(str(data))
        if leaf in metrics:
            assert task["metric"] == metrics[leaf], name
        keys.add(dataset_node(task["adapter"], task["args"]).key)
        datasets.add(json.dumps([task["adapter"], task["args"]], sort_keys=True))
        index, cuts, _ = built(task, tmp_path)
        assert cuts, name
        splits = {c["custom"]["split"] for c in cuts}
        assert splits <= {"train", "valid", "test"}, name
        if task["kind"] in ("retrieval", "retrieval-probe", "captioning"):
            assert all(c["custom"]["captions"] for c in cuts)
    assert len(keys) == len(datasets) < len(names)  # a variant reading other clips gets its own dataset node;
    # one reading the same clips (zero-shot, retrieval, captioning of a dataset) shares its node


def test_vggsound_missing_clips_are_counted(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    task = task_with_data("paper/vggsound", data, monkeypatch)
    index, cuts, report = built(task, tmp_path)
    got = by_id(cuts)
    assert set(got) == set(expected["vggsound"])
    for cid, (split, label) in expected["vggsound"].items():
        assert got[cid]["label"] == label
        assert got[cid]["split"] == split or (split == "train" and got[cid]["split"] == "valid")
    paths = {c["id"]: c["recording"]["sources"][0]["source"] for c in cuts}
    assert paths["def_000000"].endswith("def_000000.flac")
    assert index["missing"] == 1 and report["missing"] == [
        {"id": "zzz_000010", "path": str(data / "VGGSound" / "zzz_000010.wav")}]


def test_audioset_eval_splits_labels_and_missing(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    monkeypatch.setenv("HARNESS_MIRROR", str(MIRROR))
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path / "home"))
    task = task_with_data("paper/audioset_zeroshot", data, monkeypatch)
    assert (task["kind"], task["metric"], task["adapter"]) == ("zero-shot", "map", "audioset")
    index, cuts, report = built(task, tmp_path)
    got = by_id(cuts)
    assert set(got) == set(expected["audioset"])
    for cid, (split, labels) in expected["audioset"].items():
        assert got[cid]["labels"] == labels
        assert got[cid]["split"] == split or (split == "train" and got[cid]["split"] == "valid")
    assert index["missing"] == 1 and report["missing"][0]["id"] == "missing0000"


def test_voxceleb1_official_split(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    task = task_with_data("paper/voxceleb1", data, monkeypatch)
    _, cuts, _ = built(task, tmp_path)
    got = by_id(cuts)
    assert {k: (v["split"], v["label"]) for k, v in got.items()} == expected["voxceleb1"]


def test_voxceleb2_video_disjoint_split(paper_data, monkeypatch, tmp_path):
    data, _ = paper_data
    task = task_with_data("paper/voxceleb2", data, monkeypatch)
    _, cuts, _ = built(task, tmp_path)
    got = by_id(cuts)
    assert len(got) == 12 and {v["label"] for v in got.values()} == {"id00012", "id00015"}
    split_of_video: dict[str, set] = {}
    for cid, v in got.items():
        split_of_video.setdefault(cid.rsplit("/", 1)[0], set()).add(v["split"])
    assert all(len(s) == 1 for s in split_of_video.values())  # a video is in one split
    big = [next(iter(split_of_video[f"id00012/{v}"])) for v in ("v1", "v2", "v3", "v4")]
    assert sorted(big) == ["test", "train", "train", "valid"]
    assert all(split_of_video[f"id00015/{v}"] == {"train"} for v in ("w1", "w2"))
    # with a split list in the VoxCeleb1 format, that list decides
    write(data / "VoxCeleb2" / "my_split.txt", "1 id00012/v1/00001.wav\n3 id00012/v2/00001.wav\n")
    records = sources.get_adapter("voxceleb2").load({**task["args"], "split_list": "my_split.txt"})
    assert [(r.id, r.split) for r in records] == [("id00012/v1/00001", "train"), ("id00012/v2/00001", "test")]


def test_cremad_speaker_disjoint_folds(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    task = task_with_data("paper/cremad", data, monkeypatch)
    assert task["folds"] == 5
    _, cuts, _ = built(task, tmp_path)
    got = by_id(cuts)
    assert {k: (v["fold"], v["label"]) for k, v in got.items()} == expected["cremad"]
    speakers: dict[str, set] = {}
    for v in got.values():
        speakers.setdefault(v["speaker"], set()).add(v["split"])
    assert all(len(s) == 1 for s in speakers.values())
    assert {v["split"] for v in got.values()} == {"train", "valid", "test"}


def test_mtat_top_tags_mp3_and_folder_split(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    task = task_with_data("paper/mtat", data, monkeypatch)
    index, cuts, report = built(task, tmp_path)
    got = by_id(cuts)
    assert report["unreadable"] == []  # the mp3 files decode (libsndfile >= 1.1)
    splits = {"0": "train", "b": "train", "c": "valid", "d": "test", "e": "test", "f": "test"}
    for cid, (path, on) in expected["mtat"].items():
        assert got[cid]["split"] == splits[path[0]]
        assert set(got[cid]["labels"]) == on
    # top_k 2 keeps the two most frequent tags (guitar 3, then piano/rock/quiet 2: piano by name)
    records = sources.get_adapter("mtat").load({**task["args"], "top_k": 2})
    kept = {r.id: set(r.labels) for r in records}
    assert kept == {"2": {"guitar"}, "6": {"piano"}, "9": {"guitar"}, "15": {"piano", "guitar"}}
    assert index["tasks"]["mtat"]["labels"] == ["guitar", "piano", "quiet", "rock"]


def test_nsynth_instrument_family(paper_data, monkeypatch, tmp_path):
    data, expected = paper_data
    task = task_with_data("paper/nsynth", data, monkeypatch)
    _, cuts, _ = built(task, tmp_path)
    assert {k: (v["split"], v["label"]) for k, v in by_id(cuts).items()} == expected["nsynth"]
    pitch = task_with_data("paper/nsynth_pitch", data, monkeypatch)
    records = sources.get_adapter("nsynth").load(pitch["args"])
    assert {r.id: r.label for r in records}["guitar_acoustic_000-060-100"] == "60"


def test_retrieval_manifests_carry_captions(paper_data, monkeypatch, tmp_path):
    data, _ = paper_data
    caps = task_with_data("paper/audiocaps", data, monkeypatch)
    index, cuts, report = built(caps, tmp_path)
    got = by_id(cuts)
    assert got == {"aaa_30": {"split": "train", "captions": ["A dog barks"]},
                   "bbb_0": {"split": "train", "captions": ["Rain falls"]},
                   "ccc_10": {"split": "valid", "captions": ["Wind blows", "Strong wind"]},
                   "ddd_20": {"split": "test", "captions": ["A man speaks, then a car passes", "Speech and a car"]}}
    assert [m["id"] for m in report["missing"]] == ["eee_0"]
    clotho = task_with_data("paper/clotho", data, monkeypatch)
    _, cuts, _ = built(clotho, tmp_path)
    got = by_id(cuts)
    assert {k: v["split"] for k, v in got.items()} == {
        "development/rain on roof": "train", "development/birds": "train", "validation/car": "valid",
        "evaluation/sea": "test"}
    assert got["evaluation/sea"]["captions"] == [f"sea.wav {n}" for n in ("one", "two", "three", "four", "five")]
    music = task_with_data("paper/musiccaps", data, monkeypatch)
    assert music["domain"] == "music"
    index, cuts, report = built(music, tmp_path)
    got = by_id(cuts)
    assert got["m1_30"] == {"split": "test", "captions": ["A solo piano, slow."], "aspects": ["low quality", "piano"]}
    assert got["m2_0"]["captions"] == ["Fast drums."] and got["m2_0"]["split"] in ("train", "valid")
    assert [m["id"] for m in report["missing"]] == ["m3_10"]


def test_zero_shot_tasks_use_labelled_adapters(paper_data, monkeypatch, tmp_path):
    data, _ = paper_data
    write(tmp_path / "t" / "zs.yaml", "include: " + str(Path(tasks.__file__).parents[1] / "probes/tasks/paper/esc50.yaml")
          + "\nkind: zero-shot\n")
    write(tmp_path / "t" / "bad.yaml", "include: " + str(Path(tasks.__file__).parents[1] / "probes/tasks/paper/clotho.yaml")
          + "\nkind: multiclass\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", str(tmp_path / "t"))
    assert task_with_data("zs", data, monkeypatch)["adapter"] == "esc50"
    with pytest.raises(StudyError, match=r"bad\.yaml: kind: the 'clotho' adapter gives retrieval clips"):
        task_with_data("bad", data, monkeypatch)


def test_docs_generic_example_runs(tmp_path, monkeypatch):
    """The CSV and task file of docs/tasks.md, as written there, give the records they promise."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "tasks.md").read_text()
    section = doc[doc.index("## A new dataset from a CSV"):]
    csv_text = re.search(r"```csv\n(.*?)```", section, re.S).group(1)
    yaml_text = re.search(r"`~/my-tasks/birds.yaml`:\n\n```yaml\n(.*?)```", section, re.S).group(1)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    write(home / "data" / "birds" / "clips.csv", csv_text)
    for line in csv_text.splitlines()[1:]:
        wav(home / "data" / "birds" / line.split(",")[0])
    write(home / "my-tasks" / "birds.yaml", yaml_text)
    monkeypatch.setenv("HARNESS_TASK_PATH", str(home / "my-tasks"))
    task = tasks.load_task("birds")
    _, cuts, _ = built(task, tmp_path)
    assert {k: (v["label"], v["split"]) for k, v in by_id(cuts).items()} == {
        "audio/001": ("owl", "train"), "audio/002": ("crow", "train"), "audio/003": ("owl", "valid"),
        "audio/004": ("crow", "test")}


def test_max_per_split_and_valid_fraction_are_deterministic():
    from harness.sources._adapter import finalize
    from harness.sources._common import Clip

    def make():
        return [Clip(id=f"c{i}", path="x", split="test" if i < 10 else "train", label="a") for i in range(100)]

    a = finalize(make(), {"valid_fraction": 0.2, "max_per_split": {"train": 30}})
    b = finalize(make(), {"valid_fraction": 0.2, "max_per_split": {"train": 30}})
    assert [(r.id, r.split) for r in a] == [(r.id, r.split) for r in b]
    counts = {s: sum(r.split == s for r in a) for s in ("train", "valid", "test")}
    assert counts["train"] == 30 and counts["test"] == 10 and 8 <= counts["valid"] <= 30
    with pytest.raises(ValueError, match="appears twice"):
        finalize(make() + make()[:1], {})


def test_a_bad_row_of_a_generic_task_is_found_at_plan(tmp_path, monkeypatch):
    """A bad split value, or a row without a label, is one line when the task is loaded
    (that is, at `harness plan`), naming the file and line — not a failed dataset job."""
    write(tmp_path / "clips.csv", "path,label,split\na.wav,owl,train\nb.wav,crow,training-set\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(tmp_path / "clips.csv")))
    with pytest.raises(StudyError) as err:
        tasks.load_task("birds")
    (line,) = err.value.problems
    assert "birds.yaml: args.manifest:" in line and "clips.csv:3: clip 'b': split: expected train, valid or test" in line
    write(tmp_path / "clips.csv", "path,label,split\na.wav,owl,train\nb.wav,,test\n")
    with pytest.raises(StudyError, match=r"clips\.csv:3: clip 'b' has no label, labels or caption"):
        tasks.load_task("birds")


def test_one_reader_serves_each_corpus_format(tmp_path):
    """AudioCaps, Clotho and a generic CSV are each read by one parser, whether as a
    pre-training source or as a probe task: the same clips, captions and audio files."""
    from harness.sources import read_source

    csvs = tmp_path / "audiocaps"
    header = "audiocap_id,youtube_id,start_time,caption\n"
    write(csvs / "train.csv", header + "1,aaaaaaaaaaa,30,a dog barks\n")
    write(csvs / "val.csv", header + "2,bbbbbbbbbbb,0,rain falls\n3,bbbbbbbbbbb,0,heavy rain\n")
    write(csvs / "test.csv", header + "4,ccccccccccc,10,a bell rings\n")
    wav(csvs / "audio" / "Yaaaaaaaaaaa_30.000.wav")
    wav(csvs / "audio" / "bbbbbbbbbbb.flac")
    wav(csvs / "audio" / "4.wav")
    cuts, _ = read_source("audiocaps", captions=[str(csvs / f) for f in ("train.csv", "val.csv", "test.csv")],
                          audio_dir=str(csvs / "audio"))
    task = sources.get_adapter("audiocaps").load({"root": str(csvs), "audio_dir": "audio"})
    source_view = {c.custom["youtube_id"]: (c.custom["captions"], c.recording.sources[0].source) for c in cuts}
    task_view = {c.id.split("_")[0]: (c.captions, c.path) for c in task}
    assert source_view == task_view and len(task_view) == 3

    write(tmp_path / "clotho" / "clotho_captions_development.csv",
          "file_name,caption_1,caption_2\nx.wav,one,two\n")
    write(tmp_path / "clotho" / "clotho_captions_evaluation.csv", "file_name,caption_1,caption_2\ny.wav,three,\n")
    wav(tmp_path / "clotho" / "development" / "x.wav")
    wav(tmp_path / "clotho" / "evaluation" / "y.wav")
    cuts, _ = read_source("clotho", root=str(tmp_path / "clotho"))
    task = sources.get_adapter("clotho").load({"root": str(tmp_path / "clotho"), "valid_fraction": None})
    assert {c.id: c.custom["captions"] for c in cuts} == {c.id.split("/")[1]: c.captions for c in task}

    write(tmp_path / "g" / "list.csv", "path,caption,captions,split\na.wav,first,second;third,train\n")
    wav(tmp_path / "g" / "a.wav")
    (cut,), _ = read_source("generic", path=str(tmp_path / "g" / "list.csv"))
    (clip,) = sources.get_adapter("generic").load({"manifest": str(tmp_path / "g" / "list.csv")})
    assert sorted(cut.custom["captions"]) == sorted(clip.captions) == ["first", "second", "third"]


# ---------------------------------------------------------------------------------------
# Truncated audio: libsndfile reads a cut file as a shorter valid clip; the dataset stage
# compares it with what its container (or its metadata) declares.


def noise(path: Path, seconds: float, fmt: str, subtype: str | None = None) -> Path:
    """Noise (which compresses poorly, so an Ogg or FLAC file has many pages and frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(zlib.crc32(path.name.encode())).standard_normal(int(seconds * SR))
    sf.write(path, x.astype(np.float32), SR, format=fmt, subtype=subtype)
    return path


def cut(path: Path, fraction: float) -> Path:
    """Keep the first ``fraction`` of the file's bytes, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_truncated_ogg_flac_and_wav_are_skipped_and_counted_as_truncated(tmp_path, monkeypatch):
    from harness.graph import dataset_node
    from harness.stages import dataset as dataset_stage

    data, rows = tmp_path / "clips", ["path,label,split"]
    for fmt, subtype, ext, fraction in (("OGG", "VORBIS", "ogg", 1 / 3), ("FLAC", None, "flac", 0.6),
                                        ("WAV", None, "wav", 0.4)):
        noise(data / f"whole-{ext}.{ext}", 3.0, fmt, subtype)
        cut(noise(data / f"cut-{ext}.{ext}", 3.0, fmt, subtype), fraction)
        rows += [f"whole-{ext}.{ext},a,train", f"cut-{ext}.{ext},b,train"]
    # a WAV written as a stream (no data size declared) is not truncated: nothing to compare
    stream = bytearray(noise(data / "stream.wav", 1.0, "WAV").read_bytes())
    at = stream.find(b"data")
    stream[at + 4:at + 8] = b"\xff\xff\xff\xff"
    (data / "stream.wav").write_bytes(bytes(stream))
    rows.append("stream.wav,a,test")
    write(data / "clips.csv", "\n".join(rows) + "\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", generic_task(tmp_path, str(data / "clips.csv")))
    task = tasks.load_task("birds")

    node = dataset_node(task["adapter"], task["args"])
    out = dataset_stage.run(_ctx("dataset", node.config, tmp_path / "ds", tmp_path / "home"))
    assert out["num_clips"] == 4 and out["unreadable"] == 0 and out["missing"] == 0
    assert out["truncated"] == 3
    reasons = {c["id"]: c["error"] for c in out["truncated_clips"]}
    assert sorted(reasons) == ["cut-flac", "cut-ogg", "cut-wav"]
    assert all(reason.startswith("truncated: ") for reason in reasons.values())
    assert "where its header declares 3.000 s" in reasons["cut-wav"]
    assert "Ogg" in reasons["cut-ogg"] and "header declares 3.000 s" in reasons["cut-flac"]
    report = json.loads(Path(out["report"]).read_text())
    assert [c["id"] for c in report["truncated"]] == ["cut-ogg", "cut-flac", "cut-wav"]
    manifest = dataset_stage.task_manifest(tmp_path / "ds", "generic")
    assert sorted(c["id"] for c in iter_cut_dicts(manifest)) == ["stream", "whole-flac", "whole-ogg", "whole-wav"]


def test_a_clip_shorter_than_its_metadata_says_is_truncated(tmp_path):
    from harness.sources._build import probe_audio
    from harness.sources._common import Clip

    path = noise(tmp_path / "a.wav", 2.0, "WAV")
    assert probe_audio(Clip(id="a", path=str(path)), expected_s=2.2)[1] is None  # within rounding
    rec, problem = probe_audio(Clip(id="a", path=str(path)), expected_s=5.0)
    assert rec is None and problem == "truncated: 2.000 s of audio where its metadata gives 5.000 s"
