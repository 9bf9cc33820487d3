"""How far a run has got and how long it has left: the arithmetic behind the CLI's progress.

A picture's ETA comes from its own steps so far; the run's from the pictures already made (wall
time per finished picture, so batches and skipped work count as they really ran). The clock is
passed in, so tests pin the numbers without waiting, and nothing here prints: the CLI renders
`StepProgress` as a live bar on a terminal, or as a log line when `PlainThrottle` says one is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


def format_duration(seconds: float) -> str:
    """`0:07`, `6:50`, `1:02:03`: the way rich and most tools show a time left."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class StepProgress:
    """Where one picture stands after a step, and what is left of it and of the run."""

    step: int
    steps: int
    loss: float
    elapsed: float  # seconds since this picture started
    eta: float | None  # seconds left for this picture; None before its first step
    run_eta: float | None  # seconds left for the whole run; None until a picture has finished

    def text(self) -> str:
        """`step 120/500 · loss 1.23e+04 · ETA 6:50 · run ETA 40:00`."""
        parts = [f"step {self.step}/{self.steps}", f"loss {self.loss:.3g}"]
        if self.eta is not None:
            parts.append(f"ETA {format_duration(self.eta)}")
        if self.run_eta is not None:
            parts.append(f"run ETA {format_duration(self.run_eta)}")
        return " · ".join(parts)


class ProgressTracker:
    """Turns run events (planned, started, step, finished) into elapsed times and ETAs."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.todo = 0
        self.finished = 0
        self.made = 0  # pictures made (failures are quick and would make the run look fast)
        self.work_started: float | None = None
        self.made_until: float | None = None  # when the last picture was made
        self.started: dict[int, float] = {}  # job index → when it started

    def planned(self, todo: int) -> None:
        self.todo = todo

    def job_started(self, job: int) -> None:
        now = self.clock()
        self.started[job] = now
        if self.work_started is None:
            self.work_started = now

    def step(self, job: int, step: int, steps: int, loss: float) -> StepProgress:
        """A picture's progress: its ETA from its own pace, the run's from the pictures made."""
        now = self.clock()
        elapsed = now - self.started.get(job, now)
        eta = elapsed / step * (steps - step) if step > 0 else None
        return StepProgress(step, steps, loss, elapsed, eta, self.run_eta(eta))

    def job_finished(self, job: int, made: bool) -> None:
        self.started.pop(job, None)
        self.finished += 1
        if made:
            self.made += 1
            self.made_until = self.clock()

    def per_picture(self) -> float | None:
        """Wall seconds per picture made so far, or None before the first one."""
        if not self.made or self.work_started is None or self.made_until is None:
            return None
        return (self.made_until - self.work_started) / self.made

    def run_eta(self, current_eta: float | None = None) -> float | None:
        """Seconds left for the run: the current picture's ETA, then the pace so far for the rest."""
        pace = self.per_picture()
        left = self.todo - self.finished
        if pace is None:
            return None
        if left <= 0:
            return 0.0
        if current_eta is not None:
            return current_eta + pace * (left - 1)
        since = self.clock() - (self.made_until or self.clock())
        return max(0.0, pace * left - since)


class PlainThrottle:
    """When a plain log (cron, CI, a file) gets a progress line: at most every `every_s` seconds
    and every `fraction` of a picture's steps, whichever is rarer, so a long picture shows it is
    alive without a line per step."""

    def __init__(self, every_s: float = 30.0, fraction: float = 0.1, clock: Clock = time.monotonic) -> None:
        self.every_s = every_s
        self.fraction = fraction
        self.clock = clock
        self.last_time = clock()
        self.last_step = 0

    def restart(self) -> None:
        """A new picture: its first line is due a full interval after it starts."""
        self.last_time = self.clock()
        self.last_step = 0

    def due(self, step: int, steps: int) -> bool:
        now = self.clock()
        if step >= steps:  # the picture's `done` line says the rest
            return False
        if now - self.last_time < self.every_s or step - self.last_step < max(1.0, steps * self.fraction):
            return False
        self.last_time, self.last_step = now, step
        return True
