"""Retrieval and captioning probes trained on frozen frames (probes/text_heads.py): the
caption metrics against pycocoevalcap called directly, a decoder that learns a trivial
mapping, a retrieval head that separates separable clips, and the probe stage's records and
result rows for both kinds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from harness.job import InputRef, StageContext
from harness.store import atomic_write_json
from probes.embed import save_shards

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java (default-jre-headless)")
WORDS = ["dog", "rain", "engine", "bird"]


def _clips(n_per_class=6, dim=16, seed=0):
    """Frames of clip class c: a pattern of class c plus noise; captions name the class."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((len(WORDS), dim)) * 2.0
    frames, clips = [], []
    for c, word in enumerate(WORDS):
        for j in range(n_per_class):
            frames.append((patterns[c] + 0.3 * rng.standard_normal((int(rng.integers(3, 7)), dim))).astype(np.float16))
            split = ["train", "train", "train", "valid", "test", "test"][j % 6]
            clips.append({"id": f"{word}{j}", "split": split, "label": None, "labels": None, "fold": None,
                          "captions": [f"a {word} sound", f"the {word} is heard"]})
    return frames, clips


HEAD = {"epochs": 40, "lr": 3e-3, "weight_decay": 0.0, "batch_size": 16, "select": True, "text_model": None,
        "text_pooling": "mean", "train_text": False, "proj_dim": 16, "temperature": 0.07, "max_tokens": 16,
        "normalize": "lowercase_no_punct", "dim": 32, "layers": 1, "heads": 2, "dropout": 0.0,
        "label_smoothing": 0.0, "min_count": 1, "max_words": 8}


def _ctx(tmp_path, frames, clips, task):
    cache = tmp_path / "cache"
    save_shards(cache, frames)
    atomic_write_json(cache / "clips.json", clips)
    atomic_write_json(cache / "meta.json", {"num_clips": len(frames), "dim": 16, "manifest": "unused"})
    embed = tmp_path / "embed"
    atomic_write_json(embed / "embeddings.json", {"cache_key": "k", "path": str(cache), "pretrain": str(tmp_path)})
    atomic_write_json(embed / "_done.json", {"config": {"layer": -1}, "inputs": {"pretrain": "pretrain/x"}})
    work = tmp_path / "work"
    work.mkdir()
    return StageContext(stage="probe", key="p", config={"task": task, "seed": 0}, runtime={},
                        inputs={"embed": InputRef("embed", "e", embed)}, workdir=work, cache_dir=tmp_path / "home")


def _task(kind, metric):
    return {"name": "caps", "kind": kind, "metric": metric, "domain": "environment", "head": dict(HEAD),
            "splits": {"train": "train", "valid": "valid", "test": "test"}}


@needs_java
def test_caption_scores_match_pycocoevalcap_called_directly() -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from probes.metrics import caption_scores

    refs = [["A dog barks loudly.", "a dog is barking"], ["Rain falls on a tin roof.", "rain on a roof"],
            ["An engine idles, then revs.", "a car engine running"]]
    cands = ["a dog barks", "rain falls on the roof", "a motor is running"]
    scores, omitted = caption_scores(refs, cands)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(cands)})
    assert scores["bleu_4"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    assert scores["meteor"] == pytest.approx(Meteor().compute_score(gts, res)[0])
    assert scores["rouge_l"] == pytest.approx(Rouge().compute_score(gts, res)[0])
    assert scores["cider_d"] == pytest.approx(Cider().compute_score(gts, res)[0])
    assert ("spice" in scores) != ("spice" in omitted)
    perfect, _ = caption_scores([["a dog barks very loudly"]] * 2, ["a dog barks very loudly"] * 2)
    assert perfect["bleu_4"] == pytest.approx(1.0, abs=1e-6) and perfect["rouge_l"] == pytest.approx(1.0)


def test_caption_decoder_learns_a_trivial_mapping() -> None:
    from probes.text_heads import greedy_captions, train_caption_decoder

    frames, clips = _clips()
    part = lambda s: ([f for f, c in zip(frames, clips) if c["split"] in s],
                      [[c["captions"][0]] for c in clips if c["split"] in s])
    model, vocab, info = train_caption_decoder(part(("train", "valid")), None, 16, {**HEAD, "select": False},
                                               seed=0, log=lambda _: None)
    assert info["history"][-1]["train_loss"] < 0.2 * info["history"][0]["train_loss"]
    test_frames, test_caps = part(("test",))
    assert greedy_captions(model, vocab, test_frames, 8) == [c[0] for c in test_caps]
    assert vocab.decode(vocab.encode("A dog, sound!", 8)) == "a dog sound"


def test_retrieval_head_separates_separable_clips() -> None:
    from probes.text_heads import train_retrieval_head

    frames, clips = _clips()
    part = lambda s: ([f for f, c in zip(frames, clips) if c["split"] == s],
                      [c["captions"] for c in clips if c["split"] == s])
    result = train_retrieval_head(part("train"), part("valid"), part("test"), 16, HEAD, seed=0, log=lambda _: None)
    # 8 test clips of 4 classes, 2 each; captions shared by a class: a perfect ranking finds one at rank 1.
    assert result["recalls"]["text-to-audio"]["recall@1"] == 1.0
    assert result["recalls"]["audio-to-text"]["recall@1"] == 1.0
    assert 1 <= result["epoch"] <= HEAD["epochs"] and len(result["history"]) == HEAD["epochs"]


@needs_java
@pytest.mark.parametrize("kind,metric", [("retrieval-probe", "recall@1"), ("captioning", "cider_d")])
def test_stage_records_and_rows(tmp_path, kind, metric) -> None:
    from harness.collect import sweep_rows
    from harness.stages import probe as probe_stage

    frames, clips = _clips()
    task = _task(kind, metric)
    task["head"]["epochs"] = 5
    ctx = _ctx(tmp_path, frames, clips, task)
    out = probe_stage.run(ctx)
    sweep = json.loads((ctx.workdir / "sweep.json").read_text())
    assert out["n_train"] == 12 and out["n_valid"] == 4 and out["n_test"] == 8 and sweep["metric"] == metric
    rows = sweep_rows({"task": "caps"}, sweep)
    if kind == "retrieval-probe":
        assert {(r["head"], r["metric"]) for r in rows} == {
            (f"trained-{d}", f"recall@{k}") for d in ("text-to-audio", "audio-to-text") for k in (1, 5, 10)}
    else:
        assert {r["metric"] for r in rows} >= {"bleu_4", "meteor", "rouge_l", "cider_d"}
        assert {r["head"] for r in rows} == {"greedy"} and sweep["decoding"] == "greedy"
        written = [json.loads(line) for line in (ctx.workdir / "captions.jsonl").read_text().splitlines()]
        assert [w["id"] for w in written] == [c["id"] for c in clips if c["split"] == "test"]
        assert all(w["references"] and isinstance(w["caption"], str) for w in written)
    assert all(np.isfinite(r["value"]) for r in rows)
