"""Worker for tests/test_trainer.py::test_ddp_on_two_cpu_processes (run by torchrun, not by pytest).

Every rank builds the same models and data, trains with DDP over gloo, and rank 0 saves
the final encoder weights to argv[1]/weights.pt (the log and checkpoint are rank 0's too).
argv[2] is the data: ``memory`` (features in a list) or ``shards`` (a pool streamed from
the Shar shards in argv[1]/shards, each rank decoding its share of every batch).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_trainer import _models, _problem, _shard_problem  # noqa: E402

from encoders.trainer import TrainConfig, train  # noqa: E402

out = Path(sys.argv[1])
feats, targets, sampler = _shard_problem(out) if sys.argv[2] == "shards" else (*_problem(12), None)
encoder, objective = _models(dropout=0.0)
config = TrainConfig(steps=5, batch_size=8, lr=2e-3, warmup_steps=1, specaugment=None, num_threads=1, seed=3)
train(encoder, objective, feats, targets, config, out / "ddp", progress=False, sampler=sampler)
if torch.distributed.get_rank() == 0:
    torch.save(encoder.state_dict(), out / "weights.pt")
torch.distributed.destroy_process_group()
