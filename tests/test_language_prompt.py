"""The zero-shot prompt template of a task (``prompt:``): declared in the task file, checked at plan,
absent from a task that does not set it (so its key is unchanged), and used to build the prompts."""

from __future__ import annotations

import pytest

from harness.errors import StudyError
from probes.language import PROMPT, prompt_for


def _task_dir(tmp_path, prompt_line: str):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "zs.yaml").write_text(
        "domain: environment\nkind: zero-shot\nmetric: accuracy\nadapter: minisuite\n"
        f"args: {{task: env_event}}\n{prompt_line}")
    return folder


def test_prompt_template_fills_the_label() -> None:
    assert prompt_for("dog_bark") == "the sound of dog bark" == PROMPT.format(label="dog bark")
    assert prompt_for("dog_bark", "This is a sound of {label}.") == "This is a sound of dog bark."


def test_task_prompt_is_read_and_checked(tmp_path, monkeypatch) -> None:
    from harness import tasks

    monkeypatch.setenv("HARNESS_TASK_PATH", str(_task_dir(tmp_path, 'prompt: "This is a sound of {label}."\n')))
    tasks._index.cache_clear()
    assert tasks.load_task("zs")["prompt"] == "This is a sound of {label}."
    assert "prompt" not in tasks.load_task("mini/env_event")  # no prompt: the key stays as it was


def test_task_prompt_without_label_is_one_line_at_plan(tmp_path, monkeypatch) -> None:
    from harness import tasks

    monkeypatch.setenv("HARNESS_TASK_PATH", str(_task_dir(tmp_path, 'prompt: "a sound"\n')))
    tasks._index.cache_clear()
    with pytest.raises(StudyError, match=r"zs.yaml: prompt: expected a string matching"):
        tasks.load_task("zs")
