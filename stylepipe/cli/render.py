"""Rendering a run on the terminal: live bars or one line per job, and the summary table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..plan.outputs import job_label
from ..report.record import ItemReport
from .options import log, stderr
from .progress import Clock, PlainThrottle, ProgressTracker, format_duration


class CliEvents:
    """Renders run events: on a terminal live bars with each picture's step, loss and ETA and the
    run's ETA; otherwise (cron, logs) one line per job, and a progress line for a long picture at
    most every 30 s and every 10% of its steps."""

    def __init__(self, console: Console | None = None, clock: Clock = time.monotonic, plain_every_s: float = 30.0) -> None:
        self.console = console or stderr
        self.live = self.console.is_terminal
        self.tracker = ProgressTracker(clock)
        self.throttle = PlainThrottle(plain_every_s, clock=clock)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console, transient=True, disable=not self.live,
                                 get_time=clock)
        self.run_task: TaskID | None = None
        self.job_task: TaskID | None = None

    def __enter__(self) -> CliEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def planned(self, total: int, todo: int) -> None:
        log.info("%d job(s): %d to run, %d already done", total, todo, total - todo)
        self.tracker.planned(todo)
        self.run_task = self.progress.add_task("jobs", total=todo, info=f"0/{todo}")

    def targets(self, label: str, cached: bool) -> None:
        log.info("style %s: targets %s", label, "from cache" if cached else "computed")

    def job_started(self, job: Any) -> None:
        self.tracker.job_started(job.index)
        self.throttle.restart()
        if self.job_task is not None:
            self.progress.remove_task(self.job_task)
        self.job_task = self.progress.add_task(job_name(job.content_ref, job.style_ref, job.layers), total=None, info="")

    def step(self, job: Any, step: int, steps: int, loss: float) -> None:
        now = self.tracker.step(job.index, step, steps, loss)
        name = job_name(job.content_ref, job.style_ref, job.layers)  # a batch reports its first picture's steps
        if self.job_task is not None:
            self.progress.update(self.job_task, description=name, completed=step, total=steps, info=now.text())
        self._run_info(now.run_eta)
        if not self.live and self.throttle.due(step, steps):
            log.info("progress: %s: %s, %s elapsed", name, now.text(), format_duration(now.elapsed))

    def job_finished(self, job: Any, item: ItemReport) -> None:
        self.tracker.job_finished(item.job, made=item.status == "done")
        if item.status == "failed":
            log.error("failed: job %d (%s): %s", item.job, job_name(item.content, item.style, item.layers), item.error)
        else:
            note = f"; {item.note}" if item.note else ""
            log.info("done: %s (%.1f s%s)", Path(item.output or "").name, item.seconds, note)
        if self.run_task is not None:
            self.progress.advance(self.run_task)
        self._run_info(self.tracker.run_eta())

    def _run_info(self, run_eta: float | None) -> None:
        """The run's bar: pictures finished of those to do, and the time left when it is known."""
        if self.run_task is not None:
            eta = f" · run ETA {format_duration(run_eta)}" if run_eta else ""
            self.progress.update(self.run_task, info=f"{self.tracker.finished}/{self.tracker.todo}{eta}")

    def warning(self, message: str) -> None:
        log.warning("%s", message)


def job_name(content: str | None, style: str | None, layers: str | None) -> str:
    """`chelsea.jpg × scream`: the content's file name only, so a progress line stays short."""
    return job_label(Path(content).name if content else None, style, layers)


def style_cell(style: str | None, layers: str | None) -> str:
    """A table's style column: the style, and a reconstruction's layers in parentheses."""
    return " ".join(part for part in (style, f"({layers})" if layers else None) if part)


def short_path(path: str | None) -> str:
    """Paths relative to the working directory when they are below it: tables stay readable."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def summary_table(items: list[ItemReport]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("status", "content", "style", "output / error", "seconds", "style loss"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "cyan", "failed": "red"}
    for item in sorted(items, key=lambda i: i.job):
        style_loss = item.loss.get("style") if item.loss else None
        table.add_row(f"[{colours[item.status]}]{item.status}[/]", Path(item.content).name if item.content else "",
                      style_cell(item.style, item.layers),
                      short_path(item.output) if item.status != "failed" else (item.error or ""), f"{item.seconds:.1f}",
                      f"{style_loss:.3g}" if style_loss is not None else "")
    return table
