"""Progress of a running graph: one bar per stage on a terminal, one line per job elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

from harness.graph import Graph, Node


class GraphProgress:
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

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
