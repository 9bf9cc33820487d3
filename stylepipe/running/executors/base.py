"""The executor seam: how a list of jobs gets run, without the runner knowing where.

`local` runs jobs in this process on one device. A cluster executor (Ray) implements the same
`run` and gets the same WorkerContext ingredients; `--shard i/N` needs no executor at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from ...plan.jobs import Job
from ...report.record import ItemReport
from ..context import WorkerContext
from ..events import RunEvents


class Executor(Protocol):
    """Runs jobs and yields one ItemReport per job as each finishes (in any order).

    It may call `events.job_started` and `events.step`; the runner calls `job_finished` once it
    has recorded the item, so an interruption never loses a finished job from the report.
    Before starting each job or batch it checks `context.should_stop()` and, when true, finishes
    what is in flight and returns: the runner reports the rest as remaining.
    """

    name: str

    def run(self, jobs: Sequence[Job], context: WorkerContext, events: RunEvents) -> Iterator[ItemReport]: ...
