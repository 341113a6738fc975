"""A rich progress display for ``run_study``: runs done / total, failures, elapsed, ETA.

With ``verbose`` each run in flight gets its own line that counts its epochs (all layers).
"""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from cffbench.study.worker import RunOutcome
from cffbench.study.grid import RunTask
from cffbench.study.spec import Study


class RichReporter:
    """Draws the progress of a study on ``console`` (stderr by default)."""

    def __init__(self, verbose: bool = False, console: Optional[Console] = None):
        self.verbose = verbose
        self.wants_epochs = verbose
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False)
        self.main: Optional[TaskID] = None
        self.tasks: dict[str, RunTask] = {}
        self.run_bars: dict[str, TaskID] = {}
        self.run_epochs: dict[str, dict] = {}
        self.failed = self.diverged = 0

    def _extra(self) -> str:
        return f"failed {self.failed}  diverged {self.diverged}"

    def start(self, study: Study, tasks: list[RunTask], total: int, done: int) -> None:
        self.tasks = {t.run_id: t for t in tasks}
        self.progress.start()
        # Runs finished earlier count as done but not toward the speed that drives the ETA.
        self.main = self.progress.add_task(f"{study.name}", total=total - done,
                                           extra=self._extra())
        if done:
            self.console.print(f"{done} of {total} runs already stored; running the rest")

    def epoch(self, run_id: str, record: dict) -> None:
        if not self.verbose:
            return
        task = self.tasks.get(run_id)
        if task is None:
            return
        if run_id not in self.run_bars:
            total = task.config.epochs_per_layer * len(task.config.hidden)
            label = f"  {task.dataset} {task.variant} seed {task.seed}"
            self.run_bars[run_id] = self.progress.add_task(label, total=total, extra="")
        # Curves may record only some epochs: progress = sum of each layer's latest epoch. A run
        # resumed from a checkpoint starts reporting mid-way: in the sequential schedule the
        # layers below the first one reported are finished.
        latest = self.run_epochs.setdefault(run_id, {})
        layer = record.get("layer")
        if not latest and task.config.schedule == "sequential" and isinstance(layer, int):
            latest.update({below: task.config.epochs_per_layer for below in range(1, layer)})
        latest[layer] = int(record.get("epoch") or 0)
        loss = record.get("loss")
        extra = f"layer {record.get('layer')} loss {loss:.4f}" if isinstance(loss, float) else ""
        self.progress.update(self.run_bars[run_id], completed=sum(latest.values()), extra=extra)

    def finished(self, task: RunTask, outcome: RunOutcome) -> None:
        status = outcome.status
        self.failed += status == "failed"
        self.diverged += status == "diverged"
        self.run_epochs.pop(task.run_id, None)
        if task.run_id in self.run_bars:
            self.progress.remove_task(self.run_bars.pop(task.run_id))
        if status == "failed":
            self.console.print(f"[red]failed[/red] {task.run_id} {task.dataset} {task.variant} "
                               f"seed {task.seed}: {escape(str(outcome.error))}", highlight=False)
        elif self.verbose:
            acc = getattr(outcome.result, "test_acc", float("nan"))
            self.console.print(f"{status} {task.run_id} {task.dataset} {task.variant} "
                               f"seed {task.seed}: test {acc:.4f} ({outcome.duration_s:.1f} s)",
                               highlight=False)
        if self.main is not None:
            self.progress.update(self.main, advance=1, extra=self._extra())

    def stop(self) -> None:
        self.progress.stop()
