"""Pre-training objectives: one contract over every registered objective, and each one's
defining property checked against an independent computation.

The contract includes batch-layout invariance: for every registered objective (any added
later included, with no code here), the trainer's step gives the whole batch's loss and
gradients, to 1e-5, whether the batch is split into 1, 2 or 4 micro-batches or spread over
two DDP processes (gloo, CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from encoders import build_encoder
from encoders.decoder import TextDecoder
from encoders.objectives import from_supervision, objective_class, objective_names, objective_needs, objective_version
from harness.registry import registry
from encoders.objectives.supervision import Supervision
from encoders.text import TextTokenizer

SMALL_DECODER = {"layers": 1, "dim": 64, "heads": 4, "ffn_dim": 128}
OPTIONS = {  # small heads so the whole contract runs in seconds on one CPU thread (others: declared defaults)
    "mtc": {},
    "supervised": {},
    "par": SMALL_DECODER,
    "captioning": {**SMALL_DECODER, "vocab": "targets"},
    "multitask": {**SMALL_DECODER, "weight": 0.5},
    "contrastive": {"proj_dim": 32},
}
CAPTIONS = ["a dog barks in a park", "rain falls on a tin roof while thunder rumbles", "a man speaks",
            "a violin plays a slow melody", "cars pass on a wet street and a horn honks twice", "birds sing",
            "a crowd applauds after a long piano piece in a large hall", "wind blows"]
TAGS = [["dog", "bark", "park"], ["rain", "roof", "thunder"], ["man", "speech"], ["violin", "music", "slow"],
        ["car", "street", "horn", "rain"], ["bird"], ["crowd", "applause", "piano", "music", "hall"], ["wind"]]
LABELS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]]


def supervision(n: int = 4) -> Supervision:
    """The first ``n`` (at most 8) clips' tags, captions and labels; the tag system is the
    tags of those clips."""
    names = sorted({t for tags in TAGS[:n] for t in tags})
    index = {t: i for i, t in enumerate(names)}
    targets = torch.zeros(n, len(names))
    for row, tags in enumerate(TAGS[:n]):
        targets[row, [index[t] for t in tags]] = 1
    return Supervision(num_clips=n, tag_targets=targets, tag_names=names,
                       tag_sequences=[", ".join(sorted(t, key=index.get)) for t in TAGS[:n]], captions=CAPTIONS[:n],
                       label_targets=torch.tensor(LABELS[:n], dtype=torch.float32),
                       label_names=["animal", "weather", "voice"])


def collate(targets: dict, indices: list[int], draws: torch.Tensor | None = None) -> dict:
    from encoders.trainer import collate_targets

    return collate_targets(targets, indices, torch.device("cpu"), draws)


def test_every_objective_declares_what_the_planner_needs():
    """Each file's declaration resolves to its class, and its option schema names exactly the
    keyword options the objective accepts (so plan-time checks and the code agree)."""
    import inspect

    assert set(objective_names()) >= {"mtc", "par", "captioning", "contrastive", "multitask", "supervised"}
    for name in objective_names():
        entry = registry("objective").get(name)
        cls = objective_class(name)
        assert entry.file.stem == name and cls.__module__ == entry.module
        assert set(objective_needs(name).split("+")) <= {"tags", "captions", "labels"} and objective_version(name)
        accepted = set(inspect.signature(cls.from_supervision).parameters) | set(
            inspect.signature(cls.__init__).parameters)
        accepted -= {"self", "cls", "encoder_dim", "sup", "options", "generative_options", "num_tags",
                     "num_embeddings", "bos_id", "eos_id", "mask_id", "mtc", "generative", "max_len"}
        if name == "multitask":  # its generative half's options pass through
            accepted |= set(registry("objective").get("par").options) | {"generative"}
        assert accepted <= set(entry.options), (name, accepted - set(entry.options))


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    encoder = build_encoder("transformer", size="tiny")
    out = {}
    for name in objective_names():
        torch.manual_seed(1)
        out[name] = from_supervision(name, encoder.dim, supervision(), **OPTIONS.get(name, {}))
    return encoder, out


def feats_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded features, as the encoder contract has them."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), max(lengths), 80)
    for i, n in enumerate(lengths):
        feats[i, :n] = torch.randn(n, 80, generator=g)
    return feats, torch.tensor(lengths)


@pytest.mark.parametrize("name", sorted(objective_names()))
def test_objective_contract(name, built):
    """Finite loss, gradients reach the encoder, same seed -> same loss, padding changes nothing."""
    encoder, objectives = built
    objective, targets = objectives[name]
    assert all(len(v) == 4 for v in targets.values())
    indices = [0, 1, 2, 3]
    batch = collate(targets, indices)
    feats, lengths = feats_batch([90, 40, 70, 60])

    def loss(seed: int, feats=feats, lengths=lengths, batch=batch, backward=False):
        torch.manual_seed(seed)
        encoder.zero_grad()
        frames, out_lengths = encoder(feats, lengths)
        out = objective(batch, frames, out_lengths)
        if backward:
            out["loss"].backward()
        return out

    encoder.train()
    objective.train()
    out = loss(3, backward=True)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert all(isinstance(v, float) for k, v in out.items() if k != "loss")
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert loss(3)["loss"].item() == out["loss"].item()

    objective.eval()
    with torch.no_grad():
        frames, out_lengths = encoder(feats, lengths)
        torch.manual_seed(5)
        reference = objective(batch, frames, out_lengths)["loss"].item()
        # Junk in every padding frame, 11 more junk frames, 9 more padding tokens: the same loss.
        junk = 3.0 * torch.randn(frames.shape[0], frames.shape[1] + 11, frames.shape[2])
        valid = torch.arange(junk.shape[1])[None, :, None] < out_lengths[:, None, None]
        padded = torch.where(valid, torch.nn.functional.pad(frames, (0, 0, 0, 11)), junk)
        wider = {k: torch.nn.functional.pad(v, (0, 9)) if k + "_lengths" in batch else v for k, v in batch.items()}
        torch.manual_seed(5)
        again = objective(wider, padded, out_lengths)["loss"].item()
    assert again == pytest.approx(reference, rel=1e-5, abs=1e-6)


def test_objectives_train_through_the_trainer(built, tmp_path):
    from encoders.trainer import TrainConfig, train

    encoder, objectives = built
    feats = [torch.randn(n, 80) for n in (50, 60, 70, 80)]
    for name in ("par", "contrastive", "multitask"):
        objective, targets = objectives[name]
        summary = train(encoder, objective, feats, targets,
                        TrainConfig(steps=2, batch_size=4, specaugment=None, checkpoint_every=1),
                        tmp_path / name, progress=False)
        assert math.isfinite(summary["final_loss"]) and summary["steps"] == 2


# ---------------------------------------------------------------- batch-layout invariance

LAYOUT_STEP, LAYOUT_SEED = 7, 3
LAYOUT_LENGTHS = (90, 40, 70, 60, 85, 30, 75, 50)
ORDER = [5, 2, 7, 0, 3, 6, 1, 4]  # the step's batch, in sampler order
DDP_ORDER = ORDER[:7]  # 4 clips on rank 0, 3 on rank 1: unequal shares


def layout_case(name: str):
    """Objective ``name`` (the contract's small options) on a tiny encoder, both in eval mode
    (dropout off: a dropout mask depends on how the batch is laid out), 8 clips of features
    and their targets."""
    from encoders.trainer import _Net

    torch.manual_seed(0)
    encoder = build_encoder("transformer", size="tiny")
    torch.manual_seed(1)
    objective, targets = from_supervision(name, encoder.dim, supervision(8), **OPTIONS.get(name, {}))
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 80, generator=g) for n in LAYOUT_LENGTHS]
    return _Net(encoder, objective).eval(), feats, targets


def gradient(net) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.requires_grad])


def whole_batch(net, feats, targets, order) -> tuple[float, torch.Tensor]:
    """The reference: the objective's own forward on the whole batch in one piece, and its gradient."""
    from encoders.trainer import batch_draws, collate, collate_targets

    batch = collate_targets(targets, order, torch.device("cpu"), batch_draws(LAYOUT_SEED, LAYOUT_STEP, len(order)))
    x, lengths = collate(feats, order)
    net.zero_grad()
    loss = net(x, lengths, batch)["loss"]
    loss.backward()
    return loss.item(), gradient(net)


def trainer_step(net, feats, targets, order, grad_accum) -> tuple[float, torch.Tensor]:
    """The trainer's step on this process's layout: the logged loss and the gradient."""
    from encoders.trainer import accumulate_gradients

    net.zero_grad()
    logged = accumulate_gradients(net, feats, targets, order, grad_accum, torch.device("cpu"), LAYOUT_STEP, LAYOUT_SEED)
    return logged["loss"], gradient(net)


@pytest.fixture(scope="module")
def layout_cases():
    cache = {}
    return lambda name: cache.setdefault(name, layout_case(name))


@pytest.mark.parametrize("grad_accum", [1, 2, 3, 4])
@pytest.mark.parametrize("name", sorted(objective_names()))
def test_grad_accum_gives_the_whole_batch_loss_and_gradients(name, grad_accum, layout_cases, one_torch_thread):
    """8 clips in 1, 2, 3 (unequal) or 4 micro-batches: the loss and every gradient are the
    whole batch's, for any objective (token losses over the whole batch's tokens,
    contrastive negatives over the whole batch)."""
    net, feats, targets = layout_cases(name)
    reference, reference_grad = whole_batch(net, feats, targets, ORDER)
    loss, grad = trainer_step(net, feats, targets, ORDER, grad_accum)
    assert loss == pytest.approx(reference, abs=1e-5)
    torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-5)


def _layout_worker(rank: int, world: int, folder, names: list[str]) -> None:
    """One DDP process (gloo): the trainer's step, for every objective, on this rank's share."""
    import datetime

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        results = {}
        for name in names:
            net, feats, targets = layout_case(name)
            for grad_accum in (1, 2):
                loss, grad = trainer_step(net, feats, targets, DDP_ORDER, grad_accum)
                results[f"{name}/{grad_accum}"] = {"loss": torch.tensor(loss, dtype=torch.float64), "grad": grad}
        torch.save(results, folder / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_steps(tmp_path_factory):
    """Every objective's step on 2 spawned processes (gloo, CPU), with 1 and 2 micro-batches
    per rank: ``{rank: {"<objective>/<grad_accum>": {"loss", "grad"}}}``."""
    folder = tmp_path_factory.mktemp("ddp-layout")
    torch.multiprocessing.spawn(_layout_worker, args=(2, folder, sorted(objective_names())), nprocs=2, join=True)
    return {rank: torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(objective_names()))
def test_ddp_gives_the_single_process_step(name, ddp_steps, layout_cases, one_torch_thread):
    """Two ranks holding 4 and 3 of the batch's 7 clips, each in 1 or 2 micro-batches: both
    ranks end with the whole batch's gradient and log its loss."""
    net, feats, targets = layout_cases(name)
    reference, reference_grad = whole_batch(net, feats, targets, DDP_ORDER)
    for rank in (0, 1):
        for grad_accum in (1, 2):
            got = ddp_steps[rank][f"{name}/{grad_accum}"]
            assert got["loss"].item() == pytest.approx(reference, abs=1e-5), (rank, grad_accum)
            torch.testing.assert_close(got["grad"], reference_grad, atol=1e-5, rtol=1e-5,
                                       msg=f"rank {rank}, grad_accum {grad_accum}")


def clip_loss(audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """open_clip's ClipLoss in one process, written out: the mean of the audio-to-text and
    text-to-audio cross-entropies of the scaled cosine logits, the diagonal the answers."""
    logits = scale * audio @ text.T
    a2t = -logits.log_softmax(dim=1).diagonal().mean()
    t2a = -logits.T.log_softmax(dim=1).diagonal().mean()
    return (a2t + t2a) / 2


def test_contrastive_is_cliploss_over_the_whole_batch_at_any_layout(layout_cases, ddp_steps, one_torch_thread):
    """The contrastive loss and its gradients, with 1, 2 or 4 micro-batches and on 2 ranks,
    are ClipLoss's over the whole batch (each clip's negatives: every other clip)."""
    from encoders.trainer import batch_draws, collate, collate_targets

    net, feats, targets = layout_cases("contrastive")
    for order, layouts in ((ORDER, [(None, 1), (None, 2), (None, 4)]), (DDP_ORDER, [(0, 1), (0, 2), (1, 2)])):
        batch = collate_targets(targets, order, torch.device("cpu"), batch_draws(LAYOUT_SEED, LAYOUT_STEP, len(order)))
        x, lengths = collate(feats, order)
        net.zero_grad()
        embeddings = net.embed(x, lengths, batch)
        reference = clip_loss(embeddings["audio"], embeddings["text"], net.objective.logit_scale.exp())
        reference.backward()
        reference_grad = gradient(net)
        for rank, grad_accum in layouts:
            if rank is None:
                loss, grad = trainer_step(net, feats, targets, order, grad_accum)
            else:
                got = ddp_steps[rank][f"contrastive/{grad_accum}"]
                loss, grad = got["loss"].item(), got["grad"]
            assert loss == pytest.approx(reference.item(), abs=1e-5), (rank, grad_accum)
            torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-5)


def test_gradcache_repeats_the_first_pass_with_dropout_on(layout_cases, one_torch_thread):
    """In training mode (dropout in the encoder and the text tower), the step with 2
    micro-batches equals embedding both with their graphs kept from the same RNG state: the
    second, recomputing pass sees the first pass's dropout masks."""
    from encoders.trainer import batch_draws, collate, collate_targets

    net, feats, targets = layout_cases("contrastive")
    net.train()
    try:
        torch.manual_seed(5)
        loss, grad = trainer_step(net, feats, targets, ORDER, 2)
        torch.manual_seed(5)
        draws = batch_draws(LAYOUT_SEED, LAYOUT_STEP, len(ORDER))
        net.zero_grad()
        pieces = []
        for part in (slice(0, 4), slice(4, 8)):
            x, lengths = collate(feats, ORDER[part])
            pieces.append(net.embed(x, lengths, collate_targets(targets, ORDER[part], torch.device("cpu"), draws[part])))
        reference = net.objective.loss({k: torch.cat([p[k] for p in pieces]) for k in pieces[0]})["loss"]
        reference.backward()
    finally:
        net.eval()
    assert loss == pytest.approx(reference.item(), abs=1e-5)
    torch.testing.assert_close(grad, gradient(net), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- PAR and the decoder


def decoder_logits(causal: bool, tokens: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    decoder = TextDecoder(encoder_dim=16, num_embeddings=50, layers=2, dim=32, heads=4, ffn_dim=64, dropout=0.0)
    memory = torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(1))
    return decoder(tokens, torch.tensor([tokens.shape[1]]), torch.tensor([causal]), memory, torch.tensor([7]))


@pytest.mark.parametrize("causal", [False, True])
def test_parallel_mode_sees_later_positions_and_ar_mode_does_not(causal):
    tokens = torch.tensor([[3, 4, 5, 6, 7, 8]])
    changed = tokens.clone()
    changed[0, 4] = 20  # a later position
    a, b = decoder_logits(causal, tokens), decoder_logits(causal, changed)
    earlier_moved = (a[0, :4] - b[0, :4]).abs().max().item()
    if causal:
        assert earlier_moved == 0.0
    else:
        assert earlier_moved > 1e-4
    assert (a[0, 4:] - b[0, 4:]).abs().max().item() > 1e-4


def test_decoder_inputs_and_targets_for_both_modes():
    tok = TextTokenizer()
    from encoders.objectives.par import PAR

    par = PAR(8, tok.num_embeddings, tok.bos_id, tok.eos_id, tok.mask_id, **SMALL_DECODER)
    tokens = torch.tensor([[5, 6, 7], [8, 0, 0]])
    inputs, targets, lengths = par.decoder_io(tokens, torch.tensor([3, 1]), torch.tensor([True, False]))
    m, bos, eos = tok.mask_id, tok.bos_id, tok.eos_id
    assert inputs[0, :3].tolist() == [m, m, m] and targets[0, :3].tolist() == [5, 6, 7]  # no BOS, no EOS
    assert inputs[1, :2].tolist() == [bos, 8] and targets[1, :2].tolist() == [8, eos]  # teacher forcing
    assert lengths.tolist() == [3, 2]
    assert (bos, eos, m) == (101, 102, 103)  # MiniLM's [CLS], [SEP], [MASK]


@pytest.mark.parametrize("name, fraction", [("par", None), ("par", 0.75), ("captioning", None),
                                            ("captioning", 0.3), ("captioning", 0.0), ("multitask", 0.5)])
def test_parallel_fraction_is_the_share_of_parallel_samples(name, fraction):
    """PAR decodes every sample in parallel by default (UTS), captioning 0.75 of them
    (CapPa's hybrid), multi-task its generative half's; the share of a batch is exact to one
    sample (stratified draws), and each sample's mode is its draw against the fraction."""
    from encoders.trainer import batch_draws

    sup = Supervision(num_clips=400, tag_sequences=["dog, bark"] * 400, captions=["a dog barks"] * 400,
                      tag_targets=torch.ones(400, 2), tag_names=["dog", "bark"])
    options = {} if fraction is None else {"parallel_fraction": fraction}
    objective, targets = from_supervision(name, 16, sup, **SMALL_DECODER, **options)
    default = {"par": 1.0, "captioning": 0.75, "multitask": None}[name]
    assert registry("objective").get(name).options["parallel_fraction"].default == default
    expected = default if fraction is None else fraction
    draws = batch_draws(0, 5, 400)
    batch = collate(targets, list(range(400)), draws)
    out = objective(batch, torch.randn(400, 5, 16), torch.full((400,), 5))
    share = out["gen_parallel_share" if name == "multitask" else "parallel_share"]
    assert abs(share * 400 - expected * 400) <= 1
    decoder = objective.generative if name == "multitask" else objective
    assert torch.equal(decoder.parallel(batch), draws < expected)


def test_batch_draws_are_stratified_and_fixed_per_step():
    from encoders.trainer import batch_draws

    draws = batch_draws(3, 11, 50)
    assert sorted((draws * 50).floor().long().tolist()) == list(range(50))  # one in each [k/50, (k+1)/50)
    assert torch.equal(draws, batch_draws(3, 11, 50)) and not torch.equal(draws, batch_draws(3, 12, 50))


def test_target_vocabulary_renumbers_the_same_tokens():
    from encoders.objectives.par import PAR

    sup = supervision()
    full, full_targets = PAR.from_supervision(16, sup, **SMALL_DECODER)
    small, small_targets = PAR.from_supervision(16, sup, vocab="targets", **SMALL_DECODER)
    tok = TextTokenizer()
    used = sorted({int(t) for seq in full_targets["tokens"] for t in seq})
    assert small.decoder.out.out_features == 4 + len(used) < 60 < full.decoder.out.out_features == 30522
    assert (small.bos_id, small.eos_id, small.mask_id) == (1, 2, 3)
    back = {i + 4: t for i, t in enumerate(used)}
    for a, b in zip(full_targets["tokens"], small_targets["tokens"]):
        assert [back[int(t)] for t in b] == a.tolist()
    assert tok.decode(full_targets["tokens"][0].tolist()) == sup.tag_sequences[0]


def test_tag_sequence_tokens_are_minilm_wordpieces():
    tok = TextTokenizer()
    ids = tok.encode(["dog, bark, park"], max_len=64)[0]
    assert tok.decode(ids) == "dog, bark, park" and 101 not in ids and 102 not in ids
    assert tok.encode(["a b c d e f"], max_len=3)[0] == tok.encode(["a b c"], max_len=64)[0]
    framed = tok.encode(["a b c d e f"], max_len=4, special=True)[0]
    assert framed[0] == 101 and framed[-1] == 102 and len(framed) == 4


# ---------------------------------------------------------------- contrastive


def test_contrastive_loss_equals_a_direct_computation(built):
    encoder, _ = built
    torch.manual_seed(2)
    objective, targets = from_supervision("contrastive", encoder.dim, supervision(), proj_dim=32)
    objective.eval()
    batch = collate(targets, [0, 1, 2, 3])
    frames = torch.randn(4, 12, encoder.dim)
    lengths = torch.tensor([12, 5, 9, 7])
    with torch.no_grad():
        out = objective(batch, frames, lengths)
        audio = objective.embed_audio(frames, lengths).numpy().astype(np.float64)
        text = objective.embed_text(batch["text"], batch["text_lengths"]).numpy().astype(np.float64)
    scale = math.exp(math.log(1 / 0.07))
    logits = scale * audio @ text.T

    def cross_entropy(m):  # rows are predictions, the diagonal the answers
        m = m - m.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(m).sum(axis=1)) - np.diag(m)))

    expected = 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))
    assert out["loss"].item() == pytest.approx(expected, abs=1e-5)
    # The embeddings themselves: mean over valid frames, then the MLP, then unit norm.
    pooled = torch.stack([frames[i, : lengths[i]].mean(0) for i in range(4)])
    with torch.no_grad():
        direct = torch.nn.functional.normalize(objective.audio_proj(pooled), dim=-1).numpy()
    np.testing.assert_allclose(audio, direct, atol=1e-6)


def test_contrastive_temperature_fixed_or_learned():
    sup = supervision()
    learned, _ = from_supervision("contrastive", 16, sup, proj_dim=8)
    fixed, _ = from_supervision("contrastive", 16, sup, proj_dim=8, learn_temperature=False, temperature=0.05)
    assert isinstance(learned.logit_scale, torch.nn.Parameter)
    assert learned.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert not isinstance(fixed.logit_scale, torch.nn.Parameter)
    assert fixed.logit_scale.item() == pytest.approx(math.log(1 / 0.05))


@pytest.fixture
def tagcount_file():
    """docs/adding-an-objective.md's tagcount.py, written where the guide says
    (``encoders/objectives/tagcount.py``) and removed afterwards."""
    import re
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "adding-an-objective.md").read_text()
    code = re.search(r"`encoders/objectives/tagcount\.py`:\n\n```python\n(.*?)```", doc, re.S).group(1)
    path = root / "encoders" / "objectives" / "tagcount.py"
    assert not path.exists(), "a tagcount.py is already in encoders/objectives/"
    path.write_text(code)
    try:
        yield path
    finally:
        path.unlink()
        sys.modules.pop("encoders.objectives.tagcount", None)


def test_the_documented_example_objective_is_one_file(tagcount_file, tmp_path, capsys):
    """The guide's one file, and no other edit, makes an objective that meets the contract
    and that a study can use; a misspelt option is one line at plan, with a did-you-mean."""
    from harness.cli import main

    assert "tagcount" in objective_names() and objective_needs("tagcount") == "tags"
    objective, targets = from_supervision("tagcount", 16, supervision(), hidden=8)
    assert targets["counts"].squeeze(1).tolist() == [len(t) for t in TAGS[:4]]
    frames = torch.randn(4, 6, 16, requires_grad=True)
    out = objective(collate(targets, [0, 1, 2, 3]), frames, torch.tensor([6, 3, 5, 2]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and frames.grad[1, 3:].abs().sum() == 0  # padding gets no gradient
    net, feats, targets = layout_case("tagcount")  # the layout contract, as for every registered objective
    reference, reference_grad = whole_batch(net, feats, targets, ORDER)
    for grad_accum in (2, 4):
        loss, grad = trainer_step(net, feats, targets, ORDER, grad_accum)
        assert loss == pytest.approx(reference, abs=1e-5)
        torch.testing.assert_close(grad, reference_grad, atol=1e-5, rtol=1e-5)

    study = tmp_path / "tagcount.yaml"
    text = ("name: tagcount-vs-mtc\ndata: {sources: [{name: mini, kind: minisuite}]}\ntagging: {sizes: [8]}\n"
            "pretrain:\n  encoder: transformer\n  objectives: [mtc, {name: tagcount, options: {OPTION: 128}}]\n"
            "probes: {tasks: [mini/env_event]}\n")
    study.write_text(text.replace("OPTION", "hidden"))
    assert main(["plan", str(study)]) == 0
    assert "tagcount" in capsys.readouterr().out
    study.write_text(text.replace("OPTION", "hiden"))
    assert main(["plan", str(study)]) == 2
    (line,) = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert line.endswith("pretrain.objectives[1].options.hiden: not an option of the 'tagcount' objective "
                         "(did you mean 'hidden'?); its options: hidden")


def test_a_broken_declaration_is_one_line_at_plan(tmp_path, capsys):
    """An objective file without its declaration, or with a malformed one, is one line."""
    from pathlib import Path

    from harness.cli import main

    path = Path(__file__).resolve().parent.parent / "encoders" / "objectives" / "nodecl.py"
    study = tmp_path / "s.yaml"
    study.write_text("name: s\ndata: {sources: [{name: mini, kind: minisuite}]}\ntagging: {sizes: [8]}\n"
                     "pretrain: {encoder: transformer, objectives: [nodecl]}\nprobes: {tasks: [mini/env_event]}\n")
    try:
        for body, expected in [
            ("class X: pass\n", "unknown objective 'nodecl'"),
            ('COMPONENT = Component(kind="objective", target="X", needs="tags")\n', "declares no version"),
            ('import os\nCOMPONENT = Component(kind="objective", target="X", version=os.sep)\n',
             "may use only literals and harness.schema nodes, found the name 'os'"),
        ]:
            path.write_text(body)
            assert main(["plan", str(study)]) == 2
            (line,) = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
            assert expected in line and "Traceback" not in line
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture
def tiny_bert(tmp_path):
    """A local folder with a 1-layer BERT (width 48) and a word-level tokenizer, built here."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for c in CAPTIONS for w in c.split()} | {t for tags in TAGS for t in tags} | {","})
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    folder = tmp_path / "tiny-bert"
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=96)).save_pretrained(folder)
    return folder, vocab


def test_any_local_text_encoder_and_tokenizer_folder(tiny_bert):
    """The contrastive text tower and the decoder tokenizer come from any local folder."""
    folder, vocab = tiny_bert
    contrastive, targets = from_supervision("contrastive", 16, supervision(), text_model=str(folder), proj_dim=8)
    assert contrastive.text_proj.in_features == 48 and targets["text"][0].max() < len(vocab)
    out = contrastive(collate(targets, [0, 1, 2, 3]), torch.randn(4, 5, 16), torch.full((4,), 5))
    assert torch.isfinite(out["loss"])

    par, targets = from_supervision("par", 16, supervision(), tokenizer=str(folder), **SMALL_DECODER)
    assert (par.bos_id, par.eos_id, par.mask_id) == (1, 2, len(vocab))  # no mask token: one past the end
    assert par.decoder.out.out_features == len(vocab) + 1
    assert supervision().tag_sequences[0] == "bark, dog, park"  # by tag-system rank, not caption order
    assert targets["tokens"][0].tolist() == [vocab[t] for t in ["bark", ",", "dog", ",", "park"]]
    out = par(collate(targets, [0, 1, 2, 3]), torch.randn(4, 5, 16), torch.full((4,), 5))
    assert torch.isfinite(out["loss"])


def test_the_auden_clap_as_options(tiny_bert):
    """projection both_mlp (Linear-ReLU-Linear on both towers, the audio one frame-wise before
    the mean), CLS pooling, a fixed temperature, the InfoNCE summed over rows and the
    embedding regulariser, each against a written-out computation."""
    folder, _ = tiny_bert
    torch.manual_seed(3)
    clap, targets = from_supervision("contrastive", 16, supervision(), text_model=str(folder), proj_dim=8,
                                     projection="both_mlp", text_pooling="cls", learn_temperature=False,
                                     reduction="sum", embed_reg=True, max_tokens=30)
    clap.eval()
    shapes = [(type(m).__name__, getattr(m, "in_features", None), getattr(m, "out_features", None))
              for m in (*clap.audio_proj, *clap.text_proj)]
    assert shapes == [("Linear", 16, 8), ("ReLU", None, None), ("Linear", 8, 8)] + [
        ("Linear", 48, 8), ("ReLU", None, None), ("Linear", 8, 8)]
    assert not isinstance(clap.logit_scale, torch.nn.Parameter)
    batch = collate(targets, [0, 1, 2, 3])
    frames, lengths = torch.randn(4, 9, 16), torch.tensor([9, 4, 7, 6])
    with torch.no_grad():
        out = clap(batch, frames, lengths)
        audio = torch.stack([clap.audio_proj(frames[i, : lengths[i]]).mean(0) for i in range(4)])
        mask = torch.arange(batch["text"].shape[1])[None] < batch["text_lengths"][:, None]
        hidden = clap.text(input_ids=batch["text"], attention_mask=mask.long()).last_hidden_state
        text = clap.text_proj(hidden[:, 0])
    a = torch.nn.functional.normalize(audio, dim=-1).double().numpy()
    t = torch.nn.functional.normalize(text, dim=-1).double().numpy()
    logits = a @ t.T / 0.07

    def summed_ce(m):  # Σ over rows of -log softmax at the diagonal
        m = m - m.max(axis=1, keepdims=True)
        return float(np.sum(np.log(np.exp(m).sum(axis=1)) - np.diag(m)))

    def reg(x):
        return float(np.abs(x).mean() / np.sqrt((x ** 2).sum()))

    expected = summed_ce(logits) + summed_ce(logits.T) + reg(a) + reg(t)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_blats_audio_head_as_options(tiny_bert):
    """BLAT's clip embedding (wsntxxn/BLAT models/audio_encoder.py + audio_text_model.py):
    max + mean over the valid frames, dropout, Linear + ReLU, dropout, Linear; written out
    by hand in eval mode (dropout off), and dropout active in training."""
    folder, _ = tiny_bert
    torch.manual_seed(4)
    clap, _ = from_supervision("contrastive", 16, supervision(), text_model=str(folder), proj_dim=8,
                               projection="audio_mlp", audio_pooling="max+mean", activation="relu", dropout=0.5,
                               hidden_dim=32)
    kinds = [type(m).__name__ for m in clap.audio_proj]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    frames, lengths = torch.randn(3, 7, 16), torch.tensor([7, 2, 5])
    frames[1, 2:] = 100.0  # padding must not reach the max
    clap.eval()
    with torch.no_grad():
        got = clap.embed_audio(frames, lengths)
        fc1, proj = clap.audio_proj[1], clap.audio_proj[4]
        want = []
        for i in range(3):
            valid = frames[i, : lengths[i]]
            pooled = valid.max(0).values + valid.mean(0)
            want.append(proj(torch.relu(fc1(pooled))))
        want = torch.nn.functional.normalize(torch.stack(want), dim=-1)
    assert torch.allclose(got, want, atol=1e-6)
    clap.train()
    torch.manual_seed(0)
    assert not torch.allclose(clap.embed_audio(frames, lengths), got)  # dropout on while training
    with pytest.raises(ValueError, match="options of projection: audio_mlp"):
        from_supervision("contrastive", 16, supervision(), text_model=str(folder), projection="both_mlp", dropout=0.5)


def test_learned_logit_scale_is_clamped_as_a_parameter(built, tmp_path):
    """The loss uses the parameter as it is (a scale past the clamp still has a gradient);
    after each optimizer step the parameter itself is clamped, as open_clip does."""
    from encoders.trainer import TrainConfig, train

    encoder, _ = built
    torch.manual_seed(0)
    clap, targets = from_supervision("contrastive", encoder.dim, supervision(), proj_dim=8, max_logit_scale=20.0)
    clap.logit_scale.data.fill_(math.log(30.0))
    out = clap(collate(targets, [0, 1, 2, 3]), torch.randn(4, 5, encoder.dim), torch.full((4,), 5))
    assert out["logit_scale"] == pytest.approx(30.0, rel=1e-5)
    out["loss"].backward()
    assert clap.logit_scale.grad.abs().item() > 0
    clap.after_optimizer_step()
    assert clap.logit_scale.item() == pytest.approx(math.log(20.0))

    clap.logit_scale.data.fill_(math.log(30.0))
    feats = [torch.randn(n, 80) for n in (50, 60, 70, 80)]
    train(encoder, clap, feats, targets, TrainConfig(steps=1, batch_size=4, specaugment=None), tmp_path,
          progress=False)
    assert clap.logit_scale.item() == pytest.approx(math.log(20.0))


def test_caption_normalisation_is_the_authors():
    from encoders.text import normalize_text

    assert normalize_text("A Dog barks, then a man speaks.", "lowercase_no_punct") == "a dog barks then a man speaks "
    assert normalize_text("Birds chirp , wind blows !", "lowercase_no_punct") == "birds chirp wind blows "
    # one pass of "  " -> " " after each substitution, as the authors': runs of 3 spaces keep 2
    assert normalize_text('He said "go" (twice); rain|wind*', "lowercase_no_punct") == "he said go  twice  rain wind "
    assert normalize_text("Keep, As Is.", "none") == "Keep, As Is."


def test_decoders_take_a_byte_level_bpe_folder(tmp_path, monkeypatch):
    """A byte-level BPE (as BART-base's) trained here, read from its tokenizer.json or from
    vocab.json + merges.txt, with the authors' caption normalisation; no download."""
    from tokenizers import ByteLevelBPETokenizer

    from encoders.text import normalize_text

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([normalize_text(c, "lowercase_no_punct") for c in CAPTIONS] * 4, vocab_size=300,
                            min_frequency=1, special_tokens=specials, show_progress=False)
    whole, split = tmp_path / "bpe-json", tmp_path / "bpe-files"
    whole.mkdir()
    split.mkdir()
    bpe.save(str(whole / "tokenizer.json"))
    bpe.save_model(str(split))
    monkeypatch.setenv("TINY_BPE", str(split))

    from_json = TextTokenizer(whole, normalize="lowercase_no_punct")
    from_files = TextTokenizer("${TINY_BPE}", normalize="lowercase_no_punct")
    for tok in (from_json, from_files):
        assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 4)
    texts = ["A dog barks, then rain falls on a roof.", "Birds sing."]
    ids = from_json.encode(texts, max_len=64)
    assert from_files.encode(texts, max_len=64) == ids
    assert from_json.decode(ids[0]) == "a dog barks then rain falls on a roof "

    captioning, targets = from_supervision("captioning", 16, supervision(), tokenizer="${TINY_BPE}",
                                           normalize="lowercase_no_punct", **SMALL_DECODER)
    assert captioning.decoder.out.out_features == from_files.num_embeddings
    assert [t.tolist() for t in targets["tokens"]] == from_files.encode(CAPTIONS[:4], max_len=128)
    out = captioning(collate(targets, [0, 1, 2, 3]), torch.randn(4, 5, 16), torch.full((4,), 5))
    assert torch.isfinite(out["loss"])


def test_mtc_reduction_and_the_multitask_weight():
    """``reduction: sum`` (the Auden tagger's sum over tags) is K times the mean over tags;
    multi-task's ``mtc_reduction`` picks which one λ is weighed against."""
    sup = supervision()
    frames, lengths = torch.randn(4, 6, 16), torch.full((4,), 6)
    k = sup.tag_targets.shape[1]
    losses = {}
    for reduction in ("mean", "sum"):
        torch.manual_seed(0)
        mtc, targets = from_supervision("mtc", 16, sup, reduction=reduction, dropout=0.0)
        losses[reduction] = mtc(collate(targets, [0, 1, 2, 3]), frames, lengths)["loss"].item()
        torch.manual_seed(0)
        multitask, targets = from_supervision("multitask", 16, sup, mtc_reduction=reduction, weight=0.0, dropout=0.0,
                                              **SMALL_DECODER)
        assert multitask(collate(targets, [0, 1, 2, 3]), frames, lengths)["loss"].item() == pytest.approx(
            losses[reduction], rel=1e-6)
    assert losses["sum"] == pytest.approx(k * losses["mean"], rel=1e-6)
    logits, tags = torch.randn(4, 5), (torch.rand(4, 5) > 0.5).float()
    bce = -(tags * torch.nn.functional.logsigmoid(logits) + (1 - tags) * torch.nn.functional.logsigmoid(-logits))
    from encoders.objectives.losses import multi_label_bce

    assert multi_label_bce(logits, tags, reduction="sum").item() == pytest.approx(bce.sum(1).mean().item(), rel=1e-6)
    assert multi_label_bce(logits[:2], tags[:2], total=4).item() == pytest.approx(bce[:2].sum().item() / 20, rel=1e-6)


def test_decoder_presets_are_named_for_what_they_are():
    from encoders.decoder import decoder_settings
    from encoders.objectives.par import PAR

    assert decoder_settings("auden", 512) == {"layers": 6, "dim": 768, "heads": 8, "ffn_dim": 3072, "dropout": 0.1,
                                              "label_smoothing": 0.1}
    assert decoder_settings("cappa", 384) == {"layers": 6, "dim": 384, "heads": 6, "ffn_dim": 1536, "dropout": 0.0,
                                              "label_smoothing": 0.0}
    assert decoder_settings("cappa", 144, layers=2)["heads"] == 2 and decoder_settings("auden", 8, dropout=0.0)["dropout"] == 0.0
    par = PAR(64, 50, 1, 2, 3, preset="cappa", layers=1)
    assert par.label_smoothing == 0.0 and par.decoder.embed.embedding_dim == 64 and len(par.decoder.blocks) == 1


def test_token_cross_entropy_over_the_whole_batch_count():
    """Parts of a batch, each divided by the whole batch's token count, add up to the mean
    over all its tokens, label smoothing included."""
    from encoders.objectives.losses import token_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(5, 7, 11, generator=g), torch.randint(11, (5, 7), generator=g)
    valid = torch.arange(7)[None] < torch.tensor([7, 2, 5, 1, 3])[:, None]
    whole = torch.nn.functional.cross_entropy(logits[valid], targets[valid], label_smoothing=0.1)
    assert token_cross_entropy(logits, targets, valid, label_smoothing=0.1).item() == pytest.approx(whole.item(), rel=1e-6)
    total = valid.sum()
    parts = sum(token_cross_entropy(logits[s], targets[s], valid[s], total, 0.1) for s in (slice(0, 2), slice(2, 5)))
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)
