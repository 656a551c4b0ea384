"""Sharded storage of a pre-training pool: Lhotse Shar, streamed with bounded memory.

:func:`write_shards` writes a CutSet (its manifests and its audio, re-encoded) as Lhotse
Shar: ``cuts.NNNNNN.jsonl.gz`` plus ``recording.NNNNNN.tar`` per shard of ``shard_size``
clips, and ``shards.json`` (the shard list and the counts). :func:`read_shards` opens them
as a lazy CutSet that reads one tar member at a time. :class:`ShardFeatures` is an
``IterableDataset`` that a ``torch.utils.data.DataLoader`` streams: each worker takes its
own shards (``split_for_dataloading``), decodes a clip from its tar, computes its 80-bin
Kaldi fbank and yields it. What is in memory at any time is the clips in flight: about
``num_workers × prefetch_factor × batch_size``, whatever the size of the pool
(``benchmarks/bench_data_loading.py`` measures it).

Imports lhotse and torch inside the functions, as the rest of ``harness.sources``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

INDEX = "shards.json"


def write_shards(cuts: Iterable[Any], out_dir: str | os.PathLike, shard_size: int = 1000,
                 audio_format: str = "flac") -> dict[str, Any]:
    """Write ``cuts`` (Lhotse cuts with recordings) and their audio as Lhotse Shar in ``out_dir``.

    Returns the index written to ``shards.json``: ``{"fields": {"cuts": [...], "recording":
    [...]}, "num_clips", "shard_size", "audio_format"}``, paths relative to ``out_dir``.
    """
    from lhotse import CutSet

    if shard_size < 1:
        raise ValueError(f"shard_size: expected a positive number of clips, found {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cutset = cuts if isinstance(cuts, CutSet) else CutSet.from_cuts(cuts)
    written = cutset.to_shar(out, fields={"recording": audio_format}, shard_size=shard_size, num_jobs=1)
    num = sum(1 for _ in CutSet.from_shar(fields={"cuts": written["cuts"]}))
    index = {"fields": {name: [str(Path(p).relative_to(out)) for p in paths] for name, paths in written.items()},
             "num_clips": num, "shard_size": shard_size, "audio_format": audio_format}
    tmp = out / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / INDEX)
    return index


def read_shards(in_dir: str | os.PathLike, split_for_dataloading: bool = False, shuffle_shards: bool = False,
                seed: int = 0):
    """The lazy CutSet of a Shar folder: cuts with their audio in memory, one at a time."""
    from lhotse import CutSet

    root = Path(in_dir)
    index = json.loads((root / INDEX).read_text())
    fields = {name: [str(root / p) for p in paths] for name, paths in index["fields"].items()}
    return CutSet.from_shar(fields=fields, split_for_dataloading=split_for_dataloading,
                            shuffle_shards=shuffle_shards, seed=seed)


def _iterable_base():
    from torch.utils.data import IterableDataset

    return IterableDataset


class ShardFeatures(_iterable_base()):  # type: ignore[misc]
    """Streams ``(clip id, fbank [T, 80])`` from a Shar folder; each DataLoader worker reads its own shards."""

    def __init__(self, in_dir: str | os.PathLike, num_mel_bins: int = 80):
        self.in_dir = str(in_dir)
        self.num_mel_bins = num_mel_bins

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        from encoders.features import fbank  # the features pre-training computes (the paper's input)

        for cut in read_shards(self.in_dir, split_for_dataloading=True):
            audio = cut.load_audio()
            yield cut.id, fbank(audio.mean(axis=0) if audio.ndim == 2 else audio, cut.sampling_rate,
                                self.num_mel_bins)


def collate_ids_and_features(batch: list[tuple[str, Any]]) -> tuple[list[str], Any, Any]:
    """``(ids, padded features [B, T, F], lengths [B])`` of a list of ``(id, features)``."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids = [clip for clip, _ in batch]
    feats = [f for _, f in batch]
    return ids, pad_sequence(feats, batch_first=True), torch.tensor([f.shape[0] for f in feats])
