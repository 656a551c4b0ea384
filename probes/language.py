"""Language-aligned evaluation of audio-text (contrastive) encoders: retrieval and zero-shot.

Nothing is trained. The pre-training run's own audio projection and text tower
(``encoders.checkpoint.load_language_side``) embed the clips (their cached last-layer
frames, mean-pooled over valid frames, projected, L2-normalised) and texts into one space,
and cosine similarity ranks them.

* **Retrieval** (``kind: retrieval``; AudioCaps, Clotho, MusicCaps), on the test split.
  Text -> audio: every distinct caption is one query, and every clip carrying it is
  relevant (a hit when any of them is in the top k). Audio -> text: every clip is a query
  and each of its captions is relevant (a hit when any of them is in the top k). R@1, R@5
  and R@10 in both directions.
* **Zero-shot classification** (``kind: zero-shot``, any labelled task): each class name
  becomes a prompt, the task's ``prompt:`` template (default :data:`PROMPT`,
  ``"the sound of {label}"``) with the class name, underscores read as spaces, for ``{label}``, and a clip's
  class scores are its similarities to the prompts; ``metric: accuracy`` takes the arg-max
  over ``label``, ``metric: map`` scores ``labels`` with macro mAP. On the test split, or,
  for a task with ``folds:``, on every fold in turn with the mean over folds reported.

An encoder whose pre-training objective has no text side (MTC, PAR, captioning, the
random baseline, ...) gets a record with ``status: "not applicable"`` and its reason,
and no row in the results table. So does a study whose probes read a layer other than the
last (``layer: -1``), since the projection was trained on the last layer's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from probes.metrics import METRICS, recall_at_k

__all__ = ["PROMPT", "RETRIEVAL_KS", "retrieval_recalls", "caption_relevance", "zero_shot_scores",
           "run_language_task"]

PROMPT = "the sound of {label}"
RETRIEVAL_KS = (1, 5, 10)
NOT_APPLICABLE = "not applicable"


# ------------------------------------------------------------------------- scoring


def caption_relevance(captions: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray]:
    """Distinct caption texts (first-seen order) and the ``[n_texts, n_clips]`` relevance of
    each to each clip: a text is relevant to every clip that carries it."""
    texts: dict[str, int] = {}
    pairs = []
    for clip, caps in enumerate(captions):
        for cap in caps:
            pairs.append((texts.setdefault(cap.strip(), len(texts)), clip))
    relevant = np.zeros((len(texts), len(captions)), dtype=bool)
    for t, c in pairs:
        relevant[t, c] = True
    return list(texts), relevant


def retrieval_recalls(audio: np.ndarray, text: np.ndarray, relevant: np.ndarray,
                      ks: Sequence[int] = RETRIEVAL_KS) -> dict[str, dict[str, float]]:
    """R@k in both directions from embeddings ``audio [N, P]``, ``text [M, P]`` and the
    ``[M, N]`` text-clip relevance: ``{"text-to-audio": {"recall@1": ...}, "audio-to-text": {...}}``.

    Clips without a caption are left out of audio -> text (they have nothing to find).
    """
    similarity = np.asarray(text, dtype=np.float64) @ np.asarray(audio, dtype=np.float64).T  # [M, N]
    relevant = np.asarray(relevant, dtype=bool)
    captioned = relevant.any(axis=0)
    return {
        "text-to-audio": {f"recall@{k}": recall_at_k(relevant, similarity, k) for k in ks},
        "audio-to-text": {f"recall@{k}": recall_at_k(relevant.T[captioned], similarity.T[captioned], k) for k in ks},
    }


def zero_shot_scores(audio: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Class scores ``[N, C]``: cosine similarity of each clip to each class prompt."""
    return np.asarray(audio, dtype=np.float64) @ np.asarray(prompts, dtype=np.float64).T


def prompt_for(label: str, template: str = PROMPT) -> str:
    """The zero-shot prompt of class ``label``: ``template`` with the class name (underscores
    read as spaces) for ``{label}``."""
    return template.replace("{label}", str(label).replace("_", " ").strip())


# ------------------------------------------------------------------------ embedding


def embed_audio(module, frames: Sequence[np.ndarray], batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """The module's normalised audio embeddings ``[N, P]`` of frame-level ``[T_i, D]`` arrays."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    out = []
    with torch.no_grad():
        for start in range(0, len(frames), batch_size):
            chunk = [torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in frames[start : start + batch_size]]
            lengths = torch.tensor([len(c) for c in chunk], device=device)
            padded = pad_sequence(chunk, batch_first=True).to(device)
            out.append(module.embed_audio(padded, lengths).float().cpu().numpy())
    return np.concatenate(out)


def embed_texts(module, tokenizer, texts: Sequence[str], max_tokens: int, batch_size: int = 128,
                device: str = "cpu") -> np.ndarray:
    """The module's normalised text embeddings ``[M, P]``."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    ids = tokenizer.encode(list(texts), max_tokens, special=True)
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = [torch.tensor(t, dtype=torch.long) for t in ids[start : start + batch_size]]
            lengths = torch.tensor([len(c) for c in chunk], device=device)
            tokens = pad_sequence(chunk, batch_first=True, padding_value=tokenizer.pad_id).to(device)
            out.append(module.embed_text(tokens, lengths).float().cpu().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------- the stage


def _not_applicable(task: dict, reason: str) -> dict[str, Any]:
    return {"status": NOT_APPLICABLE, "reason": reason, "metric": task["metric"], "kind": task["kind"],
            "n_test": 0}


def _pretrain_dir(ctx, pointer: dict) -> Path:
    """The pre-training run folder behind the embeddings (recorded by the embed stage; for
    an embed job written before that, its input's folder in the same store)."""
    if pointer.get("pretrain"):
        return Path(pointer["pretrain"])
    embed = ctx.inputs["embed"]
    return embed.path.parent.parent / embed.record["inputs"]["pretrain"]


def _run_record(run_dir: Path) -> dict[str, Any]:
    """The completion record of the pre-training run folder (``{}`` where it has none)."""
    from harness.store import RECORD

    path = run_dir / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def clip_captions(clips: list[dict], cache: Path) -> list[list[str]]:
    """Each clip's captions: from ``clips.json``, or the manifest for older caches."""
    if all("captions" in c for c in clips):
        return [list(c.get("captions") or []) for c in clips]
    from harness.manifest_io import iter_cut_dicts

    manifest = json.loads((cache / "meta.json").read_text())["manifest"]
    by_id = {c["id"]: (c.get("custom") or {}).get("captions") or [] for c in iter_cut_dicts(Path(manifest))}
    return [list(by_id.get(c["id"], [])) for c in clips]


def run_language_task(ctx, task: dict, pointer: dict, cache: Path, clips: list[dict]) -> dict[str, Any]:
    """Score a retrieval or zero-shot task with the pre-training run's audio-text model."""
    import torch

    from encoders.checkpoint import load_language_side
    from encoders.text import TextTokenizer
    from probes.embed import load_shards

    embed_record = ctx.inputs["embed"].record
    layer = (embed_record.get("config") or {}).get("layer", -1)
    run_dir = _pretrain_dir(ctx, pointer)
    run_record = _run_record(run_dir)
    objective = (run_record.get("config") or {}).get("objective") or {}
    meta = json.loads((cache / "meta.json").read_text())
    if layer != -1:
        out = _not_applicable(task, f"{task['kind']} uses the audio projection trained on the last layer; "
                                    f"the probes read layer {layer}")
        ctx.log(f"{task['name']}: not applicable: {out['reason']}")
        return out
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_language_side(run_dir, objective, meta["dim"], map_location=device)
    if loaded is None:
        out = _not_applicable(task, f"the encoder's pre-training objective ({objective.get('name', '?')!r}) has no "
                                    "text side; retrieval and zero-shot need an audio-text (contrastive) encoder")
        ctx.log(f"{task['name']}: not applicable: {out['reason']}")
        return out
    module, info = loaded
    module.to(device)
    # The run's own text preprocessing (e.g. the authors' lowercasing and punctuation stripping).
    tokenizer = TextTokenizer(info["options"].get("text_model"), normalize=info["options"].get("normalize", "none"))
    max_tokens = int(info["options"].get("max_tokens", 64))
    embeddings = load_shards(cache)

    if task["kind"] == "retrieval":
        test = [i for i, c in enumerate(clips) if c["split"] == task["splits"]["test"]]
        captions = clip_captions([clips[i] for i in test], cache)
        keep = [i for i, caps in zip(test, captions) if caps]
        if not keep:
            raise ValueError(f"task {task['name']}: no test clip has a caption")
        texts, relevant = caption_relevance([c for c in captions if c])
        audio = embed_audio(module, [embeddings[i] for i in keep], device=device)
        text = embed_texts(module, tokenizer, texts, max_tokens, device=device)
        recalls = retrieval_recalls(audio, text, relevant)
        metric = task["metric"] if task["metric"].startswith("recall@") else "recall@1"
        out = {"metric": metric, "test": recalls["text-to-audio"][metric], "recalls": recalls,
               "n_test": len(keep), "n_captions": len(texts), "n_folds": 1}
        ctx.log(f"{task['name']}: " + "; ".join(
            f"{d} " + " ".join(f"{m} {v:.4f}" for m, v in r.items()) for d, r in recalls.items()))
        return out

    # zero-shot
    multilabel = task["metric"] == "map"
    if multilabel:
        classes = sorted({x for c in clips for x in (c.get("labels") or [])})
        index = {c: j for j, c in enumerate(classes)}
        labels = np.zeros((len(clips), len(classes)), dtype=np.float32)
        for row, c in enumerate(clips):
            labels[row, [index[x] for x in c.get("labels") or []]] = 1.0
    else:
        classes = sorted({c["label"] for c in clips if c.get("label") is not None})
        index = {c: j for j, c in enumerate(classes)}
        labels = np.array([index.get(c.get("label"), -1) for c in clips])
    metric = "map" if multilabel else "accuracy"
    if task.get("folds"):
        from probes.folds import fold_plan

        parts = [(f.fold, f.test) for f in fold_plan([c.get("fold") for c in clips], task["folds"])]
    else:
        parts = [(None, np.flatnonzero([c["split"] == task["splits"]["test"] for c in clips]))]
    template = task.get("prompt") or PROMPT
    prompts = embed_texts(module, tokenizer, [prompt_for(c, template) for c in classes], max_tokens, device=device)
    score = METRICS[metric]
    folds, all_scores, all_index = [], [], []
    for fold, idx in parts:
        if not multilabel:
            idx = idx[labels[idx] >= 0]
        scores = zero_shot_scores(embed_audio(module, [embeddings[i] for i in idx], device=device), prompts)
        folds.append({"fold": fold, "valid": None, "test": score(labels[idx], scores), "n_test": len(idx)})
        all_scores.append(scores)
        all_index.append(idx)
    test = float(np.mean([f["test"] for f in folds]))
    test_index = np.concatenate(all_index)
    np.savez(ctx.workdir / "predictions.npz", labels=labels[test_index], **{"zero-shot": np.concatenate(all_scores)})
    out = {"metric": metric, "test": test, "valid": None, "n_test": int(len(test_index)),
           "num_classes": len(classes), "n_folds": len(folds), "prompt": template, "classes": classes,
           "groups": {"zero-shot": {"head": "zero-shot", "pooling": "mean", "test": test, "valid": None,
                                    "folds": folds}}}
    if task.get("folds"):
        out["fold_values"] = [f["test"] for f in folds]
    ctx.log(f"{task['name']}: zero-shot {metric} {test:.4f} over {len(classes)} classes"
            + (f" (mean of {len(folds)} folds)" if task.get("folds") else ""))
    return out
