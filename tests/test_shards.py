"""Sharded pools (Lhotse Shar): written, read back lazily, streamed by DataLoader workers
with each clip exactly once and the same features as from the original audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from harness.sources.shards import ShardFeatures, collate_ids_and_features, read_shards, write_shards


def _cuts(folder, n=6):
    from lhotse import Recording

    rng = np.random.default_rng(0)
    cuts = []
    for i in range(n):
        audio = (0.3 * rng.standard_normal(4000 + 800 * i)).clip(-1, 1).astype(np.float32)
        sf.write(folder / f"c{i}.wav", audio, 16000, subtype="PCM_16")
        cut = Recording.from_file(folder / f"c{i}.wav", recording_id=f"c{i}").to_cut()
        cut.custom = {"caption": f"clip {i}", "tags": ["noise"]}
        cuts.append(cut)
    return cuts


def test_shards_round_trip_and_stream_each_clip_once(tmp_path):
    from torch.utils.data import DataLoader

    from encoders.features import fbank

    cuts = _cuts(tmp_path)
    index = write_shards(cuts, tmp_path / "shards", shard_size=2)
    assert index["num_clips"] == 6 and len(index["fields"]["cuts"]) == 3 == len(index["fields"]["recording"])
    back = list(read_shards(tmp_path / "shards"))
    assert [c.id for c in back] == [c.id for c in cuts]
    assert back[3].custom["caption"] == "clip 3" and back[3].custom["tags"] == ["noise"]
    for a, b in zip(cuts, back):
        assert np.array_equal(a.load_audio(), b.load_audio())  # FLAC is lossless on 16-bit audio

    loader = DataLoader(ShardFeatures(tmp_path / "shards"), batch_size=2, num_workers=2,
                        collate_fn=collate_ids_and_features)
    seen = {}
    for ids, feats, lengths in loader:
        for clip, f, n in zip(ids, feats, lengths):
            seen.setdefault(clip, []).append(f[:n])
    assert sorted(seen) == sorted(c.id for c in cuts) and all(len(v) == 1 for v in seen.values())
    for cut in cuts:
        expected = fbank(cut.load_audio()[0], 16000)
        assert torch.allclose(seen[cut.id][0], expected, atol=1e-5)


# ------------------------------------------------------------------- pre-training streams


def test_round_robin_skips_match_a_literal_round_robin():
    from harness.sources.shards import round_robin_skips

    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = [int(c) for c in rng.integers(0, 7, int(rng.integers(1, 5)))]
        literal, taken = [], [0] * len(counts)
        while any(t < c for t, c in zip(taken, counts)):
            for w in range(len(counts)):
                if taken[w] < counts[w]:
                    taken[w] += 1
                    literal.append(list(taken))
        for position in range(sum(counts) + 1):
            expected = literal[position - 1] if position else [0] * len(counts)
            assert round_robin_skips(counts, position) == expected, (counts, position)


def _feed(root, rows, workers, in_process=False):
    from harness.sources.shards import ShardFeed

    return ShardFeed(root, rows, batch_size=4, seed=3, workers=workers, buffer=2, prefetch=2, in_process=in_process)


def test_shard_feed_epochs_resume_and_workers(tmp_path):
    """Every epoch gives each training clip once, in a seeded order that differs between
    epochs; a feed opened at any step gives exactly the batches of an uninterrupted one; in
    worker processes the stream is the one decoded in-process."""
    from encoders.features import fbank

    cuts = _cuts(tmp_path, n=11)
    write_shards(cuts, tmp_path / "shards", shard_size=2)  # 6 shards of 2, 2, 2, 2, 2, 1
    rows = {c.id: r for r, c in enumerate(c for c in cuts if c.id != "c4")}  # c4 does not train
    feed = _feed(tmp_path / "shards", rows, workers=2, in_process=True)
    assert len(feed) == 10 and feed.per_epoch == 10
    steps = 8  # 32 clips: three epochs and a bit, batches straddling epochs
    stream, features = [], {}
    for step in range(steps):
        batch = feed.batch(step)
        stream += batch
        features.update({(step, r): feed[r] for r in batch})
    epochs = [stream[i:i + 10] for i in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each clip once per epoch
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    by_row = {r: c for c, r in rows.items()}
    audio = {c.id: c.load_audio()[0] for c in cuts}
    for (step, row), f in features.items():
        assert torch.allclose(f, fbank(audio[by_row[row]], 16000), atol=1e-5)

    for start in range(1, steps):  # resumed at step `start`: no state but the step
        resumed = _feed(tmp_path / "shards", rows, workers=2, in_process=True)
        assert sum((resumed.batch(s) for s in range(start, steps)), []) == stream[4 * start:]
    processes = _feed(tmp_path / "shards", rows, workers=2)
    assert sum((processes.batch(s) for s in range(steps)), []) == stream
    resumed = _feed(tmp_path / "shards", rows, workers=2)
    assert sum((resumed.batch(s) for s in range(5, steps)), []) == stream[20:]


def test_round_robin_offsets_match_a_literal_round_robin():
    from harness.sources.shards import round_robin_offset

    rng = np.random.default_rng(1)
    for _ in range(200):
        counts = [int(c) for c in rng.integers(0, 7, int(rng.integers(1, 5)))]
        literal, taken = [], [0] * len(counts)  # (worker, k) in stream order
        while any(t < c for t, c in zip(taken, counts)):
            for w in range(len(counts)):
                if taken[w] < counts[w]:
                    literal.append((w, taken[w]))
                    taken[w] += 1
        assert [round_robin_offset(counts, w, k) for w, k in literal] == list(range(len(literal))), counts


@pytest.mark.parametrize("workers", [2, 3])
def test_under_ddp_each_rank_decodes_only_its_share_of_each_batch(tmp_path, monkeypatch, workers):
    """Every rank reads the single-process stream of rows; it decodes exactly the clips at
    ``batch[rank::world]``, with the single-process features, and no other clip; also when
    opened at a later step (a resumed run)."""
    import harness.sources.shards as shards
    from harness.sources.shards import ShardFeed

    cuts = _cuts(tmp_path, n=11)
    write_shards(cuts, tmp_path / "shards", shard_size=2)
    rows = {c.id: r for r, c in enumerate(cuts)}
    steps = 7  # 28 clips: batches straddle the 11-clip epochs

    def feed(**ddp):
        return ShardFeed(tmp_path / "shards", rows, batch_size=4, seed=3, workers=workers, buffer=2, prefetch=2,
                         in_process=True, **ddp)

    single = feed()
    batches, features = [], []  # a feed holds the features of its current batch only
    for s in range(steps):
        batches.append(single.batch(s))
        features.append({r: single[r] for r in batches[-1]})
    decoded = []
    original = shards.clip_fbank
    monkeypatch.setattr(shards, "clip_fbank", lambda cut, bins: decoded.append(cut.id) or original(cut, bins))
    for world in (2, 3):
        for rank in range(world):
            for start in (0, 3):
                decoded.clear()
                ranked = feed(rank=rank, world=world)
                mine = []
                for s in range(start, steps):
                    batch = ranked.batch(s)
                    assert batch == batches[s]
                    share = batch[rank::world]
                    mine += share
                    for r in batch:
                        if r in share:
                            assert torch.equal(ranked[r], features[s][r])
                        else:
                            assert ranked[r] is None
                by_row = {r: c for c, r in rows.items()}
                assert sorted(decoded) == sorted(by_row[r] for r in mine), (world, rank, start)


def test_pretraining_from_shards_resumes_exactly(tmp_path):
    """The trainer on a shard feed: a run killed after its checkpoint and resumed logs the
    same losses as an uninterrupted one (batches depend on the step only)."""
    import csv

    from encoders import build_encoder
    from encoders.objectives.mtc import MTC
    from encoders.trainer import TrainConfig, train

    cuts = _cuts(tmp_path, n=9)
    write_shards(cuts, tmp_path / "shards", shard_size=2)
    rows = {c.id: r for r, c in enumerate(cuts)}
    targets = (torch.arange(9)[:, None] % torch.tensor([2, 3]) == 0).float()
    config = TrainConfig(steps=6, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=3, specaugment=None,
                         num_threads=1, seed=1)

    def run(out, steps_before_kill=None):
        torch.manual_seed(0)
        encoder = build_encoder("transformer", size="tiny")
        objective = MTC(encoder.dim, 2)
        feed = _feed(tmp_path / "shards", rows, workers=2)
        if steps_before_kill is not None:
            original = feed.batch

            def batch(step):
                if step == steps_before_kill:
                    raise KeyboardInterrupt
                return original(step)

            feed.batch = batch
        return train(encoder, objective, feed, targets, config, out, progress=False, sampler=feed)

    run(tmp_path / "a")
    try:
        run(tmp_path / "b", steps_before_kill=4)
    except KeyboardInterrupt:
        pass
    summary = run(tmp_path / "b")
    assert summary["resumed_from"] == 3

    def losses(folder):
        with open(folder / "train_log.csv") as f:
            return [(r["step"], r["loss"]) for r in csv.DictReader(f)]

    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 6


STREAM_STUDY = """
include: {base}
name: stream
tagging: {{sizes: [16]}}
pretrain:
  encoder: {{name: transformer, size: tiny}}
  objectives: [mtc]
  seeds: [0, 1]
  steps: 12
  batch_size: 16
  checkpoint_every: 6
  stream: {{shard_size: 100, workers: 2, buffer: 50}}
probes: {{tasks: [mini/env_event], epochs: 5}}
"""


def test_stream_and_duration_bucketing_exclude_each_other(tmp_path):
    from harness.errors import StudyError
    from harness.study import load_study

    path = tmp_path / "s.yaml"
    base = Path(__file__).resolve().parent.parent / "studies" / "base" / "mini.yaml"
    path.write_text(STREAM_STUDY.format(base=base).replace("batch_size: 16", "max_duration: 30"))
    with pytest.raises(StudyError, match="pretrain.stream: streamed batches have batch_size clips"):
        load_study(path)


@pytest.mark.slow
def test_a_study_pretrains_from_shards_written_once(tmp_path, harness_env):
    import json
    import subprocess
    import sys

    base = Path(__file__).resolve().parent.parent / "studies" / "base" / "mini.yaml"
    path = tmp_path / "stream.yaml"
    path.write_text(STREAM_STUDY.format(base=base))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(out), "--no-progress"],
                          env=harness_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    home = Path(harness_env["HARNESS_HOME"])
    (shards,) = [p for p in (home / "shards").iterdir()]  # both seeds: one copy of the pool, no leftovers
    index = json.loads((shards / "shards.json").read_text())
    assert index["num_clips"] > 0 and len(index["fields"]["recording"]) == -(-index["num_clips"] // 100)
    records = [json.loads(p.read_text()) for p in (out / "store" / "pretrain").glob("*/_done.json")]
    assert len(records) == 2
    for record in records:
        assert record["config"]["train"]["stream"] == {"shard_size": 100, "workers": 2, "buffer": 50}
        assert 0 < record["outputs"]["train"]["clips"] <= index["num_clips"] and record["outputs"]["train"]["steps"] == 12
    logs = "".join(p.read_text() for p in (out / "logs").rglob("*.out"))
    assert logs.count("streaming") == 2  # each run streamed; neither held the pool's features
