"""Run jobs in this process, one device, grouped by style so its targets stay resident."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..events import RunEvents
from ..plan import Job
from ..report import ItemReport
from ..worker import WorkerContext, process_batch


class LocalExecutor:
    """The default: in-process, sequential; jobs sharing a style run back to back."""

    name = "local"

    def run(self, jobs: Sequence[Job], context: WorkerContext, events: RunEvents) -> Iterator[ItemReport]:
        for job in sorted(jobs, key=lambda j: (j.style_label, j.index)):
            if context.should_stop():
                return
            yield from process_batch([job], context, events)
