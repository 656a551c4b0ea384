"""Study files: loading, include, strict validation with one-line messages, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import StudyError
from harness.study import load_study

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "studies" / "quickstart.yaml"

MINIMAL = """
name: tiny
data:
  sources: [{name: mini, kind: minisuite}]
tagging: {sizes: [8]}
pretrain:
  encoder: transformer
  objectives: [mtc]
probes:
  tasks: [mini/env_event]
"""


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StudyError) as info:
        load_study(path)
    return info.value.problems


def test_quickstart_loads_with_defaults_resolved():
    study = load_study(QUICKSTART)
    cfg = study.config
    assert study.name == "quickstart"
    assert cfg["tagging"]["sizes"] == [32, 64]
    assert cfg["tagging"]["parser"] == {"backend": "rules", "max_tags": 10}  # from the included base
    assert cfg["pretrain"]["encoder"] == {"name": "transformer", "size": "tiny", "options": {}}
    objectives = cfg["pretrain"]["objectives"]
    assert objectives[0] == {"name": "mtc", "options": {}}  # shorthand expanded
    assert [o["name"] for o in objectives] == ["mtc", "par", "captioning", "contrastive", "multitask"]
    assert cfg["compute"]["executor"] == "local"
    assert len(cfg["probes"]["tasks"]) == 6  # speech 2, music 2, environment 2 (one multi-label)


def test_minimal_study_gets_defaults(tmp_path):
    cfg = load_study(write(tmp_path, MINIMAL)).config
    assert cfg["pretrain"]["seeds"] == [0]
    assert cfg["pretrain"]["steps"] == 300
    assert cfg["probes"]["heads"] == ["linear"]
    assert cfg["compute"]["threads_per_job"] == 1


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path, MINIMAL.replace("objectives: [mtc]", "objectives: [mtc]\n  stepz: 10"))
    [line] = problems(path)
    assert line.startswith(f"{os.path.relpath(path)}: pretrain.stepz: unknown key (did you mean 'steps'?)")


def test_wrong_type_says_expected_and_found(tmp_path):
    path = write(tmp_path, MINIMAL.replace("objectives: [mtc]", "objectives: [mtc]\n  steps: lots"))
    [line] = problems(path)
    assert "pretrain.steps: expected an integer >= 1, found a string 'lots'" in line


def test_bad_value_and_bad_choice(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", "tagging: {sizes: [0]}").replace("kind: minisuite", "kind: minisuit")
    lines = problems(write(tmp_path, text))
    assert any("tagging.sizes[0]: expected an integer >= 1, found an integer 0" in l for l in lines)
    assert any("data.sources[0].kind: expected one of 'minisuite', 'audiocaps', 'audioset', 'clotho', 'generic', "
               "'uts', 'wavcaps', 'mix', found 'minisuit' (did you mean 'minisuite'?)" in l
               for l in lines)


def test_every_problem_is_reported_at_once(tmp_path):
    text = MINIMAL.replace("objectives: [mtc]", "objectives: [mtc]\n  steps: -1\n  lr: fast\n  colour: red")
    lines = problems(write(tmp_path, text))
    assert len(lines) == 3
    assert {l.split(": ")[1] for l in lines} == {"pretrain.steps", "pretrain.lr", "pretrain.colour"}


def test_missing_required_key(tmp_path):
    [line] = problems(write(tmp_path, MINIMAL.replace("name: tiny\n", "")))
    assert "name: missing required key" in line


def test_unknown_component_names(tmp_path):
    text = MINIMAL.replace("objectives: [mtc]", "objectives: [mtx]").replace("mini/env_event", "mini/nope")
    lines = problems(write(tmp_path, text))
    assert any("pretrain.objectives[0].name: unknown objective" in l and "'mtx'" in l for l in lines)
    assert any("probes.tasks[0]: unknown task" in l and "mini/env_event" in l for l in lines)


def test_missing_include(tmp_path):
    path = write(tmp_path, "include: nowhere.yaml\n" + MINIMAL)
    [line] = problems(path)
    assert line.startswith(f"{os.path.relpath(path)}: include: file not found: nowhere.yaml")


def test_include_cycle(tmp_path):
    write(tmp_path, "include: b.yaml\n", "a.yaml")
    write(tmp_path, "include: a.yaml\n", "b.yaml")
    [line] = problems(tmp_path / "a.yaml")
    assert "include cycle" in line


def test_invalid_yaml_gives_line_and_column(tmp_path):
    path = write(tmp_path, "name: x\npretrain: [unclosed\n")
    [line] = problems(path)
    assert line.startswith(f"{os.path.relpath(path)}:3:") and "invalid YAML" in line


def test_include_overrides_and_errors_name_the_file_they_come_from(tmp_path):
    write(tmp_path, MINIMAL.replace("name: tiny\n", "") + "compute: {threads_per_job: 0}\n", "base/common.yaml")
    child = write(tmp_path, "include: base/common.yaml\nname: child\ntagging: {sizes: [4, 8]}\n")
    [line] = problems(child)
    assert line.startswith(f"{os.path.relpath(tmp_path / 'base' / 'common.yaml')}: compute.threads_per_job")
    child.write_text("include: base/common.yaml\nname: child\ntagging: {sizes: [4, 8]}\ncompute: {threads_per_job: 2}\n")
    cfg = load_study(child).config
    assert cfg["tagging"]["sizes"] == [4, 8] and cfg["compute"]["threads_per_job"] == 2
    assert cfg["pretrain"]["objectives"][0]["name"] == "mtc"  # inherited


def test_tag_objective_without_sizes_is_rejected(tmp_path):
    [line] = problems(write(tmp_path, MINIMAL.replace("tagging: {sizes: [8]}", "")))
    assert "tagging.sizes" in line and "mtc" in line


def test_missing_tag_system_file(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", "tagging: {files: [label_1.5k.json]}")
    [line] = problems(write(tmp_path, text))
    assert "tagging.files[0]: file not found: label_1.5k.json" in line


@pytest.mark.parametrize("command", ["plan", "run", "status", "report"])
def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path, command):
    path = write(tmp_path, MINIMAL.replace("objectives: [mtc]", "objectives: [mtc]\n  stepz: 10"))
    proc = subprocess.run([sys.executable, "-m", "harness", command, str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: study.yaml: pretrain.stepz: unknown key (did you mean 'steps'?); expected one of: "
                     + ", ".join(["encoder", "objectives", "baselines", "seeds", "steps", "batch_size", "max_duration",
                                  "num_buckets", "optimizer", "average_period", "lr", "weight_decay", "warmup_steps", "grad_clip", "grad_accum", "checkpoint_every",
                                  "specaugment", "stream"])]


def test_cli_missing_study_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "plan", "nope.yaml"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: nope.yaml: study file not found"


def test_plan_and_status_import_no_torch(tmp_path):
    """The study/graph/store/CLI layer answers without importing torch, numpy or pandas."""
    code = ("import sys, io, contextlib\nfrom harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main(['plan', {str(QUICKSTART)!r}, '--out', {str(tmp_path)!r}])\n"
            f"    main(['status', {str(QUICKSTART)!r}, '--out', {str(tmp_path)!r}])\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'lhotse') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_backend_blocks_need_their_settings_and_reject_foreign_ones(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", """tagging:
  sizes: [8]
  captioner: {backend: openai, temperature: 0.7}
  parser: {backend: rules, prompt: "Tags please", concurrency: 4}""")
    lines = problems(write(tmp_path, text))
    assert any(l.endswith("tagging.captioner.model: missing required key for the 'openai' backend") for l in lines)
    assert any("tagging.captioner.base_url: missing required key" in l for l in lines)
    assert any("tagging.parser.prompt: not used by the 'rules' backend; it reads: max_tags" in l for l in lines)
    assert any("tagging.parser.concurrency: not used by the 'rules' backend" in l for l in lines)


def test_base_url_cannot_carry_injected_text(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", """tagging:
  sizes: [8]
  parser: {backend: openai, model: qwen, base_url: "http://x/v1 --evil"}""")
    lines = problems(write(tmp_path, text))
    assert any("tagging.parser.base_url: expected" in l for l in lines)


def test_transformers_parser_folder_must_exist_and_resolves_relative_to_the_study(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", """tagging:
  sizes: [8]
  parser: {backend: transformers, model: models/lm}""")
    path = write(tmp_path, text)
    assert any("tagging.parser.model: expected a local model folder" in l for l in problems(path))
    (tmp_path / "models" / "lm").mkdir(parents=True)
    parser = load_study(path).config["tagging"]["parser"]
    assert parser == {"backend": "transformers", "model": str((tmp_path / "models" / "lm").resolve()), "seed": 0}


def test_template_captioner_defaults_to_the_events_field(tmp_path):
    text = MINIMAL.replace("tagging: {sizes: [8]}", "tagging: {sizes: [8], captioner: template, "
                                                    "merge_synonyms: {threshold: 0.92}}")
    tagging = load_study(write(tmp_path, text)).config["tagging"]
    assert tagging["captioner"] == {"backend": "template", "field": "events", "seed": 0}
    assert tagging["merge_synonyms"] == {"threshold": 0.92, "model": None}


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_is_valid(path, tmp_path, monkeypatch):
    if path.name == "external.yaml":  # its arms are model folders the user points it at
        from external_models import save_wav2vec2, write_hear_module

        monkeypatch.setenv("EXTERNAL_HF", str(save_wav2vec2(tmp_path / "wav2vec2-tiny")))
        monkeypatch.setenv("EXTERNAL_HEAR", str(write_hear_module(tmp_path / "hear")))
    study = load_study(path)
    assert study.name and study.config["probes"]["tasks"]


def test_every_broken_task_is_one_line_at_plan(tmp_path, monkeypatch, capsys):
    """Four tasks whose dataset root is unset give four lines, not one; an unknown task
    says where task files are looked for."""
    from harness.cli import main

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for i in range(4):
        (tasks / f"broken{i}.yaml").write_text(
            "domain: environment\nkind: multiclass\nmetric: accuracy\nadapter: esc50\n"
            f"args: {{root: $NOT_SET_{i}}}\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", str(tasks))
    for i in range(4):
        monkeypatch.delenv(f"NOT_SET_{i}", raising=False)
    study = write(tmp_path, MINIMAL.replace("tasks: [mini/env_event]",
                                            "tasks: [broken0, broken1, broken2, broken3, mini/env_evnt]"))
    assert main(["plan", str(study)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 5, lines
    for i in range(4):
        assert any(f"probes.tasks[{i}]" in line and f"NOT_SET_{i}" in line for line in lines)
    (unknown,) = [line for line in lines if "probes.tasks[4]" in line]
    assert "unknown task 'mini/env_evnt' (did you mean 'mini/env_event'?)" in unknown
    assert "HARNESS_TASK_PATH" in unknown


def test_misspelt_component_options_are_caught_at_plan(tmp_path):
    """Every option of an objective and of an encoder is checked against its declaration."""
    text = MINIMAL.replace("objectives: [mtc]", "objectives: [{name: mtc, options: {dropuot: 0.1}}]").replace(
        "encoder: transformer", "encoder: {name: transformer, size: tinny, options: {num_layer: 2, dim: wide}}")
    lines = problems(write(tmp_path, text))
    assert any("pretrain.objectives[0].options.dropuot: not an option of the 'mtc' objective "
               "(did you mean 'dropout'?)" in line for line in lines)
    assert any("pretrain.encoder.options.num_layer: not an option of the 'transformer' encoder "
               "(did you mean 'num_layers'?)" in line for line in lines)
    assert any("pretrain.encoder.options.dim: expected an integer >= 1, found a string 'wide'" in line
               for line in lines)
    assert any("pretrain.encoder.size: expected one of tiny, small, base" in line and "did you mean 'tiny'" in line
               for line in lines)
    assert len(lines) == 4


def test_dataset_jobs_are_named_by_their_source_or_task(tmp_path, capsys):
    """plan, status and progress name a dataset job by what it is read for, not 'dataset'."""
    from harness.cli import main
    from harness.graph import expand
    from harness.study import load_study

    study = write(tmp_path, MINIMAL)
    (node,) = [n for n in expand(load_study(study).config) if n.stage == "dataset"]
    assert node.label == "mini (minisuite)"
    assert main(["plan", str(study)]) == 0
    assert f"{node.key}  mini (minisuite)" in capsys.readouterr().out
