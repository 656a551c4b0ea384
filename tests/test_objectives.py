"""Pre-training objectives: one contract over every registered objective, and each one's
defining property checked against an independent computation."""

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
            "a violin plays a slow melody"]
TAGS = [["dog", "bark", "park"], ["rain", "roof", "thunder"], ["man", "speech"], ["violin", "music", "slow"]]


def supervision() -> Supervision:
    names = sorted({t for tags in TAGS for t in tags})
    index = {t: i for i, t in enumerate(names)}
    targets = torch.zeros(len(TAGS), len(names))
    for row, tags in enumerate(TAGS):
        targets[row, [index[t] for t in tags]] = 1
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=torch.float32)
    return Supervision(num_clips=4, tag_targets=targets, tag_names=names,
                       tag_sequences=[", ".join(sorted(t, key=index.get)) for t in TAGS], captions=CAPTIONS,
                       label_targets=labels, label_names=["animal", "weather", "voice"])


def collate(targets: dict, indices: list[int]) -> dict:
    from encoders.trainer import collate_targets

    return collate_targets(targets, indices, torch.device("cpu"))


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


def test_parallel_fraction_is_the_share_of_parallel_samples():
    sup = Supervision(num_clips=400, tag_sequences=["dog, bark"] * 400)
    from encoders.objectives.par import PAR

    torch.manual_seed(0)
    par, targets = PAR.from_supervision(16, sup, **SMALL_DECODER)
    batch = collate(targets, list(range(400)))
    out = par(batch, torch.randn(400, 5, 16), torch.full((400,), 5))
    assert 0.70 < out["parallel_share"] < 0.80
    with pytest.raises(ValueError, match="parallel_fraction"):
        from encoders.objectives.captioning import Captioning

        Captioning(16, 100, 1, 2, 3, parallel_fraction=0.5)


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
    assert targets["counts"].squeeze(1).tolist() == [len(t) for t in TAGS]
    frames = torch.randn(4, 6, 16, requires_grad=True)
    out = objective(collate(targets, [0, 1, 2, 3]), frames, torch.tensor([6, 3, 5, 2]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and frames.grad[1, 3:].abs().sum() == 0  # padding gets no gradient

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


def test_any_local_text_encoder_and_tokenizer_folder(tmp_path):
    """The contrastive text tower and the decoder tokenizer come from any local folder."""
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
