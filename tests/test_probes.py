"""Tests of probes/: metrics and the head sweep against scikit-learn, and embedding extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score
from torch import nn

from probes.embed import extract_embeddings, load_shards, mean_pool, save_shards
from probes.heads import AttentionPool, max_pool, probe_sweep
from probes.metrics import METRICS, accuracy, macro_average_precision, metric_for

# scikit-learn's side of every comparison: LogisticRegression with C tuned on the validation split.
# The sweep runs with its defaults, which are what these tests hold to the reference.
SKLEARN_CS = np.logspace(-4, 2, 13)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- metrics


def test_accuracy_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    scores = rng.random((200, 5))
    assert METRICS["accuracy"](y_true, scores) == pytest.approx(accuracy_score(y_true, scores.argmax(1)), abs=1e-12)


@pytest.mark.filterwarnings("ignore:No positive class found")
@pytest.mark.parametrize("trial", range(30))
def test_macro_average_precision_matches_sklearn(trial: int) -> None:
    rng = np.random.default_rng(trial)
    n, c = int(rng.integers(1, 80)), int(rng.integers(1, 10))
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.7)).astype(int)
    y[:, 0] = 0  # a class with no positives: AP 0, counted in the mean (scikit-learn's behaviour)
    scores = rng.random((n, c))
    if trial % 2:  # coarse scores: many ties within a class
        scores = np.round(scores * int(rng.integers(1, 5))) / 4
    expected = average_precision_score(y, scores, average="macro")
    assert macro_average_precision(y, scores) == pytest.approx(expected, abs=1e-6)
    assert METRICS["map"](y, scores) == pytest.approx(expected, abs=1e-6)


def test_metric_for() -> None:
    assert metric_for("multiclass") == "accuracy"
    assert metric_for("multilabel") == "map"
    with pytest.raises(ValueError):
        metric_for("retrieval")


# ------------------------------------------------------------------------------ probes


def _gaussian_frames(n: int, centers: np.ndarray, rng: np.random.Generator, noise: float = 2.5):
    """Items of 4-15 noisy frames around their class center (overlapping classes)."""
    labels = rng.integers(0, len(centers), n)
    dim = centers.shape[1]
    frames = [(centers[k] + noise * rng.standard_normal((int(rng.integers(4, 16)), dim))).astype(np.float16) for k in labels]
    return frames, labels


def _sklearn_tuned_accuracy(train, valid, test) -> tuple[float, float]:
    """LogisticRegression on train-standardised mean-pooled features, C chosen on valid: (valid, test)."""
    pooled = [np.stack([f.astype(np.float64).mean(0) for f in frames]) for frames, _ in (train, valid, test)]
    mean, std = pooled[0].mean(0), pooled[0].std(0)
    std[std == 0] = 1.0
    x_train, x_valid, x_test = [(p - mean) / std for p in pooled]
    best = (-1.0, 0.0)
    for c in SKLEARN_CS:
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, train[1])
        valid_acc = model.score(x_valid, valid[1])
        if valid_acc > best[0]:
            best = (valid_acc, model.score(x_test, test[1]))
    return best


def test_linear_probe_matches_logistic_regression_on_gaussian_clusters() -> None:
    rng = np.random.default_rng(0)
    centers = 0.35 * rng.standard_normal((8, 64))
    train, valid, test = (_gaussian_frames(n, centers, rng) for n in (600, 1000, 2000))
    _, sk_test = _sklearn_tuned_accuracy(train, valid, test)
    result = probe_sweep(train, valid, test, "multiclass")
    assert result.metric == "accuracy"
    assert 0.6 < sk_test < 0.95, "the task must be neither trivial nor hopeless"
    assert abs(result.test - sk_test) <= 0.01
    assert result.test == pytest.approx(accuracy_score(test[1], result.test_scores.argmax(1)))
    assert len(result.heads) == 30


def test_linear_probe_matches_logistic_regression_on_digits() -> None:
    images, labels = load_digits(return_X_y=True)  # real 8x8 digit images, shipped with scikit-learn
    order = np.random.default_rng(0).permutation(len(labels))
    splits = [
        ([images[i][None].astype(np.float16) for i in index], labels[index])
        for index in (order[:100], order[100:600], order[600:])
    ]
    _, sk_test = _sklearn_tuned_accuracy(*splits)
    result = probe_sweep(*splits, "multiclass")
    assert 0.7 < sk_test < 0.95
    assert abs(result.test - sk_test) <= 0.01


@pytest.mark.parametrize("data", ["gaussian", "digits"])
def test_a_bf16_sweep_also_matches_logistic_regression(data: str) -> None:
    """precision="bf16" (the default on AMX-BF16 CPUs and on GPUs, via probes.precision: auto)
    meets the same bar as fp32; it is forced here, so it is checked on any CPU."""
    if data == "digits":
        images, labels = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(labels))
        splits = [([images[i][None].astype(np.float16) for i in index], labels[index])
                  for index in (order[:100], order[100:600], order[600:])]
    else:
        rng = np.random.default_rng(0)
        centers = 0.35 * rng.standard_normal((8, 64))
        splits = [_gaussian_frames(n, centers, rng) for n in (600, 1000, 2000)]
    _, sk_test = _sklearn_tuned_accuracy(*splits)
    result = probe_sweep(*splits, "multiclass", precision="bf16")
    assert abs(result.test - sk_test) <= 0.01
    assert result.test == pytest.approx(accuracy_score(splits[2][1], result.test_scores.argmax(1)))


def test_precision_settings() -> None:
    from probes.heads import cpu_has_amx_bf16, use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)
    assert use_bf16("auto", cpu) == cpu_has_amx_bf16()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert cpu_has_amx_bf16() == (" amx_bf16" in flags)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        use_bf16("fp8", cpu)


def test_batched_heads_equal_single_heads() -> None:
    rng = np.random.default_rng(1)
    centers = 0.5 * rng.standard_normal((4, 16))
    train, valid, test = (_gaussian_frames(n, centers, rng) for n in (200, 200, 200))
    grid = dict(lrs=(1e-2, 1e-1), weight_decays=(0.0, 1e-1), heads=("linear", "mlp"), poolings=("mean", "max", "attention"))
    batched = probe_sweep(train, valid, test, "multiclass", epochs=10, batch_size=64, seed=3, mlp_hidden=32, **grid)
    assert len(batched.heads) == 24
    for head in batched.heads:
        single = probe_sweep(
            train, valid, test, "multiclass", lrs=(head["lr"],), weight_decays=(head["weight_decay"],),
            heads=(head["head"],), poolings=(head["pooling"],), epochs=10, batch_size=64, seed=3, mlp_hidden=32,
        )
        assert single.valid == pytest.approx(head["valid"], abs=1e-12)
        assert single.test == pytest.approx(head["test"], abs=1e-12)
        if {k: head[k] for k in single.best} == batched.best:
            np.testing.assert_allclose(single.test_scores, batched.test_scores, atol=1e-5)
    assert len({h["valid"] for h in batched.heads}) > 1, "the heads must differ, or the comparison proves nothing"
    # Per (head, pooling) group: the scores of the head that collect.py reports for it.
    from harness.collect import _best_per_head

    chosen = _best_per_head(batched.heads)
    assert set(batched.group_scores) == set(chosen) and len(chosen) == 6
    for group, scores in batched.group_scores.items():
        assert accuracy_score(test[1], scores.argmax(1)) == pytest.approx(chosen[group]["test"], abs=1e-12)


def test_sweep_optimizer_is_torch_adam_with_a_learning_rate_and_weight_decay_per_head() -> None:
    from probes.heads import HeadGroup, SweepAdam, sweep_optimizer

    grid = [(1e-3, 0.0), (1e-2, 0.1), (1e-1, 0.01)]
    groups = {("mlp", "attention"): HeadGroup("mlp", "attention", 3, 8, 4, seed=0, mlp_hidden=6, attention_heads=2),
              ("linear", "mean"): HeadGroup("linear", "mean", 3, 8, 4, seed=0, mlp_hidden=6, attention_heads=2)}
    optimizer = sweep_optimizer(groups, grid)
    assert isinstance(optimizer, SweepAdam)  # torch's fused kernel, one call per group
    names = {id(p): name for group in groups.values() for name, p in group.named_parameters()}
    settings = {(g["lr"], g["weight_decay"]): sorted((names[id(t)], h) for t, h in g["params"])
                for g in optimizer.param_groups}
    assert len(settings) == len(optimizer.param_groups) == 5  # 3 heads' weights; biases by lr (wd 0 twice)
    slices = sorted((name, h) for name in names.values() for h in range(3))
    assert sorted(sum(settings.values(), [])) == slices  # every head's slice of every tensor, once
    for h, (lr, wd) in enumerate(grid):
        mine = {(n, i) for n, i in slices if i == h}
        weights = {(n, i) for n, i in mine if n.endswith("weight")}
        assert weights and weights <= set(settings[(lr, wd)])
        assert mine - weights and mine - weights <= set(settings[(lr, 0.0)])  # biases, queries: no decay
    assert any(n.endswith("query") for n, _ in settings[(1e-2, 0.0)])  # the attention queries train, undecayed


@pytest.mark.parametrize("fused", [True, False])
def test_sweep_adam_equals_torch_adam_on_each_slice(fused: bool) -> None:
    """SweepAdam on head slices, learning-rate changes included, is torch.optim.Adam on each
    slice as a parameter of its own; with torch's fused kernel and with the plain loop."""
    from probes.heads import SweepAdam

    torch.manual_seed(0)
    weight, bias = nn.Parameter(torch.randn(3, 5, 4)), nn.Parameter(torch.randn(3, 4))
    settings = [(1e-2, 0.1), (3e-3, 0.0), (1e-1, 0.01)]
    mine = SweepAdam([{"params": [(weight, h)], "lr": lr, "weight_decay": wd} for h, (lr, wd) in enumerate(settings)]
                     + [{"params": [(bias, h) for h in range(3)], "lr": 1e-2, "weight_decay": 0.0}])
    mine.fused = fused
    singles = [nn.Parameter(weight[h].detach().clone()) for h in range(3)]
    single_biases = [nn.Parameter(bias[h].detach().clone()) for h in range(3)]
    reference = torch.optim.Adam([{"params": [singles[h]], "lr": lr, "weight_decay": wd}
                                  for h, (lr, wd) in enumerate(settings)]
                                 + [{"params": single_biases, "lr": 1e-2, "weight_decay": 0.0}], foreach=False)
    for step in range(25):
        grad_w, grad_b = torch.randn(3, 5, 4), torch.randn(3, 4)
        weight.grad, bias.grad = grad_w.clone(), grad_b.clone()
        for h in range(3):
            singles[h].grad, single_biases[h].grad = grad_w[h].clone(), grad_b[h].clone()
        for optimizer in (mine, reference):
            for group, (lr, _) in zip(optimizer.param_groups, settings + [(1e-2, 0.0)]):
                group["lr"] = lr * (1 - step / 25)
            optimizer.step()
    for h in range(3):
        torch.testing.assert_close(weight[h], singles[h], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(bias[h], single_biases[h], atol=1e-6, rtol=1e-5)
    mine.zero_grad()
    assert weight.grad is None and bias.grad is None


def test_multilabel_probe_is_scored_with_map() -> None:
    rng = np.random.default_rng(2)
    n_classes, dim = 6, 32
    directions = rng.standard_normal((n_classes, dim))

    def split(n: int):
        labels = (rng.random((n, n_classes)) < 0.3).astype(int)
        frames = [(labels[i] @ directions + 10.0 * rng.standard_normal((8, dim))).astype(np.float16) for i in range(n)]
        return frames, labels

    train, valid, test = split(400), split(400), split(800)
    result = probe_sweep(train, valid, test, "multilabel")
    assert result.metric == "map"
    assert result.test_scores.shape == (800, n_classes)
    assert result.test == pytest.approx(average_precision_score(test[1], result.test_scores, average="macro"), abs=1e-6)
    # One-vs-rest logistic regression on the same standardised mean-pooled features, C chosen on valid.
    pooled = [mean_pool(frames) for frames, _ in (train, valid, test)]
    mean, std = pooled[0].mean(0), pooled[0].std(0)
    x_train, x_valid, x_test = [(p - mean) / std for p in pooled]
    best = (-1.0, 0.0)
    for c in SKLEARN_CS:
        models = [LogisticRegression(C=c, max_iter=5000).fit(x_train, train[1][:, k]) for k in range(n_classes)]
        valid_map, test_map = (
            average_precision_score(y, np.stack([m.decision_function(x) for m in models], axis=1), average="macro")
            for x, y in ((x_valid, valid[1]), (x_test, test[1]))
        )
        best = max(best, (valid_map, test_map))
    sk_map = best[1]
    assert 0.5 < sk_map < 0.9
    assert abs(result.test - sk_map) < 0.02


def test_mlp_head_learns_what_a_linear_head_cannot() -> None:
    rng = np.random.default_rng(3)

    def split(n: int):
        x = rng.standard_normal((n, 1, 8)).astype(np.float16)
        return list(x), (x[:, 0, 0] * x[:, 0, 1] > 0).astype(int)  # XOR of two signs

    result = probe_sweep(split(800), split(400), split(400), "multiclass", lrs=(1e-2,), weight_decays=(0.0,),
                         heads=("linear", "mlp"), epochs=60, batch_size=64, mlp_hidden=32)
    valid = {h["head"]: h["valid"] for h in result.heads}
    assert valid["linear"] < 0.65 and valid["mlp"] > 0.9
    assert result.best["head"] == "mlp"


def test_attention_pooling_finds_the_informative_frame() -> None:
    rng = np.random.default_rng(4)
    dim, n_classes = 16, 4
    patterns = 2.0 * rng.standard_normal((n_classes, dim))

    def item(label: int) -> np.ndarray:
        """20-60 noise frames; one of them carries the class pattern and a marker in dim 0."""
        frames = rng.standard_normal((int(rng.integers(20, 61)), dim))
        at = rng.integers(0, len(frames))
        frames[at] += patterns[label]
        frames[at, 0] = 8.0
        return frames.astype(np.float16)

    def split(n: int):
        labels = rng.integers(0, n_classes, n)
        return [item(k) for k in labels], labels

    result = probe_sweep(split(600), split(300), split(300), "multiclass", lrs=(1e-2, 1e-1), weight_decays=(0.0,),
                         poolings=("mean", "attention"), epochs=40, batch_size=64)
    best_valid = {p: max(h["valid"] for h in result.heads if h["pooling"] == p) for p in ("mean", "attention")}
    assert best_valid["mean"] < 0.7 and best_valid["attention"] > 0.95
    assert result.best["pooling"] == "attention"


def test_attention_pooling_equals_scaled_dot_product_attention_and_ignores_padding() -> None:
    torch.manual_seed(0)
    n_probes, dim, n_heads = 3, 8, 2
    pool = AttentionPool(n_probes, dim, n_heads)
    nn.init.normal_(pool.query)
    lengths = torch.tensor([3, 5, 1])
    mask = torch.arange(5)[None] < lengths[:, None]
    x = torch.randn(3, 5, dim).masked_fill(~mask[..., None], 1e3)  # garbage in the padding
    pooled = pool(x, mask)
    assert pooled.shape == (n_probes, 3, dim)
    for h in range(n_probes):
        for b, length in enumerate(lengths.tolist()):
            chunks = x[b, :length].view(length, n_heads, dim // n_heads).transpose(0, 1)  # [A, T, dh]
            reference = nn.functional.scaled_dot_product_attention(pool.query[h][:, None], chunks, chunks)
            torch.testing.assert_close(pooled[h, b], reference.reshape(dim))


def test_ties_go_to_the_smallest_lr_and_weight_decay() -> None:
    rng = np.random.default_rng(5)
    centers = 10.0 * np.eye(3, 8)
    train, valid, test = (_gaussian_frames(n, centers, rng, noise=0.1) for n in (60, 60, 60))
    result = probe_sweep(train, valid, test, "multiclass", lrs=(1e-1, 3e-2), weight_decays=(1e-3, 0.0), epochs=100)
    assert all(h["valid"] == 1.0 for h in result.heads)
    assert result.best == {"lr": 3e-2, "weight_decay": 0.0, "head": "linear", "pooling": "mean"}


def test_unknown_head_or_pooling_is_rejected() -> None:
    data = ([np.zeros((2, 4), np.float16)] * 4, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="unknown head"):
        probe_sweep(data, data, data, "multiclass", heads=("transformer",))
    with pytest.raises(ValueError, match="unknown pooling"):
        probe_sweep(data, data, data, "multiclass", poolings=("median",))


# ------------------------------------------------------------------------- embeddings


class TinyEncoder(nn.Module):
    """Stand-in for the Encoder contract: 2x subsampling, and an utterance context that reads `lengths`."""

    dim = 16
    frame_rate = 50.0

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * n_mels, self.dim)
        self.mix = nn.Linear(self.dim, self.dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, layer: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, bins = feats.shape
        feats = nn.functional.pad(feats, (0, 0, 0, steps % 2)).reshape(batch, -1, 2 * bins)
        out_lengths = (lengths + 1) // 2
        mask = (torch.arange(feats.shape[1], device=feats.device)[None] < out_lengths[:, None])[..., None]
        first = torch.tanh(self.proj(feats)) * mask
        context = first.sum(1, keepdim=True) / out_lengths[:, None, None]  # wrong if padding were counted
        second = torch.tanh(self.mix(first + context)) * mask
        return (first, second)[layer], out_lengths


def _fbanks(seconds: list[float]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    waves = [torch.randn(1, int(16000 * s), generator=generator) * 0.1 for s in seconds]
    return [torchaudio.compliance.kaldi.fbank(w, num_mel_bins=80, sample_frequency=16000) for w in waves]


def test_extract_embeddings_order_lengths_dtype_and_padding() -> None:
    torch.manual_seed(0)
    encoder = TinyEncoder().train()
    features = _fbanks([0.5, 2.0, 0.3, 1.1, 0.8, 1.7, 0.4])
    out = extract_embeddings(encoder, features, batch_size=3, device="cpu", progress=False)
    assert encoder.training, "the encoder's training flag is restored"
    assert len(out) == len(features)
    for feats, emb in zip(features, out):
        assert emb.dtype == np.float16
        assert emb.shape == ((feats.shape[0] + 1) // 2, TinyEncoder.dim)  # valid frames only, input order
        with torch.no_grad():
            alone, _ = encoder.eval()(feats[None], torch.tensor([feats.shape[0]]))
        np.testing.assert_allclose(emb.astype(np.float32), alone[0].numpy(), atol=1e-2)
    one_by_one = [extract_embeddings(encoder, [f], batch_size=1, device="cpu", progress=False)[0] for f in features]
    for a, b in zip(out, one_by_one):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-2)
    first_layer = extract_embeddings(encoder, features, layer=0, batch_size=4, device="cpu", progress=False)
    assert not np.allclose(first_layer[0], out[0], atol=1e-2)


def test_shards_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(6)
    embeddings = [rng.standard_normal((int(t), 12)).astype(np.float16) for t in rng.integers(0, 30, 23)]
    save_shards(tmp_path / "cache", embeddings, shard_size=5)
    assert len(list((tmp_path / "cache").glob("shard-*.npz"))) == 5
    loaded = load_shards(tmp_path / "cache")
    assert len(loaded) == len(embeddings)
    for a, b in zip(embeddings, loaded):
        assert b.dtype == np.float16
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "cache").glob(".*tmp*")), "no temporary file is left behind"
    with pytest.raises(FileNotFoundError):
        load_shards(tmp_path / "missing")


def test_fixed_poolings() -> None:
    rng = np.random.default_rng(7)
    embeddings = [rng.standard_normal((int(t), 5)).astype(np.float16) for t in (3, 9, 1)]
    pooled = mean_pool(embeddings)
    assert pooled.dtype == np.float32 and pooled.shape == (3, 5)
    np.testing.assert_allclose(pooled, [e.astype(np.float64).mean(0) for e in embeddings], atol=1e-6)
    np.testing.assert_array_equal(max_pool(embeddings), [e.astype(np.float32).max(0) for e in embeddings])


def test_batched_linear_on_a_shared_input_equals_each_heads_product() -> None:
    from probes.heads import BatchedLinear

    torch.manual_seed(0)
    lin = BatchedLinear(5, 12, 7, torch.Generator().manual_seed(0))
    assert lin.weight.shape == (5, 7, 12) and lin.bias.shape == (5, 7) and lin.weight.is_contiguous()
    with torch.no_grad():
        lin.weight.add_(torch.randn_like(lin.weight))
        lin.bias.add_(torch.randn_like(lin.bias))
    x = torch.randn(9, 12)
    out = lin(x)
    expected = torch.stack([F.linear(x, lin.weight[h], lin.bias[h]) for h in range(5)])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(out, torch.einsum("bd,hcd->hbc", x, lin.weight) + lin.bias[:, None], rtol=0, atol=1e-5)
    torch.testing.assert_close(lin(x.expand(5, -1, -1)), expected, rtol=0, atol=1e-5)  # the per-head input path

    def grads(fn, bf16=False):
        """Output, and gradients of weight, bias and input, under the loss sum(c * out ** 2)."""
        w, b = lin.weight.detach().clone().requires_grad_(), lin.bias.detach().clone().requires_grad_()
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = fn(xi, w, b)
        y.float().square().mul(torch.linspace(0.5, 1.5, 7)).sum().backward()
        return y, w.grad, b.grad, xi.grad

    def direct(xi, w, b):
        return torch.stack([xi @ w[h].t() + b[h] for h in range(5)])

    from probes.heads import _SharedInputLinear

    def shared(xi, w, b, dtype=torch.float32):
        return _SharedInputLinear.apply(xi, w, b, dtype)

    for got, want in zip(grads(shared), grads(direct)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    low, high = grads(lambda *a: shared(*a, dtype=torch.bfloat16)), grads(direct)
    assert not torch.equal(low[0], high[0])  # the products ran in bf16 ...
    for got, want in zip(low, high):  # ... and are close; output and gradients are float32
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.05 * float(want.detach().abs().max()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the module takes the autocast dtype
        assert not torch.equal(lin(x), out)


@pytest.mark.parametrize("class_major", [False, True])
@pytest.mark.parametrize("n_classes", [10, 50])
def test_sweep_loss_is_the_sum_of_each_heads_cross_entropy(n_classes, class_major) -> None:
    """The sweep's loss against F.cross_entropy head by head, value and gradient, for logits
    laid out [H, B, C] or class-major [H, C, B] (a linear head's); the multilabel loss against
    BCE per head."""
    from probes.heads import _loss

    torch.manual_seed(n_classes)
    values = 3 * torch.randn(6, 40, n_classes)
    if class_major:
        values = values.transpose(1, 2).contiguous().transpose(1, 2)
    logits = values.requires_grad_()
    target = torch.randint(0, n_classes, (40,))
    loss = _loss(logits, target, multilabel=False)
    loss.backward()
    ref = logits.detach().clone().requires_grad_()
    expected = sum(F.cross_entropy(ref[h], target) for h in range(6))
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(logits.grad, ref.grad, rtol=1e-5, atol=1e-7)

    multi = (torch.rand(40, n_classes) < 0.2).float()
    expected = sum(F.binary_cross_entropy_with_logits(ref[h], multi) for h in range(6))
    torch.testing.assert_close(_loss(logits, multi, multilabel=True), expected, rtol=1e-6, atol=1e-5)
