"""Caption parsers behind one call: ``rules`` (offline default), ``openai`` (a chat-completions
server, the UTS recipe) and ``transformers`` (a local Hugging Face causal LM).

The two model backends share the paper's prompt contract (:data:`~harness.tagging.llm.PARSER_PROMPT`),
the normalisation and parse report of :mod:`harness.tagging.responses`, and the resumable
response cache of :class:`~harness.tagging.llm.LLMParser`; they differ only in who answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.registry import Component

# The backends. ``versions_of``: the modules whose VERSION constants version the output;
# ``meta.reads``: the keys of a ``tagging.parser`` block the backend reads (any other is a
# plan-time error); ``meta.requires``: those it cannot do without.
COMPONENTS = [
    Component(kind="parser", name="rules", target="parse_captions", versions_of=("harness.tagging.rules",),
              doc="offline rules: noun and verb lemmas of the caption", meta={"reads": ["max_tags"]}),
    Component(kind="parser", name="manifest", target="parse_captions", versions_of=("harness.stages.tags",),
              doc="the tags a source already has (UTS audio_tag), no parsing", meta={"reads": ["field", "max_tags"]}),
    Component(kind="parser", name="openai", target="parse_captions",
              versions_of=("harness.tagging.llm", "harness.tagging.responses"),
              doc="an LLM behind an OpenAI-compatible endpoint (UTS: Qwen2.5-7B-Instruct served by vLLM)",
              meta={"reads": ["model", "prompt", "temperature", "top_p", "max_tokens", "min_tags", "max_tags",
                              "base_url", "api_key_env", "concurrency", "timeout", "max_retries"],
                    "requires": ["model", "base_url"]}),
    Component(kind="parser", name="transformers", target="parse_captions",
              versions_of=("harness.tagging.llm", "harness.tagging.responses", "harness.tagging.hf"),
              doc="a local Hugging Face causal LM folder (or a GGUF file in it)",
              meta={"reads": ["model", "gguf_file", "prompt", "temperature", "top_p", "max_tokens", "min_tags",
                              "max_tags", "seed", "batch_size", "device"],
                    "requires": ["model"]}),
]
PARSER_SAMPLING = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 512}  # UTS: Qwen2.5-7B-Instruct via vLLM


def sampling(config: dict[str, Any], defaults: dict[str, Any] = PARSER_SAMPLING) -> dict[str, Any]:
    """The sampling parameters of a backend block: the block's values over ``defaults``."""
    return {k: config[k] if config.get(k) is not None else v for k, v in defaults.items()}


def make_llm_parser(config: dict[str, Any], runtime: dict[str, Any], cache_path: str | Path):
    """An :class:`~harness.tagging.llm.LLMParser` for an ``openai`` or ``transformers`` block."""
    from harness.tagging.llm import PARSER_PROMPT, LLMParser, OpenAIChatClient

    backend = config["backend"]
    if backend == "openai":
        client: Any = OpenAIChatClient(
            runtime["base_url"], config["model"], api_key_env=runtime.get("api_key_env", "OPENAI_API_KEY"),
            timeout=runtime.get("timeout", 60), max_retries=runtime.get("max_retries", 5),
            concurrency=runtime.get("concurrency", 8), **sampling(config))
    elif backend == "transformers":
        from harness.tagging.hf import TransformersChat

        client = TransformersChat(runtime.get("model") or config["model"], gguf_file=config.get("gguf_file"),
                                  batch_size=runtime.get("batch_size", 8), device=runtime.get("device"),
                                  seed=config.get("seed", 0), threads=runtime.get("threads"), **sampling(config))
    else:
        raise ValueError(f"parser backend {backend!r} is not a model backend; expected openai or transformers")
    max_labels = config.get("max_tags") or 15
    return LLMParser(client, cache_path, prompt=config.get("prompt") or PARSER_PROMPT,
                     min_labels=min(config.get("min_tags") or 3, max_labels), max_labels=max_labels)


def parse_captions(captions: list[str], config: dict[str, Any], runtime: dict[str, Any] | None = None,
                   cache_path: str | Path | None = None, progress: bool = False) -> tuple[list[list[str]], dict]:
    """``(tags per caption, parse report)`` with the backend that ``config["backend"]`` names.

    A model backend that cannot load raises :class:`~harness.tagging.llm.BackendUnavailable`
    before any request; a run in which every request failed raises
    :class:`~harness.tagging.llm.AllRequestsFailed` (carrying the report): neither is a
    run of empty tag lists."""
    if config["backend"] == "rules":
        from harness.tagging.rules import parse_many

        tags = parse_many(captions, max_tags=config.get("max_tags"))
        return tags, {"total": len(tags), "accepted": sum(bool(t) for t in tags)}
    if cache_path is None:
        raise ValueError("a model parser needs a cache_path for its responses")
    from harness.tagging.llm import AllRequestsFailed

    tags, report = make_llm_parser(config, runtime or {}, cache_path).parse_many(captions, progress=progress)
    if report.all_failed:
        causes = "; ".join(report.first_errors.values()) or ", ".join(report.errors)
        raise AllRequestsFailed(f"the {config['backend']} parser: every one of the {report.requested} requests "
                                f"failed ({causes}); nothing was parsed", report.to_dict())
    return tags, report.to_dict()
