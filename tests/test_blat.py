"""BLAT (arXiv 2303.07902) as a study: the paper study plans, the keyword-conditioned
captioner and BLAT's CLAP config work, and the mini study runs end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.graph import expand
from harness.study import load_study
from test_adapters import audiocaps_tree, clotho_tree, esc50_tree, fsd50k_tree, us8k_tree, vggsound_tree

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("blat-data")
    esc50_tree(root / "ESC-50-master")
    us8k_tree(root / "UrbanSound8K")
    vggsound_tree(root / "VGGSound")
    fsd50k_tree(root / "FSD50K")
    audiocaps_tree(root / "AudioCaps")
    clotho_tree(root / "Clotho")
    (root / "AudioSet" / "audio").mkdir(parents=True)
    for name in ("unbalanced_train_segments.csv", "balanced_train_segments.csv", "eval_segments.csv"):
        (root / "AudioSet" / name).touch()
    return root


@pytest.fixture
def paper_env(data_root, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(data_root))
    for var in ("AUDIOSET_ROOT", "AUDIOCAPS_ROOT", "BERT_MEDIUM"):
        monkeypatch.delenv(var, raising=False)
    return data_root


def test_blat_study_plans_captioner_clap_zero_shot_and_retrieval(paper_env, capsys) -> None:
    assert main(["plan", str(ROOT / "studies" / "paper" / "blat.yaml"), "--out", str(paper_env / "runs")]) == 0
    assert "captioner:" in capsys.readouterr().out
    stages = expand(load_study(ROOT / "studies" / "paper" / "blat.yaml").config).by_stage()
    (captioner,) = stages["captioner"]
    assert captioner.inputs["dataset"].config["kind"] == "audiocaps"
    assert captioner.inputs["keywords"].config["kind"] == "audioset"
    assert captioner.config["encoder"] == {"name": "cnn14", "size": "base"}
    assert captioner.config["features"]["kind"] == "panns-logmel"
    (captions,) = stages["captions"]
    assert captions.inputs["captioner"] is captioner and captions.inputs["dataset"].config["kind"] == "audioset"
    (run,) = stages["pretrain"]
    assert run.config["encoder"]["name"] == "cnn14" and run.config["features"]["sample_rate"] == 32000
    options = run.config["objective"]
    # BLAT's released config: checkpoints/blat_cnn14_bertm/config.json, models/audio_text_model.py.
    assert (options["text_pooling"], options["max_tokens"], options["proj_dim"]) == ("cls", 30, 1024)
    assert (options["temperature"], options["learn_temperature"]) == (0.07, True)
    kinds = {n.coords["task"]: n.config["task"]["kind"] for n in stages["probe"]}
    assert {t for t, k in kinds.items() if k == "zero-shot"} == {
        "paper/esc50_zeroshot", "paper/urbansound8k_zeroshot", "paper/vggsound_zeroshot", "paper/audioset_zeroshot"}
    assert {t for t, k in kinds.items() if k == "retrieval"} == {"paper/audiocaps", "paper/clotho"}


def test_a_captioner_source_that_does_not_exist_is_named(paper_env) -> None:
    from harness.errors import StudyError

    config = load_study(ROOT / "studies" / "paper" / "blat.yaml").config
    config["tagging"]["captioner"]["train"]["source"] = "audiocap"
    with pytest.raises(StudyError, match="tagging.captioner.train.source: no data source named 'audiocap'"):
        expand(config)


def _tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT in prajjwal1/bert-medium's file layout (config + weights + vocab.txt)."""
    from transformers import BertConfig, BertModel

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "bark", "##s", "rain", "the", "sound", "of"]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    return folder


def test_bert_vocab_folder_tokenises_as_transformers_and_feeds_blats_clap(tmp_path) -> None:
    from transformers import BertTokenizer

    from encoders import build_encoder
    from encoders.objectives.contrastive import Contrastive
    from encoders.objectives.supervision import Supervision
    from encoders.text import TextTokenizer

    folder = _tiny_bert(tmp_path / "bert-medium")
    texts = ["A dog barks", "the sound of rain", "zebra"]
    reference = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True)
    assert TextTokenizer(folder).encode(texts, 30, special=True) == [reference.encode(t) for t in texts]

    torch.manual_seed(0)
    encoder = build_encoder("cnn14").eval()
    sup = Supervision(num_clips=2, captions=texts[:2])
    clap, targets = Contrastive.from_supervision(encoder.dim, sup, text_model=str(folder), max_tokens=30,
                                                 text_pooling="cls", proj_dim=1024, hidden_dim=encoder.dim)
    assert isinstance(clap.text_proj, torch.nn.Linear) and clap.text_proj.out_features == 1024
    assert torch.isclose(clap.logit_scale.exp(), torch.tensor(1 / 0.07)) and clap.logit_scale.requires_grad
    frames, lengths = encoder(torch.randn(2, 96, 64), torch.tensor([96, 64]))
    tokens = torch.nn.utils.rnn.pad_sequence(targets["text"], batch_first=True)
    out = clap({"text": tokens, "text_lengths": torch.tensor([len(t) for t in targets["text"]])}, frames, lengths)
    assert torch.isfinite(out["loss"])


def test_keyword_captioner_is_conditioned_on_its_keywords() -> None:
    """The authors' decoder adds the keyword projection to every word embedding: other
    keywords give other logits, and the loss ignores padding past each caption."""
    from harness.tagging._keyword_model import KeywordCaptioner

    torch.manual_seed(0)
    model = KeywordCaptioner(16, num_keywords=3, num_embeddings=20, bos_id=1, eos_id=2, pad_id=0, dim=32, layers=1,
                             dropout=0.0).eval()
    frames, lengths = torch.randn(2, 5, 16), torch.tensor([5, 3])
    words, word_lengths = torch.tensor([[1, 5, 6], [1, 7, 0]]), torch.tensor([3, 2])
    a = model.logits(words, word_lengths, torch.tensor([[1.0, 0, 0], [1, 0, 0]]), frames, lengths)
    b = model.logits(words, word_lengths, torch.tensor([[0.0, 1, 0], [0, 1, 0]]), frames, lengths)
    assert not torch.allclose(a, b)
    batch = {"tokens": torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]]), "tokens_lengths": torch.tensor([4, 3]),
             "keywords": torch.tensor([[1.0, 0, 0], [0, 1, 1]])}
    loss = model(batch, frames, lengths)["loss"]
    logits = model.logits(batch["tokens"][:, :-1], torch.tensor([3, 2]), batch["keywords"], frames, lengths)
    targets = torch.tensor([5, 6, 2, 7, 2])
    picked = torch.cat([logits[0, :3], logits[1, :2]])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(picked, targets, label_smoothing=0.1))
    assert all(len(seq) <= model.max_tokens for seq in model.greedy(batch["keywords"], frames, lengths))


@pytest.mark.slow
def test_mini_blat_runs_end_to_end(tmp_path, harness_env, monkeypatch) -> None:
    """Captioner trained and used on the pool (the scenes' events as keywords), CLAP with a
    tiny CNN14 trained, zero-shot rows in the results."""
    monkeypatch.setenv("HARNESS_HOME", harness_env["HARNESS_HOME"])  # the session's mini suite
    out = tmp_path / "run"
    assert main(["run", str(ROOT / "studies" / "mini_blat.yaml"), "--executor", "debug", "--out", str(out),
                 "--no-progress"]) == 0
    stages = expand(load_study(ROOT / "studies" / "mini_blat.yaml").config).by_stage()
    (captions,) = stages["captions"]
    report = json.loads((out / "store" / "captions" / captions.key / "caption_report.json").read_text())
    assert report["captioned"] > 0 and report["captioned"] + report["missing"] == report["total"]
    results = pd.read_parquet(out / "results.parquet")
    zero_shot = results[results["task"] == "mini/env_event_zeroshot"]
    assert len(zero_shot) and zero_shot["value"].between(0, 1).all()


def test_plan_names_what_cnn14_and_the_captioner_cannot_take(tmp_path) -> None:
    from harness.errors import StudyError

    study = tmp_path / "study.yaml"
    study.write_text(f"""name: bad
include: {ROOT / 'studies' / 'mini_blat.yaml'}
tagging:
  captioner: {{train: {{encoder: cnn41}}}}
pretrain:
  stream: {{shard_size: 100}}
""")
    with pytest.raises(StudyError) as err:
        load_study(study)
    text = str(err.value)
    assert "pretrain.stream" in text and "'panns-logmel'" in text
    assert "tagging.captioner.train.encoder" in text and "did you mean 'cnn14'" in text


def test_captioner_training_resumes_from_its_work_folder(tmp_path) -> None:
    """The captioner trains on the pre-training trainer: a rerun in the same work folder
    resumes from its checkpoint (here: the finished state) and writes the same weights."""
    from harness.tagging.keyword import CHECKPOINT, train_captioner

    g = torch.Generator().manual_seed(0)
    cuts = [{"id": f"c{i}", "custom": {"caption": ["a dog barks", "rain falls", "a bell rings"][i % 3]}}
            for i in range(6)]
    keywords = {f"c{i}": [["dog"], ["rain"], ["bell"]][i % 3] for i in range(6)}
    features = ([c["id"] for c in cuts], [torch.randn(70 + 10 * i, 64, generator=g) for i in range(6)])
    config = {"caption_field": "caption", "max_tokens": 12, "seed": 0, "encoder": {"name": "cnn14", "size": "tiny"},
              "dim": 32, "layers": 1, "dropout": 0.0, "label_smoothing": 0.1, "keyword_dropout": 0.0, "steps": 4,
              "batch_size": 3, "lr": 0.003, "weight_decay": 0.0, "features": {"kind": "panns-logmel"}}
    first = train_captioner(cuts, keywords, config, features, tmp_path, checkpoint_every=2, log=lambda _: None)
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert (first["steps"], first["keywords"], first["captions"]) == (4, 3, 6)
    assert saved["keywords"] == ["bell", "dog", "rain"]
    again = train_captioner(cuts, keywords, config, features, tmp_path, checkpoint_every=2, log=lambda _: None)
    assert again["resumed_from"] == 4
    resaved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    for key, value in saved["state_dict"].items():
        assert torch.equal(value, resaved["state_dict"][key]), key
