"""results/table.py and results/paper.py: the Table model, its renderers, published numbers.

Checks content, not files: the bold cell is the right one, the ± text and the seed count
line are there, LaTeX is structurally sound (and compiles when pdflatex is installed),
rendering is deterministic, and the published numbers equal the reference CSV's.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from results.paper import PAPER_MODELS, PAPER_TASKS, paper_model_for, paper_numbers, paper_task_for
from results.table import (Column, build_table, build_tables, latex_escape, load_results, pivot, to_csv,
                           to_latex, to_markdown, with_paper)

REFERENCE_CSV = Path(__file__).resolve().parents[1] / "results" / "reference" / "uts_linear_probe.csv"

TASKS = [  # (task, domain, metric)
    ("paper/fsd50k", "environment", "map"),
    ("paper/voxceleb2", "speech", "accuracy"),
    ("paper/nsynth", "music", "accuracy"),
    ("mini/env_event", "environment", "accuracy"),
]
ARMS = [  # (label, objective, source, tag_system, level)
    ("as/mtc audioset", "mtc", "audioset", "audioset-527", 0.80),
    ("cap/mtc uts-1.5k", "mtc", "cap", "uts-1.5k", 0.60),
    ("cap/contrastive", "contrastive", "cap", "-", 0.59),
    ("random", "random", "-", "-", 0.10),
]
# Per-seed offsets: the seed spread is small for all but voxceleb2, where mtc uts and
# contrastive overlap and audioset is not the best.
OFFSETS = [-0.01, 0.0, 0.01]


def _frame(seeds=(0, 1, 2), arms=ARMS, head="linear-mean"):
    rows = []
    for label, objective, source, tags, level in arms:
        for seed in seeds:
            for task, domain, metric in TASKS:
                value = level + OFFSETS[seed % 3]
                if task == "paper/voxceleb2":
                    value = {"as/mtc audioset": 0.3}.get(label, value)
                for probe_seed, jitter in ((0, -0.002), (1, 0.002)):
                    rows.append({
                        "study": "t", "run": f"{label} s{seed}", "source": source, "tag_system": tags,
                        "tag_system_size": float("nan"), "objective": objective, "encoder": "transformer-tiny",
                        "seed": seed, "task": task, "domain": domain, "probe_seed": probe_seed, "split": "test",
                        "n_test": 100, "metric": metric, "head": head, "value": value + jitter,
                    })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the model

def test_table_cells_match_pandas_and_order():
    frame = _frame()
    table = build_table(frame, "linear-mean")
    assert table.rows == ("as/mtc audioset", "cap/contrastive", "cap/mtc uts-1.5k", "random")
    assert [(c.domain, c.task) for c in table.columns] == [
        ("speech", "paper/voxceleb2"), ("music", "paper/nsynth"),
        ("environment", "mini/env_event"), ("environment", "paper/fsd50k")]
    frame["arm"] = frame["run"].str.replace(r" s\d+$", "", regex=True)
    expected = frame.groupby(["arm", "task"])["value"].mean()
    seeds = frame.groupby(["arm", "task"])["seed"].nunique()
    for (arm, task), mean in expected.items():
        column = next(c for c in table.columns if c.task == task)
        cell = table.cell(arm, column)
        assert cell.mean == pytest.approx(mean, abs=1e-12)
        assert cell.n == seeds[(arm, task)] == 3
    assert table.row_info["cap/mtc uts-1.5k"]["objective"] == "mtc"


def test_bold_cell_is_the_one_beyond_the_interval():
    table = build_table(_frame(), "linear-mean")
    bold = {(r, c.task) for (r, c), cell in table.cells.items() if cell.bold}
    # audioset wins every task but voxceleb2, where mtc uts (0.60) and contrastive (0.59) overlap
    assert bold == {("as/mtc audioset", "paper/fsd50k"), ("as/mtc audioset", "paper/nsynth"),
                    ("as/mtc audioset", "mini/env_event")}
    text = to_markdown(table)
    line = next(l for l in text.splitlines() if l.startswith("| as/mtc audioset |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # arm, seeds, voxceleb2, nsynth, env_event, fsd50k
    assert cells[1] == "3"
    assert cells[2] == "0.300 ± 0.000" and not cells[2].startswith("**")
    assert cells[3] == "**0.800 ± 0.025**"  # t_{.975,2} * 0.01 / sqrt(3) = 0.0248
    assert "Rests on 3 pre-training seeds per cell" in text
    assert "95% Student-t" in text
    latex = to_latex(table)
    assert r"\textbf{0.800 $\pm$ 0.025}" in latex
    assert latex.count(r"\textbf{") == 3


def test_single_seed_table_claims_nothing():
    table = build_table(_frame(seeds=(0,)), "linear-mean")
    assert not any(c.bold for c in table.cells.values())
    text = to_markdown(table)
    assert "±" not in text.split("\n\n")[1]  # the table body has no intervals
    assert "Rests on 1 pre-training seed per cell: single runs, no confidence intervals." in text
    assert "Bold" not in text and "bold" not in to_latex(table)  # no rule where nothing can be bold
    highest = build_table(_frame(seeds=(0,)), "linear-mean", without_interval="highest")
    assert {(r, c.task) for (r, c), cell in highest.cells.items() if cell.bold} == {
        ("as/mtc audioset", t) for t in ("paper/fsd50k", "paper/nsynth", "mini/env_event")} | {
        ("cap/mtc uts-1.5k", "paper/voxceleb2")}
    assert "no significance claimed" in to_markdown(highest)


def test_mixed_seed_counts_are_stated():
    frame = pd.concat([_frame(arms=ARMS[:3]), _frame(seeds=(0,), arms=ARMS[3:])])
    table = build_table(frame, "linear-mean")
    text = to_markdown(table)
    assert "Rests on 1–3 pre-training seeds per cell" in text
    assert "| random | 1 |" in text
    assert "| as/mtc audioset | 3 |" in text


def test_head_selection():
    frame = pd.concat([_frame(), _frame(head="linear-attention")])
    with pytest.raises(ValueError, match="several heads"):
        build_table(frame)
    tables = build_tables(frame)
    assert list(tables) == ["linear-attention", "linear-mean"]
    assert tables["linear-attention"].label == "tab:probe-linear-attention"
    assert build_table(_frame()).head == "linear-mean"


# --------------------------------------------------------------------------- determinism, CSV

def test_rendering_is_deterministic_and_independent_of_row_order():
    frame = _frame()
    shuffled = frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    for render in (to_markdown, to_latex, to_csv):
        first = render(build_table(frame, "linear-mean"))
        assert first == render(build_table(frame, "linear-mean"))
        assert first == render(build_table(shuffled, "linear-mean"))
        paper_first = render(with_paper(build_table(frame, "linear-mean")))
        assert paper_first == render(with_paper(build_table(shuffled, "linear-mean")))


def test_csv_is_tidy():
    table = build_table(_frame(), "linear-mean")
    out = pd.read_csv(io.StringIO(to_csv(table)))
    assert list(out.columns) == ["head", "arm", "domain", "task", "metric", "kind", "mean", "ci", "n", "bold", "source",
                                 "n_test", "chance"]
    assert (out["n_test"] == 100).all() and out["chance"].isna().all()  # _frame has no class counts
    assert len(out) == len(ARMS) * len(TASKS)
    row = out[(out.arm == "as/mtc audioset") & (out.task == "paper/nsynth")].iloc[0]
    assert row["mean"] == pytest.approx(0.8, abs=1e-6) and row["bold"] == 1 and row["n"] == 3
    assert out["bold"].sum() == 3
    one = pd.read_csv(io.StringIO(to_csv(build_table(_frame(seeds=(0,)), "linear-mean"))))
    assert one["ci"].isna().all()


def test_load_results_and_pivot_round_trip(tmp_path):
    frame = _frame()
    path = tmp_path / "results.parquet"
    frame.to_parquet(path, index=False)
    loaded = load_results(path)
    assert len(loaded) == len(frame)
    p = pivot(loaded, "linear-mean")
    assert list(p.columns)[:2] == ["paper/voxceleb2", "paper/nsynth"]
    assert p.loc["random s0", "paper/fsd50k"] == pytest.approx(0.09)


def test_rows_are_the_arm_column_not_parsed_labels(tmp_path):
    """The table groups by ``arm``; only a table without the column (written before it)
    falls back to the run label without its seed suffix."""
    frame = _frame(seeds=(0, 1))
    legacy = build_table(frame, "linear-mean")
    assert "arm" not in frame.columns and legacy.rows == ("as/mtc audioset", "cap/contrastive", "cap/mtc uts-1.5k",
                                                          "random")
    named = frame.assign(arm=frame["objective"] + " arm")  # an arm the run labels do not spell
    assert build_table(named, "linear-mean").rows == ("contrastive arm", "mtc arm", "random arm")
    path = tmp_path / "results.parquet"
    frame.to_parquet(path, index=False)
    assert load_results(path)["arm"].tolist() == [r.rsplit(" s", 1)[0] for r in frame["run"]]


# --------------------------------------------------------------------------- LaTeX

def _tabular_rows(latex: str) -> tuple[str, list[str]]:
    """The column spec and the rows of the first tabular."""
    return _tabulars(latex)[0]


def _tabulars(latex: str) -> list[tuple[str, list[str], str]]:
    """(column spec, rows, whole text) of every tabular of a float."""
    out = []
    for chunk in latex.split(r"\begin{tabular}")[1:]:
        spec = re.match(r"\{([^}]*)\}", chunk).group(1)
        body = chunk.split(r"\end{tabular}", 1)[0]
        out.append((spec, [line for line in body.splitlines() if line.rstrip().endswith(r"\\")], body))
    return out


def _row_width(row: str) -> int:
    width = 0
    for cell in re.split(r"(?<!\\)&", row.rstrip()[:-2]):
        m = re.match(r"\s*\\multicolumn\{(\d+)\}", cell)
        width += int(m.group(1)) if m else 1
    return width


def _balanced(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _all_tables() -> dict[str, str]:
    weird = [("data_1/mtc 50% & #2", "mtc", "data_1", "uts_{x}", 0.7), ARMS[3]]
    tables = {
        "plain": build_table(_frame(), "linear-mean"),
        "one-seed": build_table(_frame(seeds=(0,)), "linear-mean"),
        "paper": with_paper(build_table(_frame(), "linear-mean")),
        "special": build_table(_frame(arms=weird), "linear-mean", caption="Specials: 100% _ & # $ ~ ^ \\ {x}"),
        "empty": build_table(_frame().iloc[:0], "linear-mean"),
    }
    out = {name: to_latex(t) for name, t in tables.items()}
    out["no-fit"] = to_latex(tables["plain"], fit_width=False)
    return out


def test_latex_structure():
    from results.table import FIT_OPEN

    for name, latex in _all_tables().items():
        assert _balanced(latex), name
        tabulars = _tabulars(latex)
        assert len(tabulars) == (3 if name == "paper" else 1), name  # the wide comparison: one per domain
        for spec, rows, body in tabulars:
            assert spec.startswith("l") and set(spec) <= {"l", "r"}
            assert rows, name
            for row in rows:
                assert _row_width(row) == len(spec), (name, row)
            for rule in (r"\toprule", r"\bottomrule"):
                assert body.count(rule) == 1, (name, rule)
            assert body.count(r"\midrule") == (2 if "n test" in body else 1), name  # arms, then n test / chance
            assert body.index(r"\toprule") < body.index(r"\midrule") < body.index(r"\bottomrule")
        assert latex.count(FIT_OPEN) == (0 if name == "no-fit" else len(tabulars)), name
        # the caption comes first, above the tabular, with a gap before the top rule
        assert latex.index(r"\caption{") < latex.index(r"\begin{tabular}"), name
        assert r"\setlength{\belowcaptionskip}{6pt}" in latex
        assert r"\caption{" in latex and r"\label{tab:" in latex
        assert "pre-training seed" in latex or "No results." in latex
        body = latex.split(r"\begin{tabular}", 1)[1].replace(FIT_OPEN, "")
        assert not re.search(r"(?<!\\)[%#_]", re.sub(r"\\(cmidrule|multicolumn)", "", body)), name
    plain = _all_tables()["plain"]
    assert r"\multicolumn{2}{c}{Environment}" in plain and r"\cmidrule(lr){4-5}" in plain
    assert r"event (acc)" in plain and r"fsd50k (mAP)" in plain  # short task names under their domain
    assert r"\textit{n test} & 100 & 100 & 100 & 100 \\" in plain
    assert "Seeds" not in plain  # every arm has 3 seeds: said once in the note, no column


def test_latex_numbers_use_a_minus_sign():
    from results.table import latex_float, minus

    assert latex_float("[-0.050, +0.090]") == "[$-$0.050, $+$0.090]"
    assert latex_float("mtc-2 -0.5") == "mtc-2 $-$0.5"  # a hyphen inside a word stays
    assert minus("[-0.050, +0.090]") == "[\u22120.050, +0.090]"
    frame = _frame()
    frame.loc[frame["task"] == "mini/env_event", "value"] -= 1.0  # negative values
    table = build_table(frame, "linear-mean")
    latex = to_latex(table)
    assert "$-$0.900" in latex and not re.search(r"(?<![\w$])-\d", latex)
    assert "\u22120.900" in to_markdown(table) and "-0.900" in to_csv(table)


def test_latex_escapes_specials():
    assert latex_escape("a_b 50% & #1 $x ~ ^ \\ {y}") == (
        r"a\_b 50\% \& \#1 \$x \textasciitilde{} \textasciicircum{} \textbackslash{} \{y\}")
    special = _all_tables()["special"]
    assert r"data\_1/mtc 50\% \& \#2" in special
    assert r"\caption{Specials: 100\% \_ \& \# \$ \textasciitilde{} \textasciicircum{} \textbackslash{} \{x\}}" in special


def compile_two_column(tables: dict[str, str], folder: Path) -> str:
    """Compile each table in a two-column article (its own page, so a log line names it);
    returns the log. Fails on a LaTeX error."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended); "
                    "test_latex_structure checks the structure instead")
    body = []
    for name, latex in tables.items():
        body += [rf"\typeout{{TABLE {name}}}", latex, r"\clearpage"]
    document = "\n".join([r"\documentclass[twocolumn]{article}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
                          r"\begin{document}", *body, r"\end{document}", ""])
    (folder / "tables.tex").write_text(document, encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:]
    assert (folder / "tables.pdf").stat().st_size > 0
    log = (folder / "tables.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log
    return log


def overfull(log: str) -> list[str]:
    """The overfull boxes of a log, each with the table it came from."""
    found, current = [], "?"
    for line in log.splitlines():
        if line.startswith("TABLE "):
            current = line[6:]
        if "Overfull" in line:
            found.append(f"{current}: {line}")
    return found


def test_latex_compiles_in_a_two_column_article_without_overfull_boxes(tmp_path):
    wide = [(f"src{i}/multitask K={k}", "multitask", f"src{i}", f"uts-{k}", 0.5) for i in range(3) for k in (800, 3000)]
    tables = {**_all_tables(), "wide": to_latex(build_table(_frame(arms=wide + ARMS), "linear-mean"))}
    log = compile_two_column(tables, tmp_path)
    assert not overfull(log), overfull(log)


# --------------------------------------------------------------------------- published numbers

def test_paper_numbers_equal_the_reference_csv():
    paper = paper_numbers()
    with REFERENCE_CSV.open(newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    assert len(paper) == len(raw) > 0
    for row, (_, got) in zip(raw, paper.iterrows()):
        assert got["model"] == row["model"] and got["paper_task"] == row["task"]
        assert got["published"] == pytest.approx(float(row["value"]))
        divisor = {"percent": 100.0, "fraction": 1.0}[row["scale"]]
        assert got["value"] == pytest.approx(float(row["value"]) / divisor)
        assert 0.0 <= got["value"] <= 1.0
        assert row["source"].strip() and "2603.25767" in row["source"] and "secondary summary" in row["source"]
        assert got["task"] == PAPER_TASKS[row["task"]][0] and got["domain"] == PAPER_TASKS[row["task"]][1]
    assert set(paper["metric"]) == {"accuracy", "map"}
    assert set(paper["model"]) <= set(PAPER_MODELS)
    # the path argument reads a user-given file of the same format
    assert paper_numbers(REFERENCE_CSV).equals(paper)


def test_paper_numbers_reject_rows_without_source(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,pooling,task,metric,value,scale,source\nMTC-UTS,mean,MTAT,mAP,0.3,fraction,\n")
    with pytest.raises(ValueError, match="source"):
        paper_numbers(bad)


def test_paper_mappings():
    assert paper_task_for("paper/fsd50k") == "FSD50K" and paper_task_for("cremad") == "CREMA-D"
    assert paper_task_for("mini/env_event") is None
    assert paper_model_for({"objective": "mtc", "tag_system": "uts-1.5k"}) == "MTC-UTS"
    assert paper_model_for({"objective": "mtc", "source": "audioset", "tag_system": "-"}) == "MTC-AudioSet"
    assert paper_model_for({"objective": "contrastive", "tag_system": "-"}) == "Contrastive"
    assert paper_model_for({"objective": "multitask", "tag_system": "uts-2k"}) == "Multi-task"
    assert paper_model_for({"objective": "random"}) is None


def test_with_paper_columns_deltas_and_footnotes():
    table = build_table(_frame(), "linear-mean")
    compared = with_paper(table)
    paper = paper_numbers().set_index(["model", "pooling", "paper_task"])["value"]
    fsd = Column("environment", "paper/fsd50k", "map")
    row = "cap/mtc uts-1.5k"
    published = paper[("MTC-UTS", "mean", "FSD50K")]
    assert compared.cell(row, Column(fsd.domain, fsd.task, fsd.metric, "paper")).mean == pytest.approx(published)
    delta = compared.cell(row, Column(fsd.domain, fsd.task, fsd.metric, "delta"))
    assert delta.mean == pytest.approx(table.cell(row, fsd).mean - published)
    assert delta.ci == table.cell(row, fsd).ci
    # no paper counterpart: the random arm, and the mini task
    env = Column("environment", "mini/env_event", "accuracy", "paper")
    assert compared.cell(row, env) is None
    assert compared.cell("random", Column(fsd.domain, fsd.task, fsd.metric, "paper")) is None
    assert [c.kind for c in compared.columns[:3]] == ["paper", "run", "delta"]
    text = to_markdown(compared)
    line = next(l for l in text.splitlines() if l.startswith("| cap/mtc uts-1.5k (MTC-UTS) |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # voxceleb2: paper 37.10 % -> 0.371, this run 0.600 ± 0.025, Δ +0.229
    assert cells[2:5] == ["0.371 [1]", "0.600 ± 0.025", "+0.229 ± 0.025"]
    assert "| random | 3 | – | 0.100 ± 0.025 | – |" in text
    assert "[1] UTS, arXiv 2603.25767, main linear-probe table (secondary summary; not checked against the PDF)" in text
    assert "Δ = this run − paper" in text
    latex = to_latex(compared)
    assert r"0.371\textsuperscript{1}" in latex and r"$+$0.229 $\pm$ 0.025" in latex
    assert r"\textsuperscript{1}UTS, arXiv 2603.25767" in latex
    out = pd.read_csv(io.StringIO(to_csv(compared)))
    cell = out[(out.arm == row) & (out.task == "paper/voxceleb2") & (out.kind == "paper")].iloc[0]
    assert cell["mean"] == pytest.approx(0.371) and "2603.25767" in cell["source"]
    assert compared.rows == table.rows
    assert with_paper(table, only_matched=True).rows == ("as/mtc audioset", "cap/contrastive", "cap/mtc uts-1.5k")


def test_with_paper_matches_pooling_and_head_type():
    attention = with_paper(build_table(_frame(head="linear-attention"), "linear-attention"))
    vox = Column("speech", "paper/voxceleb2", "accuracy", "paper")
    assert attention.cell("cap/mtc uts-1.5k", vox).mean == pytest.approx(0.5252)
    assert attention.cell("cap/contrastive", vox) is None  # no attention-pooling number for it
    mlp = with_paper(build_table(_frame(head="mlp-mean"), "mlp-mean"))
    assert not any(c.kind == "paper" for (_, c) in mlp.cells)
    assert "–" in to_markdown(mlp)
