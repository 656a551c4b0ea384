"""LLM caption parser over an OpenAI-compatible chat-completions server (UTS recipe).

The UTS paper (arXiv 2603.25767) parses each caption into about ten one-word tags with
Qwen2.5-7B-Instruct served by vLLM (temperature 0.3, top_p 0.9, at most 512 tokens).
This module speaks the ``/chat/completions`` protocol with the standard library only:

- :class:`OpenAIChatClient`: one request, with retries (exponential backoff plus jitter
  from a seeded RNG) on timeouts, connection errors, HTTP 429 and 5xx; ``Retry-After``
  is honoured (capped). Other 4xx raise :class:`LLMRequestError` at once. The API key
  is read from the environment at call time and never stored, logged or put into an
  exception message.
- :class:`LLMParser`: a batch of captions -> label lists and a
  :class:`~harness.tagging.responses.ParseReport`, through a resumable append-only JSONL
  cache (one fsync'ed line per completed request, keyed by the sha256 of model, prompt,
  sampling parameters and caption). Raw responses are cached, so normalisation can
  change without re-requesting anything. A failed request or a rejected response gives
  the caption ``[]`` and is counted; it never stops the batch. Failed requests are not
  cached, so a rerun asks for them again. An answer cut off at the token limit
  (``max_tokens``) is an :class:`Answer` marked ``truncated``, in the cache too, and is
  counted as truncated when it cannot be read.
- A backend that cannot answer at all (a local model that does not load, a server that
  cannot be reached) raises :class:`BackendUnavailable` once, before any request: one
  line naming the cause and the fix.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import hashlib
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from harness.errors import HarnessError
from harness.tagging.responses import ParseReport, normalise_labels

PARSER_VERSION = "openai-1"

PARSER_PROMPT = """\
You turn an audio caption into tags for audio pre-training.

Return only a JSON object of the form {"labels": ["tag1", "tag2", ...]} with about 10 labels.

Rules for every label:
- exactly one word, lowercase, no punctuation except hyphens (for example "high-pitched");
- no duplicates;
- a canonical, reusable term: collapse synonyms to the most common word (always "car", \
never "automobile"; always "dog", never "canine") and avoid rare or unusual words;
- describe only what the caption says or clearly implies.

Together the labels should cover these aspects, where the caption supports them:
1. scene or environment (for example "street", "kitchen", "forest");
2. sound sources (for example "man", "dog", "engine");
3. sound events (for example "speech", "bark", "honk");
4. audio or production traits (for example "loud", "distant", "reverberant");
5. semantic function or intent (for example "conversation", "alarm", "music").

Output the JSON object and nothing else."""

_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))


class LLMRequestError(RuntimeError):
    """A request that failed: ``status`` (HTTP code or None), ``retryable``, ``kind``."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool, kind: str,
                 retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.retryable = retryable
        self.kind = kind


class BackendUnavailable(LLMRequestError, HarnessError):
    """A backend that cannot answer any request: a local model that does not load, a server
    that cannot be reached. Raised once, before any request is counted, as one line that
    names the cause and the fix; the CLI prints it and exits 2, a job fails with it."""

    exit_code = 2

    def __init__(self, message: str, kind: str = "unavailable"):
        LLMRequestError.__init__(self, message, retryable=False, kind=kind)
        self.problems = [message]


class AllRequestsFailed(HarnessError):
    """Every request of a run failed: nothing was parsed. ``report`` is the parse report
    (its ``first_errors`` name the causes); the CLI exits 1 after writing it."""

    exit_code = 1

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


class Answer(str):
    """A backend's reply. ``truncated``: generation stopped at the token limit
    (``max_tokens``) rather than at the end of the answer."""

    truncated: bool = False

    def __new__(cls, text: str, truncated: bool = False) -> "Answer":
        answer = super().__new__(cls, text)
        answer.truncated = bool(truncated)
        return answer


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIChatClient:
    """Minimal, thread-safe client for ``POST {base_url}/chat/completions``."""

    backend_version = PARSER_VERSION  # named in each cache line it answers

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60,
        max_retries: int = 5,
        backoff: float = 0.5,
        concurrency: int = 4,
        temperature: float = 0.3,
        top_p: float = 0.9,
        max_tokens: int = 512,
        max_retry_after: float = 60.0,
        seed: int = 0,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = max(1, int(concurrency))
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.max_retry_after = max_retry_after
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    @property
    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        with self._rng_lock:
            jitter = self._rng.random()
        return self.backoff * (2**attempt) * (1.0 + jitter)

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "[redacted]") if key else text

    def _once(self, body: bytes) -> str:
        """One HTTP request; returns the message content or raises LLMRequestError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                detail = exc.read(500).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - the body is only a hint for the message
                detail = ""
            raise LLMRequestError(
                self._redact(f"HTTP {status} from {self.base_url}/chat/completions: {detail}".strip()),
                status=status,
                retryable=status in _RETRYABLE_STATUS,
                kind=f"http_{status}",
                retry_after=_retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None),
            ) from None
        except (TimeoutError, socket.timeout):
            raise LLMRequestError(
                f"timeout after {self.timeout}s from {self.base_url}", retryable=True, kind="timeout"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            kind = "timeout" if isinstance(reason, (TimeoutError, socket.timeout)) else "connection"
            raise LLMRequestError(
                self._redact(f"{kind} error from {self.base_url}: {reason}"), retryable=True, kind=kind
            ) from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise LLMRequestError(
                self._redact(f"connection error from {self.base_url}: {type(exc).__name__}: {exc}"),
                retryable=True,
                kind="connection",
            ) from None
        try:
            choice = json.loads(payload)["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMRequestError(
                self._redact(f"malformed chat-completions envelope from {self.base_url}: {payload[:200]!r}"),
                retryable=False,
                kind="bad_envelope",
            ) from None
        if not isinstance(content, str):
            raise LLMRequestError(
                f"message content is not a string from {self.base_url}", retryable=False, kind="bad_envelope"
            )
        return Answer(content, truncated=choice.get("finish_reason") == "length")

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant message for ``messages``, retrying transient failures."""
        body = json.dumps({"model": self.model, "messages": messages, **self.sampling}).encode()
        attempt = 0
        while True:
            try:
                return self._once(body)
            except LLMRequestError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    if exc.retryable:
                        exc.args = (f"{exc.args[0]} (gave up after {attempt + 1} attempts)",)
                    raise
                time.sleep(self._delay(attempt, exc.retry_after))
                attempt += 1


class ResponseCache:
    """An append-only JSONL file of ``{"key": ..., "raw": ..., ...}`` records.

    Each completed request is one line, written and fsync'ed under an exclusive ``flock``,
    so jobs that share the file (two studies captioning the same clips) never interleave
    lines, and a job killed mid-write leaves at most one torn last line, which readers skip.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict[str, str]:
        """key -> raw response (an :class:`Answer`); unreadable lines (a torn last line) are skipped."""
        cache: dict[str, str] = {}
        if not self.path.exists():
            return cache
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    cache[record["key"]] = Answer(record["raw"], truncated=record.get("truncated", False))
                except (ValueError, KeyError, TypeError):
                    continue
        return cache

    def append(self, record: dict[str, Any]) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
        with open(self.path, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                end = f.seek(0, os.SEEK_END)
                if end > 0:  # a torn last line must not swallow this record
                    with open(self.path, "rb") as r:
                        r.seek(end - 1)
                        if r.read(1) != b"\n":
                            line = b"\n" + line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def run_requests(
    backend: Any,
    requests: dict[str, Any],
    cache: ResponseCache,
    make_messages: Callable[[Any], list[dict[str, Any]]],
    record: Callable[[str, Any], dict[str, Any]] = lambda key, item: {},
    progress: bool = False,
    label: str = "llm",
    details: dict[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Answer every request not yet in ``cache``: ``(key -> raw response, key -> error kind)``.

    ``requests`` maps a cache key to an item; ``make_messages(item)`` builds its chat
    messages (called lazily, so audio is read only for requests that are sent). A backend
    with ``load()`` (a local model) is loaded first, once: if it cannot load,
    :class:`BackendUnavailable` is raised before any request. A backend with
    ``complete_batch`` gets batches of ``backend.batch_size``; any other gets
    ``backend.concurrency`` requests in flight at once. Every answer is cached the moment
    it arrives (marked ``truncated`` when it stopped at the token limit); failures are
    returned, never raised, and never cached, so a rerun asks again; ``details``, when
    given, receives each failure's message (key -> one line). ``record(key, item)`` adds
    fields to the cache line (the caption, the audio path) so that the cache can be read
    on its own.
    """
    from harness.progress import Bar

    answers = cache.read()
    todo = {k: item for k, item in requests.items() if k not in answers}
    errors: dict[str, str] = {}
    details = details if details is not None else {}
    if not todo:
        return answers, errors

    def keep(key: str, raw: str) -> None:
        line = {"key": key, "model": backend.model, **record(key, todo[key]), "raw": raw}
        if getattr(raw, "truncated", False):
            line["truncated"] = True
        cache.append(line)
        answers[key] = raw

    def failed(key: str, exc: BaseException) -> None:
        errors[key] = exc.kind if isinstance(exc, LLMRequestError) else type(exc).__name__
        text = str(exc).strip().splitlines()
        details[key] = f"{type(exc).__name__}: {text[0] if text else ''}".strip()[:300]

    if hasattr(backend, "load"):
        started = time.time()
        if progress:
            print(f"{label}: loading {backend.model} ...", file=sys.stderr, flush=True)
        backend.load()  # BackendUnavailable: one line, before any request
        if progress:
            size = getattr(backend, "batch_size", None)
            print(f"{label}: model loaded in {time.time() - started:.1f} s; {len(todo)} requests"
                  + (f" in batches of {size}" if size else "") + ", the first under way", file=sys.stderr, flush=True)

    with Bar(label, total=len(todo), enabled=progress) as bar:
        if hasattr(backend, "complete_batch"):
            keys = list(todo)
            size = max(1, int(getattr(backend, "batch_size", 8)))
            for i in range(0, len(keys), size):
                chunk = keys[i : i + size]
                try:
                    raws = backend.complete_batch([make_messages(todo[k]) for k in chunk])
                except BackendUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - one batch never stops the run
                    for k in chunk:
                        failed(k, exc)
                else:
                    for k, raw in zip(chunk, raws):
                        keep(k, raw)
                bar.advance(len(chunk))
        else:
            # One request first: an unreachable server fails the run at once, with a clear
            # cause, instead of every request retrying against nothing.
            first = next(iter(todo))
            try:
                keep(first, backend.complete(make_messages(todo[first])))
            except LLMRequestError as exc:
                if exc.kind == "connection":
                    raise BackendUnavailable(f"cannot reach {backend.base_url} ({exc}); is the server running?",
                                             kind="unreachable") from None
                failed(first, exc)
            bar.advance(1)
            rest = {k: item for k, item in todo.items() if k != first}
            with concurrent.futures.ThreadPoolExecutor(backend.concurrency) as pool:
                futures = {pool.submit(lambda it: backend.complete(make_messages(it)), item): k
                           for k, item in rest.items()}
                for future in concurrent.futures.as_completed(futures):
                    k = futures[future]
                    try:
                        raw = future.result()
                    except Exception as exc:  # noqa: BLE001 - one request never stops the batch
                        failed(k, exc)
                    else:
                        keep(k, raw)
                    bar.advance(1)
    if progress and errors:
        print(f"{label}: {len(errors)} of {len(todo)} requests failed (a rerun retries them)",
              file=sys.stderr, flush=True)
    return answers, errors


class LLMParser:
    """Captions -> label lists through a chat backend, with a resumable cache.

    The backend is an :class:`OpenAIChatClient` or a local
    :class:`~harness.tagging.hf.TransformersChat`: anything with ``model``, ``sampling``
    and ``complete(messages)`` (or ``complete_batch``).
    """

    version = PARSER_VERSION

    def __init__(self, client: Any, cache_path: str | os.PathLike, prompt: str = PARSER_PROMPT,
                 min_labels: int = 3, max_labels: int = 15):
        self.client = client
        self.cache = ResponseCache(cache_path)
        self.prompt = prompt
        self.min_labels = min_labels
        self.max_labels = max_labels

    @property
    def cache_path(self) -> Path:
        return self.cache.path

    def key(self, caption: str) -> str:
        blob = json.dumps(
            {"model": self.client.model, "prompt": self.prompt, "sampling": self.client.sampling, "caption": caption},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def read_cache(self) -> dict[str, str]:
        return self.cache.read()

    def parse_many(self, captions: list[str], progress: bool = False) -> tuple[list[list[str]], ParseReport]:
        """Labels per caption and the report. Failed requests are counted, never raised
        (:func:`~harness.tagging.parsers.parse_captions` decides what a run in which every
        request failed means); a backend that cannot load raises :class:`BackendUnavailable`."""
        report = ParseReport()
        keys = [self.key(c) for c in captions]
        requests = dict(zip(keys, captions))
        cached = self.cache.read()
        report.cache_hits = sum(k in cached for k in requests)
        report.requested = len(requests) - report.cache_hits
        parser = getattr(self.client, "backend_version", PARSER_VERSION)  # openai-1, transformers-1
        details: dict[str, str] = {}
        answers, errors = run_requests(
            self.client, requests, self.cache,
            make_messages=lambda caption: [{"role": "system", "content": self.prompt},
                                           {"role": "user", "content": caption}],
            record=lambda key, caption: {"caption": caption, "parser": parser},
            progress=progress, label="parse captions", details=details,
        )
        report.failed_requests = len(errors)
        for k, kind in errors.items():
            report.first_errors.setdefault(kind, details.get(k, kind))

        results: list[list[str]] = []
        normalised: dict[str, tuple[list[str] | None, list[str]]] = {}
        for k in keys:
            if k in errors:
                report.add_error(errors[k])
                results.append([])
                continue
            if k not in normalised:
                normalised[k] = normalise_labels(answers[k], self.min_labels, self.max_labels,
                                                 truncated=getattr(answers[k], "truncated", False))
            labels, problems = normalised[k]
            report.add(labels, problems)
            results.append(list(labels) if labels is not None else [])
        return results, report
