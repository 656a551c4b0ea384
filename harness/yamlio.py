"""YAML files with ``include:``: deep merge, cycle detection, and the origin of every key.

Used by study files and task files alike. Problems raise :class:`StudyError` with the
file (and line, for syntax errors) they come from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from harness.errors import StudyError


def display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{display(path)}:{mark.line + 1}:{mark.column + 1}" if mark else display(path)
        raise StudyError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{display(path)}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StudyError(f"{display(path)}: <top>: expected a mapping of study settings, found {type(data).__name__}")
    return data


def load_with_includes(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """Read ``path``, merge the files it includes under it, and record where each key came from."""
    if path in chain:
        cycle = " -> ".join(display(p) for p in (*chain, path))
        raise StudyError(f"{display(chain[-1])}: include: include cycle: {cycle}")
    data = read_yaml(path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise StudyError(f"{display(path)}: include: expected a file path or a list of file paths, found {includes!r}")
    merged: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    for inc in includes:
        inc_path = (path.parent / inc).resolve()
        if not inc_path.is_file():
            raise StudyError(f"{display(path)}: include: file not found: {inc} (resolved to {inc_path})")
        sub, sub_origins = load_with_includes(inc_path, (*chain, path))
        merged = _deep_merge(merged, sub)
        origins.update(sub_origins)
    merged = _deep_merge(merged, data)
    _record_origins(data, path, "", origins)
    return merged, origins


def _deep_merge(base: dict, override: dict) -> dict:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _record_origins(data: Any, path: Path, prefix: str, origins: dict[str, Path]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            sub = f"{prefix}.{key}" if prefix else str(key)
            origins[sub] = path
            _record_origins(value, path, sub, origins)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            sub = f"{prefix}[{i}]"
            origins[sub] = path
            _record_origins(value, path, sub, origins)
