"""A small declarative validator for study files.

Each node of a schema checks one value, fills defaults, and reports every problem as
``(key path, expected, found)``. Validation never stops at the first problem: the
user sees all of them at once, one line each.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MISSING = object()


@dataclass
class Problem:
    path: str
    message: str


@dataclass
class Context:
    """Where the value being checked came from, and where problems go."""

    base_dir: Path
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(path or "<top>", message))


def _found(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(value), type(value).__name__)


class Node:
    """Base schema node. ``default`` is used when the key is absent (MISSING = required)."""

    expected = "a value"

    def __init__(self, default: Any = MISSING, doc: str = "", check: Callable[[Any], str | None] | None = None):
        self.default = default
        self.doc = doc
        self.check = check

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None and self.default is None:
            return None  # an optional setting explicitly left empty
        out = self._validate(value, path, ctx)
        if out is not MISSING and self.check is not None:
            message = self.check(out)
            if message:
                ctx.error(path, f"{message}, found {_found(value)}")
                return MISSING
        return out

    def _validate(self, value: Any, path: str, ctx: Context) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def fail(self, value: Any, path: str, ctx: Context, expected: str | None = None) -> Any:
        ctx.error(path, f"expected {expected or self.expected}, found {_type_name(value)} {_found(value)}")
        return MISSING


class Str(Node):
    def __init__(self, default: Any = MISSING, pattern: str | None = None, choices: list[str] | None = None, **kw):
        super().__init__(default, **kw)
        self.pattern = re.compile(pattern) if pattern else None
        self.choices = choices

    @property
    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.pattern:
            return f"a string matching {self.pattern.pattern}"
        return "a string"

    def _validate(self, value, path, ctx):
        if not isinstance(value, str):
            return self.fail(value, path, ctx)
        if self.choices and value not in self.choices:
            hint = difflib.get_close_matches(value, self.choices, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            ctx.error(path, f"expected {self.expected}, found {value!r}{extra}")
            return MISSING
        if self.pattern and not self.pattern.fullmatch(value):
            return self.fail(value, path, ctx)
        return value


class Num(Node):
    """An int (``integer=True``) or float, with optional bounds."""

    def __init__(self, default: Any = MISSING, integer: bool = False, min: float | None = None,
                 max: float | None = None, **kw):
        super().__init__(default, **kw)
        self.integer, self.min, self.max = integer, min, max

    @property
    def expected(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.min is not None and self.max is not None:
            return f"{kind} in [{self.min}, {self.max}]"
        if self.min is not None:
            return f"{kind} >= {self.min}"
        return kind

    def _validate(self, value, path, ctx):
        if isinstance(value, bool):
            return self.fail(value, path, ctx)
        if isinstance(value, str) and not self.integer:
            try:  # YAML reads 1e-3 as a string; accept numeric strings for floats
                value = float(value)
            except ValueError:
                return self.fail(value, path, ctx)
        if self.integer and not isinstance(value, int):
            return self.fail(value, path, ctx)
        if not isinstance(value, (int, float)):
            return self.fail(value, path, ctx)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            return self.fail(value, path, ctx)
        return value if self.integer else float(value)


class Bool(Node):
    expected = "true or false"

    def _validate(self, value, path, ctx):
        return value if isinstance(value, bool) else self.fail(value, path, ctx)


class File(Node):
    """A path to an existing file, relative to the study file that names it."""

    expected = "a path to an existing file"

    def _validate(self, value, path, ctx):
        if not isinstance(value, str):
            return self.fail(value, path, ctx)
        resolved = (ctx.base_dir / Path(value).expanduser()).resolve()
        if not resolved.is_file():
            ctx.error(path, f"file not found: {value} (resolved to {resolved})")
            return MISSING
        return str(resolved)


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def expand(value: str) -> tuple[str, list[str]]:
    """``value`` with ``~`` and environment variables expanded, and the names of unset variables.

    ``${VAR:-default}`` gives ``default`` (itself expanded) when VAR is unset or empty.
    """
    unset: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(3)
        got = os.environ.get(name)
        if got:
            return got
        if m.group(2) is not None:
            text, inner = expand(m.group(2))
            if inner:  # neither the variable nor its default resolves: name both
                unset.extend([name, *inner])
            return text
        unset.append(name)
        return m.group(0)

    text = _VAR.sub(sub, value)
    return os.path.expanduser(text), unset


class PathArg(Node):
    """A path argument of a data reader: ``~`` and ``$VAR`` (``${VAR:-default}``) expanded,
    a relative path resolved against the study file's folder, and checked to exist as a
    file (``must="file"``), a folder (``must="dir"``) or either (``must="any"``; ``None``:
    not checked). ``many``: one path or a list of them; ``mapping``: also a mapping of
    names to paths (e.g. WavCaps subsets to folders), or ``mapping="as-is"`` a mapping passed
    on unchanged (AudioSet's ``classes``: a file, or the mapping itself). The resolved absolute path (or list,
    or mapping) is what the reader gets and what the node's key hashes."""

    def __init__(self, default: Any = MISSING, must: str | None = "any", many: bool = False,
                 mapping: bool | str = False, **kw):
        super().__init__(default, **kw)
        if must not in (None, "file", "dir", "any"):
            raise ValueError(f"must: expected file, dir, any or None, found {must!r}")
        self.must, self.many, self.mapping = must, many, mapping

    @property
    def expected(self) -> str:
        what = {"file": "a file", "dir": "a folder", "any": "an existing path", None: "a path"}[self.must]
        if self.many:
            what += " or a list of them"
        if self.mapping:
            what += " or a mapping of names to them"
        return what

    def _validate(self, value, path, ctx):
        if isinstance(value, str):
            return self._one(value, path, ctx)
        if self.many and isinstance(value, list) and value:
            out = [self._one(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
            return MISSING if MISSING in out else out
        if self.mapping == "as-is" and isinstance(value, dict):
            return value
        if self.mapping and isinstance(value, dict) and value:
            out = {str(k): self._one(v, _join(path, k), ctx) for k, v in value.items()}
            return MISSING if MISSING in out.values() else out
        return self.fail(value, path, ctx)

    def _one(self, value: Any, path: str, ctx: Context) -> Any:
        if not isinstance(value, str) or not value:
            return self.fail(value, path, ctx, "a path")
        text, unset = expand(value)
        if unset:
            ctx.error(path, f"expected {self.expected}, found {value!r} with {' and '.join(unset)} not set")
            return MISSING
        resolved = Path(os.path.normpath(text if os.path.isabs(text) else ctx.base_dir / text))
        exists = {"file": resolved.is_file, "dir": resolved.is_dir, "any": resolved.exists}.get(self.must)
        if exists is not None and not exists():
            kind = {"file": "file", "dir": "folder", "any": "path"}[self.must]
            ctx.error(path, f"{kind} not found: {value} (resolved to {resolved})")
            return MISSING
        return str(resolved)


class Any_(Node):
    expected = "any value"

    def _validate(self, value, path, ctx):
        return value


class List(Node):
    def __init__(self, item: Node, default: Any = MISSING, min_len: int = 0, unique: bool = False, **kw):
        super().__init__(default, **kw)
        self.item, self.min_len, self.unique = item, min_len, unique

    @property
    def expected(self) -> str:
        return f"a list of {self.item.expected}" + (f" (at least {self.min_len})" if self.min_len else "")

    def _validate(self, value, path, ctx):
        if not isinstance(value, list):
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = [value]  # a scalar where a list is expected is a one-element list
            else:
                return self.fail(value, path, ctx)
        if len(value) < self.min_len:
            return self.fail(value, path, ctx)
        out = [self.item.validate(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
        if self.unique:
            seen = set()
            for i, v in enumerate(out):
                marker = repr(v)
                if marker in seen:
                    ctx.error(f"{path}[{i}]", f"duplicate entry {_found(v)}")
                seen.add(marker)
        return out


class Obj(Node):
    """A mapping with known keys. Unknown keys are errors, with a 'did you mean' hint."""

    def __init__(self, fields: dict[str, Node], default: Any = MISSING, shorthand: str | None = None, **kw):
        super().__init__(default, **kw)
        self.fields = fields
        self.shorthand = shorthand  # a bare string stands for {shorthand: value}

    @property
    def expected(self) -> str:
        return "a mapping" + (f" or a {self.shorthand} name" if self.shorthand else "")

    def _validate(self, value, path, ctx):
        if value is None and not self.required:
            value = {}
        if self.shorthand and isinstance(value, str):
            value = {self.shorthand: value}
        if not isinstance(value, dict):
            return self.fail(value, path, ctx)
        out: dict[str, Any] = {}
        for key in value:
            if key not in self.fields:
                hint = difflib.get_close_matches(str(key), list(self.fields), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                ctx.error(_join(path, key), f"unknown key{extra}; expected one of: {', '.join(self.fields)}")
        for key, node in self.fields.items():
            sub = _join(path, key)
            if key in value:
                out[key] = node.validate(value[key], sub, ctx)
            elif node.required:
                ctx.error(sub, f"missing required key; expected {node.expected}")
                out[key] = MISSING
            else:
                default = copy.deepcopy(node.default)
                out[key] = node.validate(default, sub, ctx) if isinstance(node, Obj) and default == {} else default
        return out


class Map(Node):
    """A mapping from free-form string keys to values of one schema (component options)."""

    expected = "a mapping"

    def __init__(self, value: Node, default: Any = MISSING, **kw):
        super().__init__(default, **kw)
        self.value = value

    def _validate(self, value, path, ctx):
        if value is None and not self.required:
            return {}
        if not isinstance(value, dict):
            return self.fail(value, path, ctx)
        return {str(k): self.value.validate(v, _join(path, str(k)), ctx) for k, v in value.items()}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
