"""Language heads trained on a frozen encoder's cached frames, for every encoder.

* **Retrieval probe** (:class:`RetrievalHead`, task kind ``retrieval-probe``): a text tower
  (a local Hugging Face encoder, all-MiniLM-L6-v2 by default) pooled over its valid tokens
  and projected, against the frozen frames mean-pooled over valid frames and projected by a
  Linear-GELU-Linear MLP; both L2-normalised and trained with the symmetric InfoNCE at a fixed
  temperature on the train split's (clip, caption) pairs. The audio encoder never trains.
* **Captioning probe** (:class:`CaptionDecoder`, task kind ``captioning``): a small
  Transformer decoder (pre-LN, learned positions) cross-attends to the frozen frames (a
  linear map to its width), is trained by teacher forcing with cross-entropy on the train
  split's (clip, caption) pairs over a word vocabulary of the train captions, and decodes
  greedily.

Both keep the epoch that scores best on the valid split (mean R@1 of both directions;
the decoder's valid cross-entropy) unless ``select: false``. :func:`run_trained_language_task`
is the probe stage's entry point: it trains on ``train``, selects on ``valid`` and scores
``test`` (:func:`probes.language.retrieval_recalls`; :func:`probes.metrics.caption_scores`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from encoders.base import padding_mask

__all__ = ["RetrievalHead", "CaptionDecoder", "WordVocab", "train_retrieval_head", "train_caption_decoder",
           "greedy_captions", "run_trained_language_task"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def _frames(frames: Sequence[np.ndarray], device) -> tuple[Tensor, Tensor]:
    chunk = [torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in frames]
    lengths = torch.tensor([len(c) for c in chunk], device=device)
    return pad_sequence(chunk, batch_first=True).to(device), lengths


def _batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


# ----------------------------------------------------------------------- retrieval


class RetrievalHead(nn.Module):
    """The trained text side and the audio pooling + projection of the retrieval probe."""

    def __init__(self, encoder_dim: int, text_model: str | None = None, proj_dim: int = 512,
                 text_pooling: str = "mean", train_text: bool = True, temperature: float = 0.07):
        super().__init__()
        from encoders.text import load_text_encoder

        self.text, text_dim = load_text_encoder(text_model)
        self.text.requires_grad_(train_text)
        self.train_text, self.text_pooling = train_text, text_pooling
        self.audio_proj = nn.Sequential(nn.Linear(encoder_dim, encoder_dim), nn.GELU(), nn.Linear(encoder_dim, proj_dim))
        self.text_proj = nn.Linear(text_dim, proj_dim)
        self.scale = 1.0 / temperature

    def embed_audio(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """[B, P] unit-norm embeddings of frames [B, T, D]: mean over valid frames, projected."""
        valid = padding_mask(lengths, frames.shape[1])[..., None]
        pooled = (frames * valid).sum(1) / lengths.clamp(min=1)[:, None]
        return F.normalize(self.audio_proj(pooled), dim=-1)

    def pool_text(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """[B, H] pooled text-tower states of token ids [B, L] (mean over valid tokens, or CLS)."""
        mask = padding_mask(lengths, tokens.shape[1])
        hidden = self.text(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        if self.text_pooling == "cls":
            return hidden[:, 0]
        m = mask[..., None].to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def embed_pooled_text(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.text_proj(pooled), dim=-1)

    def loss(self, audio: Tensor, text: Tensor, clips: Tensor) -> Tensor:
        """Symmetric InfoNCE of row-paired unit embeddings at the fixed temperature; rows of the
        same clip (two of its captions in one batch) are not each other's negatives."""
        logits = self.scale * audio @ text.T
        same = clips[:, None] == clips[None, :]
        logits = logits.masked_fill(same & ~torch.eye(len(clips), dtype=torch.bool, device=clips.device), float("-inf"))
        labels = torch.arange(len(audio), device=audio.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _token_batch(ids: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    chunk = [torch.tensor(t, dtype=torch.long) for t in ids]
    return (pad_sequence(chunk, batch_first=True, padding_value=pad_id).to(device),
            torch.tensor([len(c) for c in chunk], device=device))


class _Texts:
    """Token ids of texts, and (for a frozen tower) their pooled states computed once."""

    def __init__(self, head: RetrievalHead, tokenizer, texts: Sequence[str], max_tokens: int, device):
        self.head, self.pad_id, self.device = head, tokenizer.pad_id, device
        self.ids = tokenizer.encode(list(texts), max_tokens, special=True)
        self.cached: Tensor | None = None
        if not head.train_text:
            with torch.no_grad():
                self.cached = torch.cat([self._pool(range(i, min(i + 256, len(self.ids))))
                                         for i in range(0, len(self.ids), 256)])

    def _pool(self, index) -> Tensor:
        tokens, lengths = _token_batch([self.ids[i] for i in index], self.pad_id, self.device)
        return self.head.pool_text(tokens, lengths)

    def pooled(self, index: Sequence[int]) -> Tensor:
        if self.cached is not None:
            return self.cached[torch.as_tensor(list(index), device=self.cached.device)]
        return self._pool(index)


def _embed_retrieval(head: RetrievalHead, frames, texts: _Texts, device, batch_size: int = 128):
    head.eval()
    with torch.no_grad():
        audio = torch.cat([head.embed_audio(*_frames(frames[i : i + batch_size], device))
                           for i in range(0, len(frames), batch_size)])
        text = torch.cat([head.embed_pooled_text(texts.pooled(range(i, min(i + batch_size, len(texts.ids)))))
                          for i in range(0, len(texts.ids), batch_size)])
    return audio.cpu().numpy(), text.cpu().numpy()


def retrieval_split(frames: Sequence[np.ndarray], captions: Sequence[Sequence[str]]):
    """The captioned clips' frames, their distinct texts and the text-clip relevance."""
    from probes.language import caption_relevance

    keep = [i for i, caps in enumerate(captions) if caps]
    texts, relevant = caption_relevance([captions[i] for i in keep])
    return [frames[i] for i in keep], texts, relevant


def train_retrieval_head(train: tuple[list[np.ndarray], list[list[str]]], valid, test, encoder_dim: int,
                         options: dict[str, Any], seed: int = 0, device: str = "cpu",
                         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the retrieval probe on ``train`` (frames, captions per clip), select the epoch on
    ``valid`` (mean R@1 of both directions), and return the test recalls and the history."""
    from encoders.text import TextTokenizer
    from probes.language import retrieval_recalls

    torch.manual_seed(seed)
    head = RetrievalHead(encoder_dim, options.get("text_model"), options["proj_dim"], options["text_pooling"],
                         options["train_text"], options["temperature"]).to(device)
    tokenizer = TextTokenizer(options.get("text_model"), normalize=options["normalize"])
    frames, captions = train
    pairs = [(c, t) for c, caps in enumerate(captions) for t in caps]
    if len(pairs) < 2:
        raise ValueError("the retrieval probe needs at least 2 captioned train clips")
    train_texts = _Texts(head, tokenizer, [t for _, t in pairs], options["max_tokens"], device)
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options["lr"], weight_decay=options["weight_decay"])
    generator = torch.Generator().manual_seed(seed)

    prepared: dict[int, tuple] = {}  # each split's texts (a frozen tower's pooled states computed once)

    def evaluate(split) -> dict[str, dict[str, float]]:
        if id(split) not in prepared:
            f, texts, relevant = retrieval_split(*split)
            prepared[id(split)] = (f, _Texts(head, tokenizer, texts, options["max_tokens"], device), relevant)
        f, texts, relevant = prepared[id(split)]
        audio, text = _embed_retrieval(head, f, texts, device)
        return retrieval_recalls(audio, text, relevant)

    history, best, best_state = [], -1.0, None
    for epoch in range(options["epochs"]):
        head.train()
        total = 0.0
        for index in _batches(len(pairs), options["batch_size"], generator):
            if len(index) < 2:
                continue  # InfoNCE needs a negative
            clips = [pairs[i][0] for i in index.tolist()]
            audio = head.embed_audio(*_frames([frames[c] for c in clips], device))
            text = head.embed_pooled_text(train_texts.pooled(index.tolist()))
            loss = head.loss(audio, text, torch.tensor(clips, device=device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        entry = {"epoch": epoch + 1, "train_loss": total / len(pairs)}
        if options["select"] and valid is not None:
            recalls = evaluate(valid)
            entry["valid_r1"] = 0.5 * (recalls["text-to-audio"]["recall@1"] + recalls["audio-to-text"]["recall@1"])
            if entry["valid_r1"] > best:
                best, best_state = entry["valid_r1"], copy.deepcopy(head.state_dict())
        history.append(entry)
        log(f"retrieval probe epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
    if best_state is not None:
        head.load_state_dict(best_state)
    chosen = max(history, key=lambda e: e.get("valid_r1", -1.0))["epoch"] if best_state is not None else len(history)
    return {"recalls": evaluate(test), "epoch": chosen, "valid": best if best_state is not None else None,
            "history": history}


# ----------------------------------------------------------------------- captioning


class WordVocab:
    """A word vocabulary of training captions (normalised, split on spaces), with
    ``<pad> <bos> <eos> <unk>`` first; words below ``min_count`` uses read as ``<unk>``."""

    def __init__(self, captions: Sequence[str], normalize: str = "lowercase_no_punct", min_count: int = 1):
        from collections import Counter

        self.normalize = normalize
        counts = Counter(w for c in captions for w in self.words(c))
        self.itos = ["<pad>", "<bos>", "<eos>", "<unk>"] + sorted(w for w, n in counts.items() if n >= min_count)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def words(self, text: str) -> list[str]:
        from encoders.text import normalize_text

        return normalize_text(text, self.normalize).split()

    def encode(self, text: str, max_words: int) -> list[int]:
        return [self.stoi.get(w, UNK) for w in self.words(text)][:max_words]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i >= UNK)

    def __len__(self) -> int:
        return len(self.itos)


class CaptionDecoder(nn.Module):
    """A small Transformer decoder that cross-attends to frozen frames [B, T, D]."""

    def __init__(self, encoder_dim: int, vocab_size: int, dim: int = 256, layers: int = 2, heads: int = 4,
                 dropout: float = 0.1, max_len: int = 64):
        super().__init__()
        self.memory = nn.Sequential(nn.Linear(encoder_dim, dim), nn.LayerNorm(dim))
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.position = nn.Embedding(max_len + 1, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)
        self.max_len = max_len

    def forward(self, frames: Tensor, lengths: Tensor, tokens: Tensor) -> Tensor:
        """Logits [B, L, V] of the next token after each of ``tokens`` [B, L] (BOS first)."""
        memory = self.memory(frames)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)[None]
        causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool, device=tokens.device).triu(1)
        hidden = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True,
                              tgt_key_padding_mask=tokens == PAD,
                              memory_key_padding_mask=~padding_mask(lengths, frames.shape[1]))
        return self.out(self.norm(hidden))


def _caption_batch(ids: Sequence[Sequence[int]], device) -> tuple[Tensor, Tensor]:
    """Decoder input (BOS + words) and target (words + EOS), padded."""
    inputs = pad_sequence([torch.tensor([BOS, *t]) for t in ids], batch_first=True, padding_value=PAD)
    targets = pad_sequence([torch.tensor([*t, EOS]) for t in ids], batch_first=True, padding_value=PAD)
    return inputs.to(device), targets.to(device)


def _caption_loss(model: CaptionDecoder, frames, pairs, vocab_ids, device, label_smoothing: float) -> Tensor:
    f, lengths = _frames([frames[c] for c, _ in pairs], device)
    inputs, targets = _caption_batch([vocab_ids[i] for _, i in pairs], device)
    logits = model(f, lengths, inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD, label_smoothing=label_smoothing)


@torch.no_grad()
def greedy_captions(model: CaptionDecoder, vocab: WordVocab, frames: Sequence[np.ndarray], max_words: int,
                    device: str = "cpu", batch_size: int = 64) -> list[str]:
    """Greedy decoding (arg-max word at each step) until ``<eos>`` or ``max_words`` words."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(frames), batch_size):
        f, lengths = _frames(frames[start : start + batch_size], device)
        tokens = torch.full((len(f), 1), BOS, dtype=torch.long, device=device)
        done = torch.zeros(len(f), dtype=torch.bool, device=device)
        for _ in range(min(max_words, model.max_len - 1) + 1):
            step = model(f, lengths, tokens)[:, -1].argmax(-1)
            step = step.masked_fill(done, PAD)
            tokens = torch.cat([tokens, step[:, None]], dim=1)
            done |= step == EOS
            if bool(done.all()):
                break
        for row in tokens[:, 1:].tolist():
            words = []
            for t in row:
                if t in (EOS, PAD):
                    break
                words.append(t)
            out.append(vocab.decode(words[:max_words]))
    return out


def train_caption_decoder(train: tuple[list[np.ndarray], list[list[str]]], valid, encoder_dim: int,
                          options: dict[str, Any], seed: int = 0, device: str = "cpu",
                          log: Callable[[str], None] = print) -> tuple[CaptionDecoder, WordVocab, dict[str, Any]]:
    """Train the decoder on ``train`` (frames, captions per clip); keep the epoch of lowest
    valid cross-entropy (without label smoothing). Returns the model, its vocabulary and the history."""
    torch.manual_seed(seed)
    frames, captions = train
    texts = [t for caps in captions for t in caps]
    if not texts:
        raise ValueError("the captioning probe needs captioned train clips")
    vocab = WordVocab(texts, options["normalize"], options["min_count"])
    max_words = options["max_tokens"]
    model = CaptionDecoder(encoder_dim, len(vocab), options["dim"], options["layers"], options["heads"],
                           options["dropout"], max_len=max_words + 1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options["lr"], weight_decay=options["weight_decay"])
    generator = torch.Generator().manual_seed(seed)

    train_ids = [vocab.encode(t, max_words) for t in texts]
    valid_pairs, valid_ids = [], []
    if valid is not None and options["select"]:
        v_texts = [t for caps in valid[1] for t in caps]
        valid_ids = [vocab.encode(t, max_words) for t in v_texts]
        flat = 0
        for c, caps in enumerate(valid[1]):
            for _ in caps:
                valid_pairs.append((c, flat))
                flat += 1
    train_flat = []
    flat = 0
    for c, caps in enumerate(captions):
        for _ in caps:
            train_flat.append((c, flat))
            flat += 1
    history, best, best_state = [], float("inf"), None
    for epoch in range(options["epochs"]):
        model.train()
        total = 0.0
        for index in _batches(len(train_flat), options["batch_size"], generator):
            loss = _caption_loss(model, frames, [train_flat[i] for i in index.tolist()], train_ids, device,
                                 options["label_smoothing"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        entry = {"epoch": epoch + 1, "train_loss": total / len(train_flat)}
        if valid_pairs:
            model.eval()
            with torch.no_grad():
                losses = [float(_caption_loss(model, valid[0], valid_pairs[i : i + 128], valid_ids, device, 0.0))
                          * len(valid_pairs[i : i + 128]) for i in range(0, len(valid_pairs), 128)]
            entry["valid_loss"] = sum(losses) / len(valid_pairs)
            if entry["valid_loss"] < best:
                best, best_state = entry["valid_loss"], copy.deepcopy(model.state_dict())
        history.append(entry)
        log(f"captioning probe epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "epoch"))
    chosen = len(history)
    if best_state is not None:
        model.load_state_dict(best_state)
        chosen = min(history, key=lambda e: e["valid_loss"])["epoch"]
    return model, vocab, {"epoch": chosen, "valid_loss": best if best_state is not None else None,
                          "history": history, "vocab_size": len(vocab)}


# ----------------------------------------------------------------------- the stage


def run_trained_language_task(ctx, task: dict, cache: Path, clips: list[dict],
                              captions_of: Callable[[list[dict], Path], list[list[str]]]) -> dict[str, Any]:
    """Train the task's head on the train split's frozen frames, select on valid, score test."""
    from probes.embed import load_shards

    options, splits = task["head"], task["splits"]
    embeddings = load_shards(cache)
    meta = json.loads((cache / "meta.json").read_text())
    captions = captions_of(clips, cache)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    seed = int(ctx.config.get("seed", 0))

    def part(name: str, need: bool = True):
        idx = [i for i, c in enumerate(clips) if c["split"] == splits[name] and captions[i]]
        if not idx:
            if need:
                raise ValueError(f"task {task['name']}: split {name!r} ({splits[name]!r}) has no captioned clip")
            return None, []
        return ([embeddings[i] for i in idx], [captions[i] for i in idx]), idx

    train, _ = part("train")
    valid, _ = part("valid", need=False)
    test, test_idx = part("test")
    common = {"n_train": len(train[0]), "n_valid": len(valid[0]) if valid else 0, "n_test": len(test_idx),
              "n_folds": 1, "head_options": options}
    if task["kind"] == "retrieval-probe":
        result = train_retrieval_head(train, valid, test, meta["dim"], options, seed, device, ctx.log)
        recalls = {f"trained-{d}": r for d, r in result["recalls"].items()}
        metric = task["metric"] if task["metric"].startswith("recall@") else "recall@1"
        out = {"metric": metric, "test": recalls["trained-text-to-audio"][metric], "recalls": recalls,
               "n_captions": sum(len(c) for c in test[1]), "epoch": result["epoch"], "valid": result["valid"],
               "history": result["history"], **common}
        ctx.log(f"{task['name']}: " + "; ".join(
            f"{d} " + " ".join(f"{m} {v:.4f}" for m, v in r.items()) for d, r in recalls.items()))
        return out
    from probes.metrics import caption_scores

    model, vocab, info = train_caption_decoder(train, valid, meta["dim"], options, seed, device, ctx.log)
    generated = greedy_captions(model, vocab, test[0], options["max_words"], device)
    scores, omitted = caption_scores(test[1], generated)
    ids = [clips[i]["id"] for i in test_idx]
    with open(ctx.workdir / "captions.jsonl", "w") as f:  # for reading, beside the scores
        for clip_id, text, refs in zip(ids, generated, test[1]):
            f.write(json.dumps({"id": clip_id, "caption": text, "references": refs}) + "\n")
    metric = task["metric"] if task["metric"] in scores else "cider_d"
    out = {"metric": metric, "test": scores[metric], "scores": {"greedy": scores}, "omitted": omitted,
           "decoding": "greedy", **info, **common}
    ctx.log(f"{task['name']}: greedy " + " ".join(f"{m} {v:.4f}" for m, v in scores.items())
            + (f" (left out: {', '.join(omitted)})" if omitted else ""))
    return out
