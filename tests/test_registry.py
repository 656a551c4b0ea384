"""The component registry: declarations read from source (never imported), one line per
broken declaration, inherited options, presets, versions."""

from __future__ import annotations

import sys
import textwrap

import pytest

from harness import registry as reg
from harness.schema import Context


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A temporary package ``plugkit`` registered as the folder of a kind ``widget``."""
    package = tmp_path / "plugkit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(reg.KINDS, "widget", ("plugkit",))
    reg._package_folders.cache_clear()

    def write(name: str, body: str) -> None:
        (package / f"{name}.py").write_text(textwrap.dedent(body))

    yield write
    reg._package_folders.cache_clear()
    sys.modules.pop("plugkit", None)


def test_declarations_are_read_without_importing_the_file(plugins):
    plugins("alpha", '''
        raise RuntimeError("importing me is a bug")
        COMPONENT = Component(kind="widget", target="Alpha", version="3", doc="a",
                              options={"size": Num(4, integer=True, min=1), "mode": Str("x", choices=["x", "y"])})
    ''')
    plugins("helper", "VALUE = 1\n")  # no declaration: a helper module, not a component
    widgets = reg.registry("widget")
    assert widgets.names() == ["alpha"] and not widgets.broken
    entry = widgets.get("alpha")
    assert (entry.version, sorted(entry.options)) == ("3", ["mode", "size"])
    ctx = Context(base_dir=entry.file.parent)
    entry.check_options({"sise": 2, "mode": "z"}, "x.options", ctx)
    assert [p.message for p in ctx.problems] == [
        "not an option of the 'alpha' widget (did you mean 'size'?); its options: mode, size",
        "expected one of 'x', 'y', found 'z'"]


def test_each_broken_declaration_is_one_line(plugins):
    plugins("noversion", 'COMPONENT = Component(kind="widget", target="X")\n')
    plugins("code", 'import os\nCOMPONENT = Component(kind="widget", target="X", version=os.sep)\n')
    plugins("syntax", 'COMPONENT = Component(kind="widget", target="X", version="1"\n')
    widgets = reg.registry("widget")
    assert widgets.names() == []
    assert "declares no version" in widgets.problem("noversion")
    assert "may use only literals and harness.schema nodes, found the name 'os'" in widgets.problem("code")
    assert "cannot be read" in widgets.problem("syntax")
    assert "unknown widget 'nope'" in widgets.problem("nope")
    assert all("\n" not in widgets.problem(n) for n in ("noversion", "code", "syntax", "nope"))


def test_extends_inherits_options_and_refuses_cycles(plugins):
    plugins("base", '''
        COMPONENT = Component(kind="widget", target="B", version="1", options={"a": Num(1), "b": Num(2)})
    ''')
    plugins("child", '''
        COMPONENT = Component(kind="widget", target="C", version="1", extends="base", options={"b": Num(5), "c": Num(3)})
    ''')
    plugins("loop1", 'COMPONENT = Component(kind="widget", target="L", version="1", extends="loop2")\n')
    plugins("loop2", 'COMPONENT = Component(kind="widget", target="L", version="1", extends="loop1")\n')
    widgets = reg.registry("widget")
    child = widgets.get("child")
    assert sorted(child.options) == ["a", "b", "c"] and child.options["b"].default == 5
    assert "part of a cycle" in widgets.problem("loop1")


def test_an_edited_file_is_read_again(plugins):
    plugins("gamma", 'COMPONENT = Component(kind="widget", target="G", version="1")\n')
    assert reg.registry("widget").get("gamma").version == "1"
    import os
    import time

    plugins("gamma", 'COMPONENT = Component(kind="widget", target="G", version="2")\n')
    path = reg.registry("widget").get("gamma").file
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))  # a new modification time
    assert reg.registry("widget").get("gamma").version == "2"


def test_encoder_presets_and_versions_come_from_the_files():
    encoders = reg.registry("encoder")
    assert encoders.get("transformer").presets() == ["tiny", "small", "base"]
    assert "m" in encoders.get("zipformer").presets()
    assert reg.module_version("harness.stages.probe") == reg.registry("stage").get("probe").version
