"""Progress events: stages report through this object, the CLI renders it (nothing below prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..plan.jobs import Job
    from ..report.record import ItemReport


class RunEvents(Protocol):
    """What a run tells its caller as it goes; every method is optional to act on."""

    def planned(self, total: int, todo: int) -> None: ...
    def targets(self, label: str, cached: bool) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def step(self, job: Job, step: int, steps: int, loss: float) -> None: ...
    def job_finished(self, job: Job, item: ItemReport) -> None: ...
    def warning(self, message: str) -> None: ...


class NullEvents:
    """Silent events, for library use and tests."""

    def planned(self, total: int, todo: int) -> None:
        pass

    def targets(self, label: str, cached: bool) -> None:
        pass

    def job_started(self, job: Job) -> None:
        pass

    def step(self, job: Job, step: int, steps: int, loss: float) -> None:
        pass

    def job_finished(self, job: Job, item: ItemReport) -> None:
        pass

    def warning(self, message: str) -> None:
        pass
