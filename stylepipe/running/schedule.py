"""Safe scheduled runs: deterministic shards, a run lock per output folder, and clean stops.

These are what make `stylepipe run` safe under cron, systemd timers, Slurm arrays and
Kubernetes indexed jobs without any engine: shards split the jobs by a stable hash, so N
processes over one pipeline do every job exactly once; a lock stops two overlapping runs from
working the same outputs; bounds (`--max-jobs`, `--time-budget`, SIGTERM) end a run between jobs,
after which the report says what is left and the next run resumes there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import filelock

from ..core.errors import ConfigError, EnvironmentProblem, StylepipeError
from ..plan.outputs import STATE_DIR


class RunLocked(StylepipeError):
    """Another run holds this output folder: overlapping cron runs must not both work."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the jobs whose stable hash falls in this slot."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`--shard 0/4` → Shard(0, 4); the message says how to fix anything else."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise ConfigError(f"--shard {text!r}: expected I/N, e.g. --shard 0/4 (I from 0 to N-1)")
        index, count = int(match[1]), int(match[2])
        if count < 1 or index >= count:
            raise ConfigError(f"--shard {text!r}: I must be between 0 and N-1 and N at least 1")
        return cls(index, count)

    def owns(self, key: str) -> bool:
        """Stable across machines and Python runs (no `hash()`, which is salted per process)."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    @property
    def suffix(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


class RunLock:
    """An exclusive lock on an output folder (per shard), held for the whole run.

    Uses `filelock` (an OS-level lock released by the kernel if the process dies, so a crashed
    run never leaves a stale lock behind) plus a small info file naming the holder.
    """

    def __init__(self, out_dir: Path, shard: Shard | None = None) -> None:
        name = f"run.{shard.suffix}.lock" if shard else "run.lock"
        self.path = out_dir / STATE_DIR / name
        self.info_path = self.path.with_suffix(".json")
        self._lock = filelock.FileLock(str(self.path), timeout=0)

    def _holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except filelock.Timeout:
            raise RunLocked(f"{self.path.parent.parent}: another stylepipe run is working on this output folder "
                            f"({self._holder()}); not starting a second one. Wait for it, or use another output folder") from None
        except OSError as exc:  # read-only, full or missing mount: nothing can be written there
            raise EnvironmentProblem(f"{self.path.parent.parent}: cannot write to the output folder "
                                     f"({exc.strerror or exc}); nothing was run") from None
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            self.info_path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        except OSError:
            self._lock.release()
            raise EnvironmentProblem(f"{self.path.parent.parent}: cannot write to the output folder; nothing was run") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.info_path.unlink(missing_ok=True)
        self._lock.release()


@dataclass
class RunBounds:
    """When to stop starting new jobs: a job count, a wall-clock budget, or a stop request.

    The budget is respected ahead of time: a job is not started when the mean duration of the
    jobs so far says it would end past the budget.
    """

    max_jobs: int | None = None
    time_budget: float | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    finished: int = 0
    reason: str | None = None  # why should_stop said yes
    cut: str | None = None  # why the runner handed the executor fewer jobs than were left

    def job_finished(self) -> None:
        self.finished += 1

    def should_stop(self) -> bool:
        """Checked by executors before each job or batch; records why it said yes."""
        if self.reason is None:
            self.reason = self._reason()
        return self.reason is not None

    def _reason(self) -> str | None:
        if self.stop_requested.is_set():
            return "stop requested (SIGTERM/SIGINT)"
        if self.max_jobs is not None and self.finished >= self.max_jobs:
            return f"--max-jobs {self.max_jobs} reached"
        if self.time_budget is not None:
            elapsed = time.monotonic() - self.started
            mean = elapsed / self.finished if self.finished else 0.0
            if elapsed + mean > self.time_budget:
                return f"--time-budget {self.time_budget:g} s would be exceeded"
        return None


def parse_duration(text: str) -> float:
    """`90`, `90s`, `45m`, `7h30m` → seconds; for `--time-budget`."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text or "")
    if not text or not match or not any(match.groups()):
        raise ConfigError(f"--time-budget {text!r}: expected seconds or a duration like 45m, 2h, 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--time-budget {text!r}: must be above zero")
    return total
