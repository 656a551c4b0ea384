"""One registry for every kind of component, lazy and torch-free.

A component (an objective, an encoder, an optimiser, a data reader, a captioner, a
parser, a stage) is declared **once**, in its own file, by a module-level statement::

    COMPONENT = Component(
        kind="objective",
        target="MTC",                      # the object in this file that implements it
        version="1",                       # bumping it re-runs every node it ran
        needs="tags",                      # objectives: what they train on
        options={"dropout": Num(0.1, min=0.0, max=1.0, doc="dropout before the linear layer")},
    )

(``COMPONENTS = [Component(...), ...]`` declares several from one file.) The registry
finds components by the folders their kind lives in (:data:`KINDS`): a new objective is
one new file in ``encoders/objectives/``, found by its file name with no other edit, as
s3prl's folders are. It reads the declaration from the source with :mod:`ast` and
evaluates that one statement with nothing in scope but :mod:`harness.schema`'s nodes, so
listing components, reading their versions and checking a study's options import neither
the component nor torch. A declaration that is missing or malformed is reported as one
line naming the file, never as a traceback.

Everything the planner needs is on the :class:`Entry`: name, version, ``needs``, the
option schema, and kind-specific facts in ``meta`` (a stage's order, a reader's path
arguments). Every other list (the stage list, the source kinds, the objectives' needs) is
derived from it.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import schema
from harness.errors import HarnessError

# kind -> the packages whose modules declare components of that kind. A module of one of
# these packages that declares nothing is a helper (``encoders/objectives/supervision.py``).
KINDS: dict[str, tuple[str, ...]] = {
    "objective": ("encoders.objectives",),
    "encoder": ("encoders",),
    "optimizer": ("encoders.optim",),
    "stage": ("harness.stages",),
    "source": ("harness.sources",),
    "adapter": ("harness.sources",),
    "captioner": ("harness.tagging",),
    "parser": ("harness.tagging",),
    "external": ("encoders.external",),  # adapters of encoders trained elsewhere (docs/encoders.md)
}

DOCS = {"objective": "docs/adding-an-objective.md", "source": "docs/sources.md", "adapter": "docs/tasks.md",
        "stage": "docs/architecture.md"}


@dataclass(frozen=True)
class Component:
    """A declaration, as written in a component's file (see the module docstring).

    ``name`` defaults to the file's stem. ``target`` names the implementing object in the
    same module (``"MTC"``) or elsewhere (``"module:object"``). ``version`` is the
    component's own version; ``versions_of`` lists modules whose ``VERSION``-like constants
    version it instead (joined by ``+``), for components whose output several modules
    shape. ``options`` maps option names to :mod:`harness.schema` nodes; ``extends`` names
    another component of the same kind whose options these add to (or override), so that
    a family (PAR, captioning, multi-task) declares its shared options once; ``meta`` holds
    kind-specific facts.
    """

    kind: str
    target: str = ""
    name: str | None = None
    version: str | None = None
    versions_of: tuple[str, ...] = ()
    needs: str | None = None
    options: dict[str, schema.Node] | None = None
    doc: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    extends: str | None = None


@dataclass(frozen=True)
class Entry:
    """A registered component: its declaration, resolved against the file it came from."""

    kind: str
    name: str
    module: str
    file: Path
    target: str
    version: str
    needs: str | None
    options: dict[str, schema.Node] | None  # None: the component takes no options check (free-form)
    doc: str
    meta: dict[str, Any]

    def load(self) -> Any:
        """Import the module and return the implementing object (the only import of the component)."""
        module, _, obj = self.target.rpartition(":") if ":" in self.target else (self.module, "", self.target)
        return getattr(importlib.import_module(module), obj)

    def presets(self) -> list[str]:
        """The preset names of the component (an encoder's sizes): the keys of the literal
        dict its module defines under the name ``meta["sizes"]`` (read, not imported)."""
        constant = self.meta.get("sizes")
        if not constant:
            return []
        for stmt in ast.parse(self.file.read_text(encoding="utf-8")).body:
            target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
                stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == constant and isinstance(stmt.value, ast.Dict):
                return [k.value for k in stmt.value.keys if isinstance(k, ast.Constant)]
        return []

    def check_options(self, options: dict[str, Any], where: str, ctx: schema.Context) -> None:
        """Report every unknown, mistyped or out-of-range option at ``where`` (nothing is filled
        in: the study's config, and so every node key, stays as the user wrote it)."""
        if self.options is None or not isinstance(options, dict):
            return
        for key, value in options.items():
            if key not in self.options:
                hint = difflib.get_close_matches(str(key), list(self.options), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                known = ", ".join(sorted(self.options)) or "none"
                ctx.error(f"{where}.{key}", f"not an option of the {self.name!r} {self.kind}{extra}; "
                                            f"its options: {known}")
            else:
                self.options[key].validate(value, f"{where}.{key}", ctx)


class Declarations:
    """The components of one kind, found in its packages' files (see :func:`registry`)."""

    def __init__(self, kind: str, entries: dict[str, Entry], broken: dict[str, str]):
        self.kind = kind
        self.entries = entries
        self.broken = broken  # name (file stem) -> why its declaration could not be read

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return list(self.entries)

    def problem(self, name: str) -> str | None:
        """One line saying why ``name`` is not usable, or None when it is."""
        if name in self.entries:
            return None
        if name in self.broken:
            return self.broken[name]
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return (f"unknown {self.kind} {name!r}{extra}; expected one of: {', '.join(sorted(self.entries))}"
                + (f" (adding one: {DOCS[self.kind]})" if self.kind in DOCS else ""))

    def get(self, name: str) -> Entry:
        """The entry ``name``; a :class:`~harness.errors.HarnessError` of one line otherwise."""
        problem = self.problem(name)
        if problem:
            raise HarnessError(problem)
        return self.entries[name]


# The names a declaration may use: literals, the schema's nodes and Component.
_SCOPE = {"Component": Component, "Str": schema.Str, "Num": schema.Num, "Bool": schema.Bool,
          "File": schema.File, "PathArg": schema.PathArg, "Any_": schema.Any_, "List": schema.List, "Obj": schema.Obj,
          "Map": schema.Map}
_DECLARATION_NAMES = ("COMPONENT", "COMPONENTS")


@functools.lru_cache(maxsize=None)
def _package_folders(package: str) -> tuple[Path, ...]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(Path(folder) for folder in spec.submodule_search_locations)


@functools.lru_cache(maxsize=None)
def _listing(folder: Path, mtime_ns: int) -> tuple[Path, ...]:
    """The declaring candidates of a folder (``*.py`` not starting with ``_``), listed again
    when a file is added or removed (the folder's modification time changes)."""
    del mtime_ns  # part of the cache key only
    return tuple(p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_"))


def _package_files(package: str) -> list[tuple[str, Path]]:
    out = []
    for folder in _package_folders(package):
        try:
            listing = _listing(folder, folder.stat().st_mtime_ns)
        except FileNotFoundError:
            continue
        out += [(f"{package}.{path.stem}", path) for path in listing]
    return out


@functools.lru_cache(maxsize=None)
def _declarations_in(path: Path, mtime: float) -> tuple[list[Component], str | None]:
    """The declarations in one file (read, not imported), or why they cannot be read."""
    del mtime  # part of the cache key only: an edited file is read again
    try:
        text = path.read_text(encoding="utf-8")
        if "COMPONENT" not in text:
            return [], None
        tree = ast.parse(text, filename=str(path))
    except (OSError, SyntaxError) as exc:
        return [], f"{path}: cannot be read: {exc}"
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else (
            stmt.target if isinstance(stmt, ast.AnnAssign) else None)
        if not isinstance(target, ast.Name) or target.id not in _DECLARATION_NAMES or stmt.value is None:
            continue
        for node in ast.walk(stmt.value):
            if isinstance(node, ast.Name) and node.id not in _SCOPE and node.id not in ("True", "False", "None"):
                return [], (f"{path}:{node.lineno}: {target.id} may use only literals and harness.schema nodes, "
                            f"found the name {node.id!r}")
            if isinstance(node, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield)):
                return [], f"{path}:{node.lineno}: {target.id} may use only literals and harness.schema nodes"
        try:
            value = eval(compile(ast.Expression(stmt.value), str(path), "eval"), {"__builtins__": {}}, dict(_SCOPE))
        except Exception as exc:  # a bad argument of Component or of a schema node
            return [], f"{path}:{stmt.lineno}: {target.id} is not a valid declaration: {exc}"
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, Component) for v in values):
            return [], f"{path}:{stmt.lineno}: {target.id} must be a Component(...) (or a list of them)"
        return values, None
    return [], None


def module_constant(module: str, suffix: str = "VERSION") -> str:
    """The first top-level string constant whose name ends with ``suffix`` (read, not imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise HarnessError(f"module {module!r} not found")
    path = Path(spec.origin)
    return _constant(path, path.stat().st_mtime_ns, suffix)


@functools.lru_cache(maxsize=None)
def _constant(path: Path, mtime_ns: int, suffix: str) -> str:
    del mtime_ns  # part of the cache key only
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for stmt in tree.body:
        names = [t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names = [stmt.target.id]
        for name in names:
            if name.endswith(suffix) and isinstance(stmt.value, ast.Constant):
                return str(stmt.value.value)
    raise HarnessError(f"module {path.stem!r} ({path}) defines no {suffix} constant")


def module_version(module: str) -> str:
    """The version of a module: the version its one ``COMPONENT`` declares, else its first
    ``*VERSION`` string constant (read, not imported)."""
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        path = Path(spec.origin)
        decls, _ = _declarations_in(path, path.stat().st_mtime)
        if len(decls) == 1 and decls[0].version is not None:
            return decls[0].version
    return module_constant(module)


def _entry(decl: Component, module: str, path: Path) -> tuple[Entry | None, str | None]:
    name = decl.name or path.stem
    where = f"{path}: the {decl.kind} {name!r}"
    if decl.kind not in KINDS:
        return None, f"{where}: unknown kind; expected one of: {', '.join(KINDS)}"
    if not decl.target:
        return None, f"{where} names no target (the object that implements it)"
    if decl.version is None and not decl.versions_of:
        return None, f"{where} declares no version (version=\"1\")"
    try:
        version = decl.version if decl.version is not None else "+".join(
            module_version(m) for m in decl.versions_of)
    except HarnessError as exc:
        return None, f"{where}: {exc}"
    if decl.kind == "objective" and not decl.needs:
        return None, f"{where} declares no needs (tags, captions, labels, or several joined by +)"
    if decl.needs and not set(decl.needs.split("+")) <= {"tags", "captions", "labels", "none"}:
        return None, f"{where}: needs must be tags, captions, labels or none (joined by +), found {decl.needs!r}"
    options = dict(decl.options) if decl.options is not None else None
    if options is not None and not all(isinstance(n, schema.Node) for n in options.values()):
        return None, f"{where}: every option must be a harness.schema node (Str, Num, Bool, ...)"
    meta = {**decl.meta, "_extends": decl.extends} if decl.extends else dict(decl.meta)
    return Entry(decl.kind, name, module, path, decl.target, str(version), decl.needs, options, decl.doc, meta), None


@functools.lru_cache(maxsize=None)
def _scan(kind: str, stamp: tuple) -> Declarations:
    del stamp  # the files' modification times: the cache is read again when one changes
    entries: dict[str, Entry] = {}
    broken: dict[str, str] = {}
    for package in KINDS[kind]:
        for module, path in _package_files(package):
            decls, problem = _declarations_in(path, path.stat().st_mtime)
            if problem:
                broken[path.stem] = problem
                continue
            for decl in decls:
                if decl.kind != kind:
                    continue
                entry, problem = _entry(decl, module, path)
                name = decl.name or path.stem
                if problem:
                    broken[name] = problem
                elif name in entries:
                    broken[name] = f"{path}: the {kind} {name!r} is declared twice (also in {entries[name].file})"
                else:
                    entries[name] = entry
    for name in list(broken):
        entries.pop(name, None)
    for name, entry in list(entries.items()):  # options inherited from the component a declaration extends
        base, seen = entry.meta.get("_extends"), {name}
        options = dict(entry.options or {})
        while base is not None:
            if base in seen or base not in entries:
                broken[name] = (f"{entry.file}: the {kind} {name!r} extends {base!r}, which is "
                                + ("part of a cycle" if base in seen else f"not a registered {kind}"))
                entries.pop(name, None)
                break
            seen.add(base)
            options = {**(entries[base].options or {}), **options}
            base = entries[base].meta.get("_extends")
        else:
            if entry.meta.get("_extends") is not None:
                entries[name] = dataclasses.replace(entry, options=options)
    return Declarations(kind, entries, broken)


def registry(kind: str) -> Declarations:
    """The components of ``kind`` (one of :data:`KINDS`), read from their files' declarations."""
    if kind not in KINDS:
        raise HarnessError(f"unknown component kind {kind!r}; expected one of: {', '.join(KINDS)}")
    stamp = tuple((str(p), p.stat().st_mtime_ns) for package in KINDS[kind] for _, p in _package_files(package))
    return _scan(kind, stamp)


def get(kind: str, name: str) -> Entry:
    """The entry ``name`` of ``kind``; one-line :class:`~harness.errors.HarnessError` otherwise."""
    return registry(kind).get(name)


def load(kind: str, name: str) -> Any:
    """Import and return the object implementing ``name`` of ``kind``."""
    return get(kind, name).load()


__all__ = ["Component", "Entry", "KINDS", "get", "load", "module_constant", "module_version", "registry"]
