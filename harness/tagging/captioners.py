"""Captioners: every clip of a source -> one caption.

Three backends behind one call, :func:`caption_cuts`:

- ``manifest``: the caption the source already has, in a ``custom`` field of its cuts.
- ``template``: a caption written from a list of tags the clip carries (the mini suite's
  ``events``), with one of a few templates chosen by a hash of the clip id. Offline and
  deterministic; the tag-guided captions of BLAT in miniature.
- ``openai`` with ``field`` (tag-guided, as BLAT): the prompt also names the tags or labels
  the clip already has in that field (AudioSet labels, UTS ``audio_tag``), so the model
  describes the audio it hears under the guidance of its labels; the cache key holds the
  prompt actually sent, tags included.
- ``openai``: an OpenAI-compatible chat-completions server with audio input, as vLLM
  serves Qwen3-Omni-30B-A3B-Captioner (the UTS captioner). Each clip is decoded (Lhotse,
  resampled to 16 kHz mono), sent as a WAV, and the reply is the caption. Requests go in
  batches with bounded concurrency, timeouts and retries (:class:`OpenAIChatClient`),
  and every reply is appended to a resumable cache keyed by the sha256 of the audio sent
  plus the model, prompt and sampling parameters: a rerun sends only what is missing.

Failures never stop a batch and never pass silently: unreadable audio, failed requests
and empty replies are counted in a :class:`CaptionReport`, and the clip gets no caption.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.registry import Component

CAPTIONER_VERSION = "1"

# The backends. ``meta.reads``: the keys of a ``tagging.captioner`` block the backend reads
# (any other is a plan-time error); ``meta.requires``: those it cannot do without.
COMPONENTS = [
    Component(kind="captioner", name="manifest", target="caption_cuts", version="-",
              doc="the caption a source already has (a manifest field)", meta={"reads": ["field"]}),
    Component(kind="captioner", name="template", target="caption_cuts",
              versions_of=("harness.tagging.captioners",),
              doc="captions written from a tag or label field by templates (offline, no model)",
              meta={"reads": ["field", "seed"]}),
    Component(kind="captioner", name="openai", target="caption_cuts",
              versions_of=("harness.tagging.captioners", "harness.tagging.llm"),
              doc="an audio captioner behind an OpenAI-compatible endpoint (UTS: Qwen3-Omni-Captioner)",
              meta={"reads": ["model", "prompt", "temperature", "top_p", "max_tokens", "audio_format", "sample_rate",
                              "field", "base_url", "api_key_env", "concurrency", "timeout", "max_retries",
                              "batch_size"],
                    "requires": ["model", "base_url"]}),
]

# Qwen3-Omni-30B-A3B-Captioner takes audio only, with no text prompt; general omni models
# (gpt-4o-audio, Qwen2.5-Omni) need an instruction, given with ``prompt``.
DEFAULT_CAPTION_PROMPT: str | None = None
# BLAT (arXiv 2303.07902) captions audio under the guidance of its AudioSet labels. ``{tags}``
# is replaced by the clip's tags ("rain, dog and bell"); a prompt without ``{tags}`` gets
# the tag line appended.
DEFAULT_GUIDED_PROMPT = ("This audio clip is labelled with these sound events: {tags}. Listen to it and describe "
                         "what you hear in one or two sentences, using the labels as a guide: mention the labelled "
                         "sounds you can hear and how they occur, and do not mention sounds you cannot hear.")
CAPTIONER_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 1024}  # UTS: 0.6–0.8, 0.9–0.95

TEMPLATES = (
    "The sound of {tags}.",
    "A recording of {tags}.",
    "{Tags} can be heard.",
    "An audio clip with {tags}.",
    "You can hear {tags}.",
)


@dataclass
class CaptionReport:
    """What happened to every clip of a captioning run."""

    total: int = 0
    captioned: int = 0
    missing: int = 0  # no caption: no field / no tags (manifest, template, tag-guided openai)
    unreadable: int = 0  # audio that could not be decoded (openai)
    request_errors: int = 0
    empty: int = 0  # the model answered with nothing
    cache_hits: int = 0
    requested: int = 0
    errors: Counter = field(default_factory=Counter)
    unreadable_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("total", "captioned", "missing", "unreadable", "request_errors",
                                              "empty", "cache_hits", "requested")}
        out["errors"] = dict(sorted(self.errors.items()))
        out["unreadable_ids"] = self.unreadable_ids[:50]
        return out


def join_tags(tags: list[str]) -> str:
    """``["rain", "dog", "bell"]`` -> ``"rain, dog and bell"``."""
    if len(tags) <= 1:
        return "".join(tags)
    return ", ".join(tags[:-1]) + " and " + tags[-1]


def template_caption(clip_id: str, tags: list[str], seed: int = 0, templates: tuple[str, ...] = TEMPLATES) -> str:
    """A caption for ``tags`` from the template that a hash of ``(seed, clip_id)`` picks."""
    pick = int.from_bytes(hashlib.sha256(f"{seed}\0{clip_id}".encode()).digest()[:4], "little")
    text = join_tags([str(t).replace("_", " ") for t in tags])
    template = templates[pick % len(templates)]
    return template.format(tags=text, Tags=text[:1].upper() + text[1:])


def clip_tags(cut: dict[str, Any], field_name: str) -> list[str]:
    """The tags or labels a cut carries in ``custom[field_name]`` (a list, or a comma-separated
    string), stripped, in order, without repeats."""
    value = (cut.get("custom") or {}).get(field_name)
    if isinstance(value, str):
        value = value.split(",")
    return list(dict.fromkeys(str(t).strip().replace("_", " ") for t in value or [] if str(t).strip()))


def guided_prompt(prompt: str | None, tags: list[str]) -> str:
    """The text prompt of a tag-guided request: ``prompt`` (default: BLAT's instruction) with
    the clip's tags in place of ``{tags}``, or appended when it has no ``{tags}``."""
    text = prompt or DEFAULT_GUIDED_PROMPT
    joined = join_tags(tags)
    return text.replace("{tags}", joined) if "{tags}" in text else f"{text}\nLabels: {joined}."


def wav_bytes(cut: dict[str, Any], sample_rate: int = 16000) -> bytes:
    """The audio of a cut (a Lhotse cut dict), decoded, resampled, mono, as 16-bit WAV bytes."""
    import numpy as np
    import soundfile as sf
    from lhotse.cut import MonoCut

    audio = MonoCut.from_dict(copy.deepcopy(cut)).resample(sample_rate).load_audio()  # from_dict pops keys
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class OpenAICaptioner:
    """Clips -> captions through an :class:`~harness.tagging.llm.OpenAIChatClient` with audio input."""

    def __init__(self, client: Any, cache_path: Any, prompt: str | None = DEFAULT_CAPTION_PROMPT,
                 audio_format: str = "input_audio", sample_rate: int = 16000, batch_size: int = 64,
                 guide_field: str | None = None):
        from harness.tagging.llm import ResponseCache

        if audio_format not in ("input_audio", "audio_url"):
            raise ValueError(f"audio_format: expected 'input_audio' or 'audio_url', found {audio_format!r}")
        self.client = client
        self.cache = ResponseCache(cache_path)
        self.prompt = prompt
        self.audio_format = audio_format
        self.sample_rate = int(sample_rate)
        self.batch_size = max(1, int(batch_size))
        self.guide_field = guide_field  # tag-guided (BLAT): the custom field whose tags go in the prompt

    def prompt_for(self, tags: list[str] | None = None) -> str | None:
        """The text prompt sent with a clip: the tag-guided one when guided, else ``prompt``."""
        return guided_prompt(self.prompt, tags or []) if self.guide_field else self.prompt

    def key(self, audio_sha256: str, tags: list[str] | None = None) -> str:
        """Cache key: model, the prompt actually sent (with its tags when guided), sampling, audio."""
        entry = {"model": self.client.model, "prompt": self.prompt_for(tags), "sampling": self.client.sampling,
                 "sample_rate": self.sample_rate, "audio": audio_sha256}
        if self.guide_field:
            entry["tags"] = list(tags or [])
        blob = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def messages(self, wav: bytes, prompt: str | None = None) -> list[dict[str, Any]]:
        data = base64.b64encode(wav).decode("ascii")
        if self.audio_format == "input_audio":
            part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
        else:
            part = {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{data}"}}
        content: list[dict[str, Any]] = [part]
        prompt = self.prompt if prompt is None else prompt
        if prompt:
            content.insert(0, {"type": "text", "text": prompt})
        return [{"role": "user", "content": content}]

    def caption(self, cuts: Iterable[dict[str, Any]], progress: bool = False) -> tuple[dict[str, str], CaptionReport]:
        """``(clip id -> caption, report)``, batch by batch; audio is held one batch at a time."""
        from harness.tagging.llm import run_requests

        report = CaptionReport()
        captions: dict[str, str] = {}
        cached = self.cache.read()
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            requests: dict[str, tuple[str, bytes, list[str]]] = {}
            ids_by_key: dict[str, list[str]] = {}
            for cut in batch:
                tags = clip_tags(cut, self.guide_field) if self.guide_field else []
                if self.guide_field and not tags:  # nothing to guide the caption: counted, not sent
                    report.missing += 1
                    continue
                try:
                    wav = wav_bytes(cut, self.sample_rate)
                except Exception:  # noqa: BLE001 - corrupt or missing audio is counted, never fatal
                    report.unreadable += 1
                    report.unreadable_ids.append(cut["id"])
                    continue
                k = self.key(hashlib.sha256(wav).hexdigest(), tags)
                ids_by_key.setdefault(k, []).append(cut["id"])
                requests.setdefault(k, (cut["id"], wav, tags))
            report.cache_hits += sum(k in cached for k in requests)
            report.requested += sum(k not in cached for k in requests)
            answers, errors = run_requests(
                self.client, requests, self.cache,
                make_messages=lambda item: self.messages(item[1], self.prompt_for(item[2])),
                record=lambda key, item: {"id": item[0], "captioner": CAPTIONER_VERSION,
                                          **({"tags": item[2]} if self.guide_field else {})},
                progress=progress, label="caption clips",
            )
            cached.update(answers)
            for k, ids in ids_by_key.items():
                for clip_id in ids:
                    if k in errors:
                        report.request_errors += 1
                        report.errors[errors[k]] += 1
                    elif not answers[k].strip():
                        report.empty += 1
                    else:
                        captions[clip_id] = answers[k].strip()
                        report.captioned += 1
            batch.clear()

        for cut in cuts:
            report.total += 1
            batch.append(cut)
            if len(batch) >= self.batch_size:
                flush()
        if batch:
            flush()
        return captions, report


def caption_cuts(cuts: Iterable[dict[str, Any]], config: dict[str, Any], runtime: dict[str, Any] | None = None,
                 cache_dir: Any = None, progress: bool = False) -> tuple[dict[str, str], CaptionReport]:
    """Caption every cut with the backend that ``config["backend"]`` names.

    ``config`` is a study's ``tagging.captioner`` block (the settings that decide the
    output); ``runtime`` holds the ones that do not (server URL, key variable,
    concurrency, timeouts, batch size).
    """
    runtime = runtime or {}
    backend = config["backend"]
    if backend in ("manifest", "template"):
        report = CaptionReport()
        captions: dict[str, str] = {}
        field_name = config["field"]
        for cut in cuts:
            report.total += 1
            value = (cut.get("custom") or {}).get(field_name)
            if backend == "template":
                tags = [value] if isinstance(value, str) else list(value or [])
                value = template_caption(cut["id"], tags, seed=config.get("seed", 0)) if tags else None
            if not value:
                report.missing += 1
                continue
            captions[cut["id"]] = str(value)
            report.captioned += 1
        return captions, report
    if backend == "openai":
        from pathlib import Path

        from harness.tagging.llm import OpenAIChatClient

        client = OpenAIChatClient(
            runtime.get("base_url") or config["base_url"], config["model"],
            api_key_env=runtime.get("api_key_env", "OPENAI_API_KEY"),
            timeout=runtime.get("timeout", 120), max_retries=runtime.get("max_retries", 5),
            concurrency=runtime.get("concurrency", 8),
            **{k: config.get(k) if config.get(k) is not None else v for k, v in CAPTIONER_SAMPLING.items()},
        )
        captioner = OpenAICaptioner(client, Path(cache_dir) / "llm" / "captions.jsonl", prompt=config.get("prompt"),
                                    audio_format=config.get("audio_format", "input_audio"),
                                    sample_rate=config.get("sample_rate", 16000),
                                    batch_size=runtime.get("batch_size", 64), guide_field=config.get("field"))
        return captioner.caption(cuts, progress=progress)
    raise ValueError(f"unknown captioner backend {backend!r}; expected manifest, template or openai")
