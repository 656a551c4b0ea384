"""Sharded pools (Lhotse Shar): written, read back lazily, streamed by DataLoader workers
with each clip exactly once and the same features as from the original audio."""

from __future__ import annotations

import numpy as np
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
