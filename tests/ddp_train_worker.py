"""Worker for tests/test_trainer.py::test_ddp_on_two_cpu_processes (run by torchrun, not by pytest).

Every rank builds the same models and data, trains with DDP over gloo, and rank 0 saves
the final encoder weights to argv[1]/weights.pt (the log and checkpoint are rank 0's too).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_trainer import _models, _problem  # noqa: E402

from encoders.trainer import TrainConfig, train  # noqa: E402

out = Path(sys.argv[1])
feats, targets = _problem(12)
encoder, objective = _models(dropout=0.0)
config = TrainConfig(steps=5, batch_size=8, lr=2e-3, warmup_steps=1, specaugment=None, num_threads=1, seed=3)
train(encoder, objective, feats, targets, config, out / "ddp", progress=False)
if torch.distributed.get_rank() == 0:
    torch.save(encoder.state_dict(), out / "weights.pt")
torch.distributed.destroy_process_group()
