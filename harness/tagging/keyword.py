"""BLAT's keyword-conditioned captioner: trained on captioned clips with their AudioSet tags
as keywords, then used to caption a pre-training pool given each clip's tags.

BLAT (arXiv 2303.07902) generates its pre-training captions with the authors' captioner
conditioned on AudioSet tags (wsntxxn/AudioCaption: ``captioning/datasets/keyword_dataset.py``,
``KeywordProbTransformerDecoder``): a multi-hot vector over the keyword vocabulary is
projected and added to every word embedding of a Transformer caption decoder that attends to
the audio. Here that is two graph nodes:

- the ``captioner`` stage (``harness/stages/captioner.py``) trains an audio encoder of the
  registry (``train.encoder``, default CNN14 on its log-mel front end) and the decoder
  (:mod:`harness.tagging._keyword_model`) on ``train.source``'s clips, one sample per
  (clip, caption), through the pre-training trainer, so it checkpoints and resumes as
  pre-training does, and its node is keyed by content like every other;
- the ``keyword`` captioner backend (this file) captions every clip of the pool from the
  trained model given the clip's tags in ``field`` (greedy decoding). The decoder's
  vocabulary is the tokens (all-MiniLM-L6-v2's WordPiece) of the training captions. A clip none of whose
  tags is in the keyword vocabulary is counted as ``missing`` and gets no caption.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from harness.registry import Component

COMPONENT = Component(
    kind="captioner", name="keyword", target="caption_with_model", version="1",
    versions_of=("harness.tagging._keyword_model",),
    doc="BLAT's keyword-conditioned captioner, trained on captioned clips with their tags (a captioner node)",
    meta={"reads": ["field", "train"], "requires": ["field", "train"]},
)

CHECKPOINT = "captioner.pt"


def keyword_vector(tags: list[str], index: dict[str, int]) -> list[float]:
    """The multi-hot vector of ``tags`` over the keyword vocabulary (unknown tags left out)."""
    vec = [0.0] * len(index)
    for tag in tags:
        if tag in index:
            vec[index[tag]] = 1.0
    return vec


def clip_captions(cut: dict[str, Any], field_name: str) -> list[str]:
    """The captions a cut carries in ``custom[field_name]`` (a list or one string)."""
    value = (cut.get("custom") or {}).get(field_name)
    values = [value] if isinstance(value, str) else list(value or [])
    return [str(v).strip() for v in values if str(v).strip()]


def train_captioner(cuts: list[dict[str, Any]], keywords_of: dict[str, list[str]], config: dict[str, Any],
                    features: tuple[list[str], list[Any]], workdir, checkpoint_every: int = 100,
                    num_threads: int | None = None, progress: bool = False, log=print) -> dict[str, Any]:
    """Train the encoder and the keyword-conditioned decoder on ``cuts`` (their captions in
    ``config["caption_field"]``, their keywords in ``keywords_of``), resuming from
    ``workdir/train_state.pt``; write ``workdir/captioner.pt``. ``features``: (ids, [T, F])."""
    import torch

    from encoders import build_encoder
    from encoders.checkpoint import atomic_save
    from encoders.text import TextTokenizer
    from encoders.trainer import TrainConfig, train
    from harness.tagging._keyword_model import KeywordCaptioner

    vocab = sorted({k for tags in keywords_of.values() for k in tags})
    index = {k: i for i, k in enumerate(vocab)}
    row_of = {clip: i for i, clip in enumerate(features[0])}
    tok = TextTokenizer(None)
    max_tokens = config["max_tokens"]
    rows, texts, kws = [], [], []
    for cut in cuts:
        if cut["id"] not in row_of:
            continue
        for caption in clip_captions(cut, config["caption_field"]):
            rows.append(row_of[cut["id"]])
            texts.append(caption)
            kws.append(keyword_vector(keywords_of.get(cut["id"], []), index))
    if not rows or not vocab:
        raise ValueError(f"no clip of the training source has both a caption in {config['caption_field']!r} "
                         f"and keywords (found {len(rows)} captions, {len(vocab)} keywords)")
    sequences = [[tok.bos_id] + ids + [tok.eos_id] for ids in tok.encode(texts, max_tokens - 2, special=False)]
    # The decoder's vocabulary: the tokens of the training captions (as the authors' word
    # vocabulary is built from theirs), mapped back to the tokenizer's ids to decode.
    token_ids = sorted({i for seq in sequences for i in seq} | {tok.pad_id})
    compact = {tid: j for j, tid in enumerate(token_ids)}
    tokens = [torch.tensor([compact[i] for i in seq]) for seq in sequences]
    log(f"keyword captioner: {len(rows)} captions of {len(set(rows))} clips, {len(vocab)} keywords")
    torch.manual_seed(config["seed"])
    encoder = build_encoder(config["encoder"]["name"], size=config["encoder"]["size"])
    model_cfg = {"num_keywords": len(vocab), "num_embeddings": len(token_ids), "bos_id": compact[tok.bos_id],
                 "eos_id": compact[tok.eos_id], "pad_id": compact[tok.pad_id], "dim": config["dim"],
                 "layers": config["layers"],
                 "dropout": config["dropout"], "label_smoothing": config["label_smoothing"],
                 "keyword_dropout": config["keyword_dropout"], "max_tokens": max_tokens}
    captioner = KeywordCaptioner(encoder.dim, **model_cfg)
    train_cfg = TrainConfig(steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"],
                            weight_decay=config["weight_decay"], seed=config["seed"], specaugment=None,
                            checkpoint_every=checkpoint_every, num_threads=num_threads)
    summary = train(encoder, captioner, [features[1][r] for r in rows],
                    {"tokens": tokens, "keywords": torch.tensor(kws)}, train_cfg, workdir, progress=progress)
    atomic_save({"encoder": {"name": config["encoder"]["name"], "config": {"size": config["encoder"]["size"]}},
                 "encoder_state": encoder.state_dict(), "model": model_cfg, "state_dict": captioner.state_dict(),
                 "keywords": vocab, "token_ids": token_ids, "features": config["features"]}, workdir / CHECKPOINT)
    return {**summary, "captions": len(rows), "clips": len(set(rows)), "keywords": len(vocab),
            "tokens": len(token_ids)}


def caption_with_model(cuts: Iterable[dict[str, Any]], config: dict[str, Any], model_dir, batch_size: int = 32):
    """``(clip id -> caption, CaptionReport)``: every cut captioned by the trained model of
    ``model_dir`` given its tags in ``config["field"]``, greedily."""
    import torch
    from lhotse.cut import MonoCut

    from encoders import build_encoder
    from encoders.features import extract
    from encoders.text import TextTokenizer
    from encoders.trainer import collate
    from harness.tagging._keyword_model import KeywordCaptioner
    from harness.tagging.captioners import CaptionReport, clip_tags

    ckpt = torch.load(model_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    encoder = build_encoder(ckpt["encoder"]["name"], **ckpt["encoder"]["config"])
    encoder.load_state_dict(ckpt["encoder_state"])
    model = KeywordCaptioner(encoder.dim, **ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    encoder.eval()
    model.eval()
    index = {k: i for i, k in enumerate(ckpt["keywords"])}
    tok = TextTokenizer(None)
    report, captions = CaptionReport(), {}
    pending: list[tuple[str, Any, list[float]]] = []

    def flush() -> None:
        feats, lengths = collate([p[1] for p in pending], range(len(pending)))
        with torch.no_grad():
            frames, out_lengths = encoder(feats, lengths)
            ids = model.greedy(torch.tensor([p[2] for p in pending]), frames, out_lengths)
        for (clip, _, _), seq in zip(pending, ids):
            text = tok.decode([ckpt["token_ids"][i] for i in seq]).strip()
            if text:
                captions[clip] = text
                report.captioned += 1
            else:
                report.empty += 1
        pending.clear()

    for cut in cuts:
        report.total += 1
        vec = keyword_vector(clip_tags(cut, config["field"]), index)
        if not any(vec):
            report.missing += 1
            continue
        try:
            clip = MonoCut.from_dict(copy.deepcopy(cut))  # from_dict pops keys
            audio = clip.load_audio()
        except Exception:  # noqa: BLE001 - corrupt or missing audio is counted, never fatal
            report.unreadable += 1
            report.unreadable_ids.append(cut["id"])
            continue
        wave = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
        pending.append((cut["id"], extract(wave, int(clip.sampling_rate), ckpt["features"]), vec))
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return captions, report
