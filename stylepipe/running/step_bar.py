"""Progress of a library call (`Stylizer.stylize(…, progress=…)`): the caller's own callback, or a
rich bar on stderr like the command line's, so that a minute-long picture does not look stuck.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..core.optimize import StepCallback as StepReport  # `(step, steps, loss)` after each step of a batch

ProgressLike = bool | StepReport | None


@contextlib.contextmanager
def step_reporter(progress: ProgressLike) -> Iterator[StepReport | None]:
    """The callback that `progress` asks for: None (False/None), the caller's own, or (True) one
    that drives a rich bar on stderr for the duration of the call."""
    if progress is None or progress is False:
        yield None
        return
    if callable(progress):
        yield progress
        return
    if progress is not True:
        raise TypeError(f"progress: expected True, False, None or a callable (step, steps, loss), not {progress!r}")
    columns = (TextColumn("stylize"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("stylize", total=None, loss="-")

        def report(step: int, steps: int, loss: float) -> None:
            bar.update(task, completed=step, total=steps, loss=f"{loss:.4g}")

        yield report
