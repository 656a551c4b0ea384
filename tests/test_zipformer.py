"""The zipformer encoder: the authors' M preset, the package loader, the batch-count hook.

The contract tests every encoder shares (shapes, lengths, layers, determinism, checkpoints)
are in tests/test_encoders.py; zipformer runs them too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from encoders import build_encoder
from encoders.base import Encoder
from encoders.zipformer import SIZES, ZipformerEncoder, zipformer_package

ROOT = Path(__file__).parent.parent

M_PARAMETERS = 65_913_719
"""The authors' Zipformer-M (AudenAI/Auden ``ZipformerConfig()``) with Conv2dSubsampling(80, 192)."""


def _count(size: str, **overrides) -> int:
    with torch.device("meta"):  # no memory, no init cost
        return sum(p.numel() for p in build_encoder("zipformer", size=size, **overrides).parameters())


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), max(lengths), 80, generator=g) * 3 - 8
    lens = torch.tensor(lengths)
    feats[torch.arange(max(lengths))[None, :] >= lens[:, None]] = 0.0
    return feats, lens


def test_m_is_the_authors_zipformer_m() -> None:
    """Layers, widths, FFN, heads, head dims, pos_dim and kernels as the authors configured them."""
    m = SIZES["m"]
    assert m["num_encoder_layers"] == (2, 2, 3, 4, 3, 2)
    assert m["downsampling_factor"] == (1, 2, 4, 8, 4, 2)
    assert m["encoder_dim"] == (192, 256, 384, 512, 384, 256)
    assert m["encoder_unmasked_dim"] == (192, 192, 256, 256, 256, 192)
    assert m["feedforward_dim"] == (576, 768, 1152, 1536, 1152, 768)
    assert m["num_heads"] == (4, 4, 4, 8, 4, 4)
    assert (m["query_head_dim"], m["value_head_dim"], m["pos_head_dim"], m["pos_dim"]) == (32, 12, 4, 48)
    assert m["cnn_module_kernel"] == (31, 31, 15, 15, 15, 31)
    assert m["warmup_batches"] == 4000.0
    assert SIZES["base"] == m  # the authors' name for it
    assert _count("m") == _count("base") == M_PARAMETERS


def test_m_builds_with_its_parameter_count_on_cpu() -> None:
    torch.manual_seed(0)
    enc = build_encoder("zipformer", size="m")
    assert sum(p.numel() for p in enc.parameters()) == M_PARAMETERS
    assert enc.encoder_embed.out.out_features == 192 and enc.dim == 512 and enc.num_layers == 6
    # The front end's dropout is the authors' schedule: 0.3 at batch 0 to 0.1 at 20k.
    assert enc.encoder_embed.dropout.p.schedule.pairs == [(0.0, 0.3), (20000.0, 0.1)]


def test_overrides_reach_the_model() -> None:
    assert _count("tiny", pos_dim=96) > _count("tiny")
    assert _count("tiny", query_head_dim=16) < _count("tiny")
    assert _count("tiny", value_head_dim=(12, 12, 12, 12, 12, 24)) > _count("tiny")
    with pytest.raises(ValueError, match="unknown override"):
        build_encoder("zipformer", pos_dmi=48)
    with pytest.raises(ValueError, match="unknown size.*m"):
        build_encoder("zipformer", size="xl")


def test_fixed_dropout_reaches_front_end_and_stacks() -> None:
    enc = build_encoder("zipformer", dropout=0.05)
    assert enc.encoder_embed.dropout.p == 0.05
    assert enc.encoder.encoders[0].layers[0].feed_forward1.out_proj.dropout_p == 0.05


def test_loader_imports_only_the_model_code() -> None:
    """No package __init__, no tool chain; the project's torch is the one in use."""
    code = (
        "import sys, torch; from encoders import build_encoder; build_encoder('zipformer'); "
        "heavy = {'tensorboard', 'onnx', 'onnxruntime', 'kaldialign', 'atdataset', 'modelscope', "
        "'zipformer.bin', 'zipformer.bin.inference', 'zipformer.modules.model'} & set(sys.modules); "
        "assert not heavy, heavy; "
        "assert not hasattr(sys.modules['zipformer'], 'inference'); "  # its __init__ did not run
        "assert torch.__version__.startswith('2.14.1'), torch.__version__"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_missing_package_says_how_to_install() -> None:
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'zipformer' else real(name, *a)\n"
        "from encoders import build_encoder, encoder_version\n"
        "assert encoder_version('zipformer')\n"  # the module itself imports without the package
        "try:\n"
        "    build_encoder('zipformer')\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('built without the package')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True).stdout
    assert out.count("\n") == 1
    assert "pip install --no-deps zipformer==0.1.3" in out


def _scheduled(enc: torch.nn.Module) -> list:
    return [m for m in enc.modules() if hasattr(m, "batch_count")]


@pytest.mark.parametrize(("step", "count"), [
    (0, 10.0), (9, 10.0), (10, 20.0), (19, 20.0), (12345, 12350.0), (99989, 99990.0),
    (99990, 100000.0), (99999, 100000.0), (250000, 100000.0),
])
def test_batch_count_follows_the_authors_trainer(step: int, count: float) -> None:
    """+10 every 10 batches starting before the first, stopped at 100,000 (AudenAI/Auden ddp_trainer)."""
    enc = build_encoder("zipformer")
    scheduled = _scheduled(enc)
    assert len(scheduled) > 50 and all(m.batch_count is None for m in scheduled)
    enc.set_batch_count(step)
    assert {m.batch_count for m in scheduled} == {count}


def test_batch_count_moves_dropout_and_layer_skipping() -> None:
    """Until the trainer sets it the schedules sit at their defaults (no dropout, no skipping);
    then they follow the step, in training mode only."""
    enc = build_encoder("zipformer").train()
    layer = enc.encoder.encoders[0].layers[0]
    dropout, skip = enc.encoder_embed.dropout.p, layer.attention_skip_rate
    assert float(dropout) == 0.0 and float(skip) == 0.0  # batch_count None: the defaults
    enc.set_batch_count(0)
    assert float(dropout) == pytest.approx(0.3 - 0.2 * 10 / 20000)
    assert float(skip) > 0.0
    enc.set_batch_count(30000)
    assert float(dropout) == pytest.approx(0.1) and float(skip) == 0.0
    enc.eval()
    assert float(dropout) == 0.0


def test_every_encoder_takes_the_batch_count() -> None:
    assert Encoder.set_batch_count is not ZipformerEncoder.set_batch_count
    build_encoder("transformer").set_batch_count(5)  # the default: nothing to do


def test_training_step_with_scaled_adam_and_eden() -> None:
    """Forward, backward and an optimiser step of the authors' optimiser on the tiny preset."""
    zp = zipformer_package()
    torch.manual_seed(0)
    enc = build_encoder("zipformer").train()
    optimizer = zp.ScaledAdam(enc.parameters(), lr=0.045, clipping_scale=2.0)
    scheduler = zp.Eden(optimizer, lr_batches=7500, lr_epochs=3.5)
    before = [p.detach().clone() for p in enc.parameters()]
    feats, lens = _batch([300, 180])
    for step in range(2):
        enc.set_batch_count(step)
        frames, out_lens = enc(feats, lens)
        assert torch.isfinite(frames).all()
        frames.square().mean().backward()
        optimizer.step()
        scheduler.step_batch(step)
        optimizer.zero_grad()
    assert any(not torch.equal(a, p) for a, p in zip(before, enc.parameters()))
    assert all(torch.isfinite(p).all() for p in enc.parameters())


def test_swoosh_runs_eagerly_on_cpu() -> None:
    """The package compiles its Swoosh activations; on a CPU tensor the same function runs eagerly."""
    zp = zipformer_package()
    enc = build_encoder("zipformer")
    swoosh = [m for m in enc.modules() if isinstance(m, (zp.scaling.SwooshL, zp.scaling.SwooshR))]
    assert swoosh
    x = torch.linspace(-20, 20, 101)
    for m in swoosh:
        offset, shift = (4.0, 0.035) if isinstance(m, zp.scaling.SwooshL) else (1.0, 0.313261687)
        expected = torch.logaddexp(torch.zeros_like(x), x - offset) - 0.08 * x - shift
        torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=0)
    linear = [m for m in enc.modules() if isinstance(m, zp.scaling.ActivationDropoutAndLinear)]
    assert linear and all(m.forward_func.eager is not None for m in linear)


@pytest.mark.slow
def test_m_forward_backward_on_cpu() -> None:
    """The paper's preset trains on a CPU: a forward/backward with the schedules running."""
    torch.manual_seed(0)
    enc = build_encoder("zipformer", size="m").train()
    enc.set_batch_count(0)
    feats, lens = _batch([300, 210])
    frames, out_lens = enc(feats, lens)
    assert frames.shape == (2, 75, 512) and out_lens.tolist() == [75, 52]
    frames.square().mean().backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert len(grads) > 0.9 * len(list(enc.parameters()))  # layer skipping leaves a few out
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_m_trains_mtc_with_scaled_adam_and_resumes_exactly(tmp_path: Path) -> None:
    """The paper's encoder and optimiser together through the harness's trainer: Zipformer-M,
    MTC, ScaledAdam + Eden, the batch count advancing; a run killed after its checkpoint
    resumes to the same losses and weights as one never interrupted."""
    from encoders.objectives.mtc import MTC
    from encoders.trainer import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(int(n), 80, generator=g) for n in (150, 120, 180, 100)]  # 1-2 s of fbank frames
    targets = (torch.rand(4, 6, generator=g) < 0.5).float()
    config = TrainConfig(steps=4, batch_size=2, lr=0.045, checkpoint_every=2, specaugment=None, num_threads=2,
                         seed=1, optimizer={"name": "scaled_adam"})

    class Crashing(MTC):
        calls = 0

        def forward(self, *args, **kwargs):
            if Crashing.calls == 3:
                raise RuntimeError("simulated kill")
            Crashing.calls += 1
            return super().forward(*args, **kwargs)

    def models(cls=MTC, seed=0):
        torch.manual_seed(seed)
        encoder = build_encoder("zipformer", size="m")
        return encoder, cls(encoder.dim, 6)

    encoder, objective = models()
    full = train(encoder, objective, feats, {"targets": targets}, config, tmp_path / "a", progress=False)
    assert full["steps"] == 4 and torch.isfinite(torch.tensor(full["final_loss"]))
    encoder_b, crashing = models(Crashing)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(encoder_b, crashing, feats, {"targets": targets}, config, tmp_path / "b", progress=False)
    encoder_c, objective_c = models(seed=7)
    resumed = train(encoder_c, objective_c, feats, {"targets": targets}, config, tmp_path / "b", progress=False)
    assert resumed["resumed_from"] == 2 and resumed["final_loss"] == full["final_loss"]
    for (name, a), c in zip(encoder.state_dict().items(), encoder_c.state_dict().values()):
        assert torch.equal(a, c), name
