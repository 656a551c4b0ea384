"""Normalisation of LLM caption-parser responses into tag lists.

The UTS parser prompt (arXiv 2603.25767) asks for ``{"labels": [...]}`` with about ten
one-word, lowercase labels (hyphens allowed), no duplicates. Models break that contract
in a handful of ways; :func:`normalise_labels` repairs what can be repaired honestly,
rejects the rest, and names every problem with a code so that a batch can report how
often each one happened (:class:`ParseReport`).

Problem codes (each reported at most once per response):

- ``invalid_json``: no JSON object could be read (rejected).
- ``prose``: the object was cut out of surrounding text (first balanced ``{...}``).
- ``fenced``: the object was read from a fenced code block (```json ... ```).
- ``missing_labels``: the object has no ``"labels"`` key (rejected).
- ``wrong_type``: ``"labels"`` is not a list (rejected).
- ``non_string``: a list item was not a string (dropped).
- ``case``: a label had uppercase letters (lowercased).
- ``punctuation``: a label had characters other than letters, digits, hyphens (removed).
- ``multi_word``: a label had spaces: two words are joined with a hyphen, three or more
  are dropped.
- ``empty_label``: a label was empty after normalisation (dropped).
- ``duplicate``: a label occurred twice after normalisation (later ones dropped).
- ``too_many``: more than ``max_labels`` labels (truncated, first ones kept).
- ``too_few``: fewer than ``min_labels`` labels after repair (rejected).
- ``truncated``: the answer stopped at the token limit (``max_tokens``) before its JSON
  was complete (rejected). It is counted instead of ``invalid_json``, ``missing_labels``
  or ``wrong_type``, which the cut would otherwise look like; raise ``max_tokens``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NORMALISER_VERSION = "1"

PROBLEM_CODES: tuple[str, ...] = (
    "invalid_json",
    "prose",
    "fenced",
    "missing_labels",
    "wrong_type",
    "non_string",
    "case",
    "punctuation",
    "multi_word",
    "empty_label",
    "duplicate",
    "too_many",
    "too_few",
    "truncated",
)
REJECTING_CODES = frozenset({"invalid_json", "missing_labels", "wrong_type", "too_few", "truncated"})
_CUT_LOOKS_LIKE = ("invalid_json", "missing_labels", "wrong_type")  # what a cut-off answer is read as

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_HYPHENS_RE = re.compile(r"-{2,}")


def _first_balanced_object(text: str) -> str | None:
    """The first balanced ``{...}`` substring of ``text`` (braces in JSON strings ignored)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        in_str = False
        escape = False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                if escape:
                    escape = False
                elif c == "\\":
                    escape = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)  # unbalanced from here: try the next brace
    return None


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


_MISSING = object()


def _extract_object(raw_text: str, problems: list[str]) -> Any:
    """The JSON value of a response: whole text, else a fenced block, else the first {...}."""
    text = raw_text.strip()
    value = _try_json(text)
    if value is not _MISSING:
        return value
    for block in _FENCE_RE.findall(text):
        value = _try_json(block.strip())
        if value is not _MISSING:
            problems.append("fenced")
            return value
    candidate = _first_balanced_object(text)
    if candidate is not None:
        value = _try_json(candidate)
        if value is not _MISSING:
            problems.append("prose")
            return value
    return _MISSING


def _normalise_one(item: Any, problems: set[str]) -> str | None:
    """One label in the contract's form, or None when it must be dropped."""
    if not isinstance(item, str):
        problems.add("non_string")
        return None
    text = item.strip()
    lowered = text.lower()
    if lowered != text:
        problems.add("case")
    # Underscores are word separators; everything else that is not a letter, digit,
    # hyphen or space is punctuation.
    cleaned_chars = []
    for c in lowered.replace("_", " "):
        if c.isalnum() or c == "-":
            cleaned_chars.append(c)
        elif c.isspace():
            cleaned_chars.append(" ")
        else:
            problems.add("punctuation")
    words = "".join(cleaned_chars).split()
    if len(words) > 2:
        problems.add("multi_word")
        return None
    if len(words) == 2:
        problems.add("multi_word")
    label = _HYPHENS_RE.sub("-", "-".join(words)).strip("-")
    if not label:
        problems.add("empty_label")
        return None
    return label


def normalise_labels(
    raw_text: str, min_labels: int = 3, max_labels: int = 15, truncated: bool = False
) -> tuple[list[str] | None, list[str]]:
    """Parse one model response: (labels, or None when rejected; problem codes in order).

    ``truncated``: the response stopped at the token limit. If it cannot be read for that
    reason (no JSON, no labels key, labels not a list), its problem is ``truncated``."""
    labels, problems = _normalise(raw_text, min_labels, max_labels)
    if truncated and labels is None and problems and problems[-1] in _CUT_LOOKS_LIKE:
        problems = problems[:-1] + ["truncated"]
    return labels, problems


def _normalise(raw_text: str, min_labels: int, max_labels: int) -> tuple[list[str] | None, list[str]]:
    problems: list[str] = []
    value = _extract_object(raw_text or "", problems)
    if value is _MISSING:
        return None, problems + ["invalid_json"]
    if not isinstance(value, dict) or "labels" not in value:
        return None, problems + ["missing_labels"]
    items = value["labels"]
    if not isinstance(items, list):
        return None, problems + ["wrong_type"]

    seen: set[str] = set()
    item_problems: set[str] = set()
    labels: list[str] = []
    for item in items:
        label = _normalise_one(item, item_problems)
        if label is None:
            continue
        if label in seen:
            item_problems.add("duplicate")
            continue
        seen.add(label)
        labels.append(label)
    problems += [c for c in PROBLEM_CODES if c in item_problems]
    if len(labels) > max_labels:
        labels = labels[:max_labels]
        problems.append("too_many")
    if len(labels) < min_labels:
        problems.append("too_few")
        return None, problems
    return labels, problems


@dataclass
class ParseReport:
    """Counts over one batch: captions, outcomes, and how often each problem occurred."""

    total: int = 0  # captions in the batch (identical captions counted each time)
    accepted: int = 0  # captions with a usable label list
    rejected: int = 0  # responses read but rejected by normalise_labels
    request_errors: int = 0  # captions whose request failed (HTTP/network, a batch that raised) after all retries
    cache_hits: int = 0  # unique captions answered from the cache
    requested: int = 0  # unique captions requested from the server in this run
    failed_requests: int = 0  # unique captions whose request failed in this run
    problems: Counter = field(default_factory=Counter)  # problem code -> captions
    errors: Counter = field(default_factory=Counter)  # request error kind -> captions
    first_errors: dict[str, str] = field(default_factory=dict)  # request error kind -> its first message

    @property
    def all_failed(self) -> bool:
        """Requests were sent and not one of them succeeded."""
        return self.requested > 0 and self.failed_requests >= self.requested

    def add(self, labels: list[str] | None, problems: list[str]) -> None:
        """Count one caption's normalisation outcome."""
        self.total += 1
        if labels is None:
            self.rejected += 1
        else:
            self.accepted += 1
        self.problems.update(set(problems))

    def add_error(self, kind: str) -> None:
        """Count one caption whose request failed."""
        self.total += 1
        self.request_errors += 1
        self.errors[kind] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "request_errors": self.request_errors,
            "cache_hits": self.cache_hits,
            "requested": self.requested,
            "failed_requests": self.failed_requests,
            "problems": {c: self.problems[c] for c in PROBLEM_CODES if self.problems[c]},
            "errors": dict(sorted(self.errors.items())),
            "first_errors": dict(sorted(self.first_errors.items())),
        }

    def summary(self) -> str:
        return summarize(self.to_dict())


def summarize(report: dict[str, Any]) -> str:
    """A parse report (:meth:`ParseReport.to_dict`) in one line:
    ``200 captions: 150 accepted, 40 rejected (truncated 17, too_few 23), 10 failed (timeout 10); ...``."""
    problems = report.get("problems") or {}
    parts = [f"{report['accepted']} accepted"]
    rejected = ", ".join(f"{c} {problems[c]}" for c in PROBLEM_CODES if c in REJECTING_CODES and problems.get(c))
    parts.append(f"{report['rejected']} rejected" + (f" ({rejected})" if rejected else ""))
    if report.get("request_errors"):
        parts.append(f"{report['request_errors']} failed ("
                     + ", ".join(f"{k} {n}" for k, n in sorted((report.get("errors") or {}).items())) + ")")
    return (f"{report['total']} captions: " + ", ".join(parts)
            + f"; {report.get('requested', 0)} requested, {report.get('cache_hits', 0)} from the cache")
