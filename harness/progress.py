"""Progress of a running graph: one bar per stage on a terminal, one line per job elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: a progress bar needs no graph code
    from harness.graph import Graph, Node


class GraphProgress:
    """Progress of a graph: ``advance`` when a job ends (done, failed, blocked), ``note``
    for what happens to a job on the way (requeued, resubmitted)."""

    def __init__(self, graph: Graph, done_ids: set[str], enabled: bool = True):
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self.stages = graph.by_stage()
        self.done = {stage: sum(n.id in done_ids for n in nodes) for stage, nodes in self.stages.items()}
        self.started = time.time()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "GraphProgress":
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), transient=False)
            self._progress.__enter__()
            for stage, nodes in self.stages.items():
                self._tasks[stage] = self._progress.add_task(stage, total=len(nodes), completed=self.done[stage])
        return self

    def advance(self, node: Node, outcome: str, cause: str = "") -> None:
        if not self.enabled:
            return
        self.done[node.stage] += 1
        elapsed = time.time() - self.started
        line = f"{outcome:>7} {node.stage:<9} {node.label}  [{self.done[node.stage]}/{len(self.stages[node.stage])}]"
        if cause:
            line += f"\n        cause: {cause}"
        if self._progress is not None:
            self._progress.advance(self._tasks[node.stage])
            if outcome != "done":
                self._progress.console.print(line)
        else:
            print(f"[{elapsed:6.1f}s] {line}", file=sys.stderr, flush=True)

    def note(self, node: Node, event: str, text: str) -> None:
        """One line for an event of a job that is not its end (a requeue, a resubmission).
        Printed even without a progress display: like a failure, it is never silent."""
        line = f"{event:>7} {node.stage:<9} {node.label}: {text}"
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            print(f"[{time.time() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)

    def say(self, text: str) -> None:
        """One line about the whole run (Slurm not answering, and answering again)."""
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(f"[{time.time() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


class Bar:
    """Progress of one long loop: a rich bar on a terminal, a line every ~5% elsewhere
    (job logs), nothing when disabled.

        with Bar("parse captions", total=len(todo), enabled=progress) as bar:
            for item in todo:
                ...
                bar.advance()
    """

    def __init__(self, description: str, total: int, enabled: bool = True):
        self.description = description
        self.total = max(0, int(total))
        self.enabled = enabled and self.total > 0
        self.done = 0
        self._next_line = 0
        self._started = time.time()
        self._progress: Any = None

    def __enter__(self) -> "Bar":
        if self.enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.advance(self._task, n)
        elif self.done >= self._next_line or self.done >= self.total:
            print(f"{self.description}: {self.done}/{self.total} ({time.time() - self._started:.1f}s)",
                  file=sys.stderr, flush=True)
            self._next_line = self.done + max(1, self.total // 20)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
