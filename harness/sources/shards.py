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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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
        for cut in read_shards(self.in_dir, split_for_dataloading=True):
            yield cut.id, clip_fbank(cut, self.num_mel_bins)


def clip_fbank(cut: Any, num_mel_bins: int = 80) -> Any:
    """The fbank pre-training computes, of a cut's audio (mixed down to mono)."""
    from encoders.features import fbank  # the features pre-training computes (the paper's input)

    audio = cut.load_audio()
    return fbank(audio.mean(axis=0) if audio.ndim == 2 else audio, cut.sampling_rate, num_mel_bins)


def collate_ids_and_features(batch: list[tuple[str, Any]]) -> tuple[list[str], Any, Any]:
    """``(ids, padded features [B, T, F], lengths [B])`` of a list of ``(id, features)``."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids = [clip for clip, _ in batch]
    feats = [f for _, f in batch]
    return ids, pad_sequence(feats, batch_first=True), torch.tensor([f.shape[0] for f in feats])


# ------------------------------------------------------------------- pre-training streams


def pool_shards(manifest: str | os.PathLike, shard_size: int, cache_dir: str | os.PathLike,
                log=print) -> Path:
    """The Shar folder of a pool manifest, written once into ``cache_dir/shards/<key>/``.

    Keyed by the manifest's content and the shard size, so every run (and study) that streams
    the same pool shares one copy. Written into a temporary folder and renamed: a job that
    dies while writing leaves nothing that a later job could take for complete.
    """
    from lhotse import CutSet

    from harness.store import digest, file_digest, publish_dir

    key = digest({"manifest": file_digest(manifest), "shard_size": shard_size, "format": "flac"})
    target = Path(cache_dir) / "shards" / key
    if (target / INDEX).is_file():
        return target
    with publish_dir(target, complete=lambda t: (t / INDEX).is_file()) as tmp:
        index = write_shards(CutSet.from_file(manifest), tmp, shard_size=shard_size)
    log(f"wrote {index['num_clips']} clips as {len(index['fields']['cuts'])} shards -> {target}")
    return target


def _epoch_shards(index: dict[str, Any], seed: int, epoch: int, workers: int) -> list[list[tuple[str, str]]]:
    """Each worker's (cuts, recording) shard pairs for one epoch: a seeded shard order, dealt round-robin."""
    import numpy as np

    pairs = list(zip(index["fields"]["cuts"], index["fields"]["recording"]))
    order = np.random.default_rng([seed, epoch]).permutation(len(pairs))
    return [[pairs[i] for i in order[w::workers]] for w in range(workers)]


class _WorkerStream(_iterable_base()):  # type: ignore[misc]
    """One worker's clips for one epoch: its shards in order, through a seeded shuffle buffer of
    ``buffer`` clips, as ``(row, fbank [T, F])``; the first ``skip`` clips are passed over
    without being decoded. The buffer holds the clips' compressed audio, not their features."""

    def __init__(self, root: str, shards: list[tuple[str, str]], rows: dict[str, int], seed: list[int],
                 buffer: int, skip: int, num_mel_bins: int, share: RankShare | None = None):
        self.root, self.shards, self.rows, self.seed = root, shards, rows, seed
        self.buffer, self.skip, self.num_mel_bins, self.share = buffer, skip, num_mel_bins, share

    def cuts(self) -> Iterator[Any]:
        """The worker's clips in stream order (audio still compressed)."""
        import random

        from lhotse import CutSet

        rng = random.Random(":".join(map(str, self.seed)))
        pool: list[Any] = []
        for cuts_path, recording_path in self.shards:
            fields = {"cuts": [str(Path(self.root) / cuts_path)], "recording": [str(Path(self.root) / recording_path)]}
            for cut in CutSet.from_shar(fields=fields):
                if cut.id in self.rows:
                    pool.append(cut)
                    if len(pool) > self.buffer:
                        yield pool.pop(rng.randrange(len(pool)))
        rng.shuffle(pool)
        yield from pool

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """``(row, fbank)``; ``(row, None)`` for a clip that another rank trains on."""
        for n, cut in enumerate(self.cuts()):
            if n >= self.skip:
                mine = self.share is None or self.share.decodes(n)
                yield self.rows[cut.id], clip_fbank(cut, self.num_mel_bins) if mine else None


def round_robin_offset(counts: Sequence[int], worker: int, k: int) -> int:
    """Position in the round-robin stream (workers that have run out skipped) of ``worker``'s
    ``k``-th clip: all that the workers gave in rounds 0..k-1, then those before it in round k."""
    return sum(min(c, k) for c in counts) + sum(1 for c in counts[:worker] if c > k)


@dataclass(frozen=True)
class RankShare:
    """Which of one worker's clips a rank decodes. Under DDP each rank trains on
    ``batch[rank::world]`` of every batch (see ``encoders.trainer.train``); the clips the
    other ranks train on are passed over without being decoded."""

    counts: tuple[int, ...]  # clips per worker this epoch
    worker: int
    start: int  # stream position of the epoch's first clip
    batch_size: int
    rank: int
    world: int

    def decodes(self, k: int) -> bool:
        position = self.start + round_robin_offset(self.counts, self.worker, k)
        return position % self.batch_size % self.world == self.rank


def round_robin_skips(counts: list[int], position: int) -> list[int]:
    """How many clips each worker has given when a round-robin over the workers (skipping
    those that have run out) has given ``position`` clips."""
    taken = [0] * len(counts)
    left = position
    while left > 0:
        active = [w for w in range(len(counts)) if taken[w] < counts[w]]
        if not active:
            break
        full_rounds = min(left // len(active), min(counts[w] - taken[w] for w in active))
        if full_rounds:
            for w in active:
                taken[w] += full_rounds
            left -= full_rounds * len(active)
            continue
        for w in active:  # a partial round, or the round where some worker runs out
            if left == 0:
                break
            taken[w] += 1
            left -= 1
    return taken


class ShardFeed:
    """Pre-training batches streamed from a pool's shards: the trainer's sampler and features.

    ``rows`` maps each clip id that trains to its row in the targets. Epoch e reads the
    shards in an order seeded by ``(seed, e)``, dealt round-robin to ``workers`` streams, each
    decoded in a process of its own (a DataLoader of one worker, so that the order of clips
    never depends on timing);
    each worker shuffles its clips through a buffer of ``buffer`` clips; the main process
    takes one clip from each worker in turn. Batch s is the stream's positions
    ``[s * batch_size, (s + 1) * batch_size)`` (a batch may straddle two epochs), so it
    depends on (seed, s) only: a resumed run starts the epoch of its step again and passes
    over the clips before it without decoding them.

    What is in memory: per worker, ``buffer`` clips of compressed audio and
    ``prefetch`` decoded clips, plus one batch of features; never the pool.

    Under DDP (``torch.distributed`` initialised when the first batch is asked for, or
    ``rank`` and ``world`` given) every rank reads the same stream but decodes only the
    clips of its share of each batch (``batch[rank::world]``); the others' rows map to None.
    """

    def __init__(self, root: str | os.PathLike, rows: dict[str, int], batch_size: int, seed: int,
                 workers: int = 2, buffer: int = 500, prefetch: int = 8, num_mel_bins: int = 80,
                 in_process: bool = False, rank: int | None = None, world: int | None = None):
        from harness.stages.manifests import iter_cut_dicts

        if workers < 1:
            raise ValueError(f"workers: expected at least 1 stream, found {workers}")
        self.root = str(root)
        self.index = json.loads((Path(root) / INDEX).read_text())
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.workers, self.buffer, self.prefetch, self.num_mel_bins = workers, buffer, prefetch, num_mel_bins
        self.in_process = in_process  # the same stream, decoded in this process (tests, debugging)
        self.rank, self.world = rank, world  # None: from torch.distributed when the stream opens
        # Clips per shard that train (from the cut manifests: no audio is read).
        self.shard_counts = {cuts: sum(1 for c in iter_cut_dicts(Path(root) / cuts) if c["id"] in rows)
                             for cuts in self.index["fields"]["cuts"]}
        self.per_epoch = sum(self.shard_counts.values())
        if self.per_epoch != len(rows):
            raise ValueError(f"{root}: the shards hold {self.per_epoch} of the {len(rows)} clips to train on")
        self._features: dict[int, Any] = {}
        self._position = None  # stream position of the next clip
        self._stream: Iterator[tuple[int, Any]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, row: int):
        return self._features[row]

    def batch(self, step: int) -> list[int]:
        start = step * self.batch_size
        if self._position != start:
            self._open(start)
        self._features = {}
        rows = []
        for _ in range(self.batch_size):
            row, feats = self._next()
            if feats is not None or row not in self._features:  # a clip twice in a batch: keep it decoded
                self._features[row] = feats
            rows.append(row)
        return rows

    def _open(self, position: int) -> None:
        epoch, offset = divmod(position, self.per_epoch)
        self._epoch, self._position = epoch, position
        self._stream = self._epoch_stream(epoch, offset)

    def _next(self) -> tuple[int, Any]:
        for _ in range(2):
            item = next(self._stream, None)
            if item is not None:
                self._position += 1
                return item
            self._open(self._position)  # the epoch ended: the next one starts here
        raise RuntimeError(f"{self.root}: an epoch of the shard stream gave no clip")

    def _epoch_stream(self, epoch: int, offset: int) -> Iterator[tuple[int, Any]]:
        import torch
        from torch.utils.data import DataLoader

        shards = _epoch_shards(self.index, self.seed, epoch, self.workers)
        counts = [sum(self.shard_counts[c] for c, _ in mine) for mine in shards]
        skips = round_robin_skips(counts, offset)
        if self.rank is None or self.world is None:
            from encoders.trainer import rank_and_world

            self.rank, self.world = rank_and_world()
        shares = [RankShare(tuple(counts), w, epoch * self.per_epoch, self.batch_size, self.rank, self.world)
                  if self.world > 1 else None for w in range(len(shards))]
        streams = [_WorkerStream(self.root, mine, self.rows, [self.seed, epoch, w], self.buffer, skips[w],
                                 self.num_mel_bins, shares[w]) for w, mine in enumerate(shards)]
        if self.in_process:
            iterators = [iter(s) for s in streams]
        else:
            # A generator of their own: creating the loaders must not draw from torch's global RNG,
            # which the trainer checkpoints (dropout, SpecAugment) and restores on resume.
            iterators = [iter(DataLoader(s, batch_size=None, num_workers=1, prefetch_factor=self.prefetch,
                                         generator=torch.Generator().manual_seed(0)))
                         for s in streams]
        active = list(range(len(iterators)))
        # Resumed mid-round: the workers that have not served in the current round come first.
        left = [w for w in active if skips[w] < counts[w]]
        current = min((skips[w] for w in left), default=0)
        rounds = [[w for w in left if skips[w] == current]]
        while active:
            for w in rounds.pop() if rounds else list(active):
                item = next(iterators[w], None)
                if item is None:
                    if w in active:
                        active.remove(w)
                    continue
                yield item
