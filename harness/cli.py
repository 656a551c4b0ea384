"""The ``harness`` command: run, plan, status and report a study.

    harness run STUDY [--out DIR] [--executor local|debug]   run the study, or resume it
    harness plan STUDY                                        the job graph, and what is done
    harness status STUDY                                      each job: pending, running, done, failed
    harness report STUDY                                      runs/<study>/report/
    harness tags parse|build|stats ...                        captions -> tags -> tag systems, on files
    harness figure tsne|longtail|wordcloud ...                the tag-system figures (UTS Fig. 2), on files
    harness assets [NAME ...]                                 public assets, checked by sha256

Bad input (a malformed study file, an unknown key, a missing file) prints one line per
problem and exits with code 2, as does a Slurm that does not answer (``status`` then
shows no state at all: none it could not read now). A run whose jobs failed exits with
1, and so does ``status`` when a job is in a failure state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from harness.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except HarnessError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Run audio pre-training studies from a study file.")
    sub = p.add_subparsers(dest="command")

    def study_command(name: str, func, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("study", help="the study file (YAML)")
        sp.add_argument("--out", type=Path, default=None, help="study output folder (default: runs/<study name>)")
        sp.set_defaults(func=func)
        return sp

    run = study_command("run", cmd_run, "run a study, or resume it (complete jobs are skipped)")
    run.add_argument("--executor", choices=["local", "debug", "slurm"], default=None,
                     help="where jobs run (default: the study's compute.executor)")
    run.add_argument("--profile", type=Path, default=None,
                     help="slurm: cluster profile YAML (default: the study's compute.profile); "
                          "the study's compute.slurm values override it")
    run.add_argument("--detach", action="store_true",
                     help="slurm: queue the whole graph and return (follow it with `harness status`)")
    run.add_argument("--max-parallel", type=int, default=None, help="jobs at once (default: the study's, or CPU cores)")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    study_command("plan", cmd_plan, "show the job graph per stage: counts, keys and what is already done")
    study_command("status", cmd_status, "show each job as pending, running, done or failed (with cause and log)")
    report = study_command("report", cmd_report, "write the report (tables in Markdown, LaTeX and CSV; figures in "
                           "PNG and PDF; index.md and a self-contained index.html) to <out>/report/")
    report.add_argument("--no-tag-figures", action="store_true",
                        help="skip the word cloud, long-tail and t-SNE figures of the study's tags")

    from harness import tags_cli

    tags_cli.add_parser(sub)
    from harness import figure_cli

    figure_cli.add_parser(sub)
    assets = sub.add_parser("assets", help="fetch public assets (URL + sha256; HARNESS_MIRROR for a local copy)")
    assets.add_argument("names", nargs="*", help="assets to fetch (default: list them)")
    assets.set_defaults(func=cmd_assets)
    return p


def _load(args):
    from harness.dispatch import Layout, harness_home
    from harness.graph import expand
    from harness.study import load_study

    study = load_study(args.study)
    out = args.out if args.out is not None else Path("runs") / study.name
    layout = Layout(out=Path(out), cache=harness_home())
    return study, expand(_final_config(study, layout)), layout


def _final_config(study, layout) -> dict:
    """The study's config, with the best values of its search once the search has finished."""
    if "search" not in study.config:
        return study.config
    from harness import search

    outcome = search.finished(study, layout)
    return search.trial_config(study, outcome.params) if outcome else search.without_search(study.config)


def cmd_run(args) -> int:
    from harness.collect import write_results
    from harness.dispatch import run_graph
    from harness.store import atomic_write_json, atomic_write_text, canonical_json

    started = time.time()
    study, graph, layout = _load(args)
    compute = study.config["compute"]
    executor = args.executor or compute["executor"]
    slurm_settings = None
    if executor == "slurm":  # every Slurm value is validated before anything is submitted
        from harness import slurm

        slurm_settings = slurm.resolve(compute, study.path, args.profile)
        for line in slurm.timing_problems(slurm_settings):
            print(f"warning: {line}", file=sys.stderr)
        slurm.check_cluster()
    elif args.detach or args.profile:
        raise HarnessError("--detach and --profile are for --executor slurm")
    layout.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.out / "study.yaml", study.path.read_text(encoding="utf-8"))
    atomic_write_json(layout.out / "study.resolved.json", study.config)
    def run(graph, detach: bool = False):
        if executor == "slurm":  # the backend is picked here: dispatch runs local jobs, slurm submits
            from harness import slurm

            return slurm.run(graph, layout, slurm_settings, study=study.name, detach=detach,
                             progress=not args.no_progress)
        return run_graph(graph, layout, executor_kind=executor,
                         max_parallel=args.max_parallel or compute["max_parallel"],
                         timeout_min=compute["timeout_min"], progress=not args.no_progress)

    searched = None
    if "search" in study.config:
        from harness import search
        from harness.graph import expand

        if args.detach:
            raise HarnessError(f"{args.study}: search: a search runs its trials in rounds, each waiting for the last; "
                               "run it without --detach (in tmux, or inside an sbatch job)")
        s = study.config["search"]
        print(f"study {study.name}: search of {len(s['space'])} setting(s), {s['trials']} trials, "
              f"{s['parallel']} at a time; journal in {search.search_dir(layout)}", file=sys.stderr)
        searched = search.run_search(study, layout, run)
        graph = expand(search.trial_config(study, searched.params))
    print(f"study {study.name}: {len(graph)} jobs, output in {layout.out}", file=sys.stderr)
    summary = run(graph, detach=args.detach)
    if args.detach:
        jobs = sorted(set(summary.submitted.values()), key=lambda j: [int(x) for x in j.split("_")])
        arrays = sorted({j.split("_")[0] for j in jobs}, key=int)
        print(f"queued {len(summary.submitted)} jobs in {len(arrays)} Slurm submissions "
              f"({', '.join(arrays[:8])}{' ...' if len(arrays) > 8 else ''}); {len(summary.skipped)} already done, "
              f"in {time.time() - started:.1f} s", file=sys.stderr)
        print(f"follow: harness status {args.study}" + (f" --out {args.out}" if args.out else ""), file=sys.stderr)
        return 0
    results = write_results(graph, layout, study.name,
                            extra={"search": canonical_json(searched.record())} if searched else None)
    elapsed = time.time() - started
    requeued = sum(len(causes) for causes in summary.requeued.values())
    print(f"{len(summary.done)} jobs run, {len(summary.skipped)} already done, {len(summary.failed)} failed, "
          f"{len(summary.blocked)} blocked" + (f", {requeued} requeued or resubmitted" if requeued else "")
          + f", in {elapsed:.1f} s", file=sys.stderr)
    print(f"results: {results}", file=sys.stderr)
    if summary.failed:
        for node_id, cause in summary.failed.items():
            state = json.loads((layout.state_dir / f"{node_id.replace('/', '-')}.json").read_text())
            print(f"FAILED {node_id} ({state.get('label')}): {cause}\n       log: {_log(state.get('stderr'))}",
                  file=sys.stderr)
        return 1
    return 0


def _log(path: str | None, whose: str = "") -> str:
    """A log path to show: only one that exists (a job that never started wrote none)."""
    if path and Path(path).is_file():
        return path + whose
    return "none (the job never started)" if not whose else "none"


def cmd_plan(args) -> int:
    study, graph, layout = _load(args)
    print(f"study {study.name} ({study.path}): {len(graph)} jobs; output {layout.out}")
    compute = study.config["compute"]
    if compute["executor"] == "slurm" or compute.get("slurm") or compute.get("profile"):
        from harness import slurm_settings

        try:
            problems = slurm_settings.timing_problems(slurm_settings.resolve(compute, study.path))
        except HarnessError as exc:  # a profile only the cluster has: run says so; plan goes on
            problems = exc.problems
        for line in problems:
            print(f"warning: {line}")
    if "search" in study.config:
        from harness import search

        outcome, seen = search.finished(study, layout), search.progress(study, layout)
        ended, total = seen or (0, study.config["search"]["trials"])
        print(f"search: {ended}/{total} trials ended; " + (
            f"the jobs below use the best values, {outcome.params}" if outcome else
            "the jobs below use the study's own values until it finishes"))
    for stage, nodes in graph.by_stage().items():
        done = sum(layout.is_done(n) for n in nodes)
        print(f"\n{stage}: {len(nodes)} jobs, {done} done, {len(nodes) - done} to run")
        for node in nodes:
            mark = "done" if layout.is_done(node) else "todo"
            print(f"  {mark}  {node.key}  {node.label}")
    return 0


def job_states(graph, layout) -> list[dict]:
    """The state of every node: done (in the store), else what its last dispatch recorded;
    jobs sent to Slurm are read back from sacct (COMPLETED, FAILED, TIMEOUT, ...)."""
    if any((saved := _saved(layout, node)) and saved.get("executor") == "slurm" for node in graph):
        from harness import slurm

        return slurm.describe(graph, layout)
    rows = []
    for node in graph:
        row = {"id": node.id, "stage": node.stage, "key": node.key, "label": node.label, "state": "pending"}
        if layout.is_done(node):
            row["state"] = "done"
        else:
            path = layout.state_path(node)
            if path.is_file():
                saved = json.loads(path.read_text())
                row.update({k: saved[k] for k in ("cause", "stderr", "job_id") if k in saved})
                if saved["state"] == "failed":
                    row["state"] = "failed"
                elif saved["state"] == "running" and _alive(saved.get("job_id")):
                    row["state"] = "running"
        rows.append(row)
    return rows


def _saved(layout, node) -> dict | None:
    path = layout.state_path(node)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def _alive(job_id: str | None) -> bool:
    """Whether a local job's process (its id is the controller's pid) still runs."""
    try:
        os.kill(int(job_id), 0)
        return True
    except (TypeError, ValueError, ProcessLookupError, PermissionError):
        return False


def cmd_status(args) -> int:
    study, graph, layout = _load(args)
    rows = job_states(graph, layout)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    print(f"study {study.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    from harness.slurm import FAILED_STATES

    for row in rows:
        job = ""
        if row.get("slurm") and row.get("job_id"):
            requeues = len(row.get("requeues") or [])
            job = f"  [job {row['job_id']}" + (f", requeued {requeues}x" if requeues else "") + "]"
        print(f"  {row['state']:<8} {row['stage']:<9} {row['key']}  {row['label']}{job}")
        if row["state"] == "UNKNOWN":
            print(f"           cause: {row.get('cause', '?')}")
        if row["state"] in FAILED_STATES:
            if row["state"] == "BLOCKED":
                log = _log(row.get("stderr"), " (the failed input's)")
            else:
                log = _log(row.get("stderr"))
            print(f"           cause: {row.get('cause', '?')}\n           log:   {log}")
            for line in row.get("tail", []):
                print(f"           | {line}")
    return 1 if any(counts.get(s) for s in FAILED_STATES) else 0


def cmd_report(args) -> int:
    from harness.collect import RESULTS
    from results.report import write_report

    study, graph, layout = _load(args)
    results = layout.out / RESULTS
    if not results.is_file():
        raise HarnessError(f"{results}: no results yet; run `harness run {args.study}` first")
    started = time.time()
    out = write_report(results, layout.out / "report", title=study.config["report"]["title"] or study.name,
                       study=study, graph=graph, layout=layout, tag_figures=not args.no_tag_figures,
                       log=lambda msg: print(msg, file=sys.stderr))
    print(f"report: {out} and {out.with_suffix('.html')} ({time.time() - started:.1f} s)")
    return 0


def cmd_assets(args) -> int:
    from harness.assets import ASSETS, fetch

    if not args.names:
        for name, asset in ASSETS.items():
            print(f"{name:<20} {asset.filename:<36} {asset.description}")
        return 0
    for name in args.names:
        print(fetch(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
