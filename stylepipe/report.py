"""The run report: one JSON document per run, written atomically, that later tools can grow.

Its stable core (items, style_targets, summary) is what schedulers and tests read; new
sections (timings, galleries, loss curves) are added as new keys, never by changing these.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .atomic import write_atomic

Status = Literal["done", "skipped", "failed"]
REPORT_VERSION = 1


@dataclass
class ItemReport:
    """What happened to one job."""

    content: str
    style: str
    output: str | None
    status: Status
    error: str | None = None
    seconds: float = 0.0
    loss: dict[str, float] | None = None
    steps: int = 0
    job: int = -1
    note: str | None = None  # how the input was read, when a user should know (first frame of a GIF)


@dataclass
class RunReport:
    """The whole run: every item, how the style targets were obtained, and totals."""

    pipeline: str
    device: str = "cpu"
    items: list[ItemReport] = field(default_factory=list)
    targets_computed: int = 0
    targets_cache_hits: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the run ended before every job ran (bounds, SIGTERM)
    remaining: list[dict[str, str]] = field(default_factory=list)  # jobs left for the next run
    shard: str | None = None
    rejected: list[dict[str, str]] = field(default_factory=list)  # input files found but not styled: path, reason

    def count(self, status: Status) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when any job failed or any input file could not be a job."""
        return 1 if self.count("failed") or self.rejected else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "stylepipe": __version__,
            "pipeline": self.pipeline,
            "device": self.device,
            "items": [asdict(item) for item in sorted(self.items, key=lambda i: i.job)],
            "style_targets": {"computed": self.targets_computed, "cache_hits": self.targets_cache_hits},
            "summary": {
                "done": self.count("done"),
                "skipped": self.count("skipped"),
                "failed": self.count("failed"),
                "rejected": len(self.rejected),
                "remaining": len(self.remaining),
                "seconds": round(self.seconds, 3),
            },
            "stopped": self.stopped,
            "remaining": list(self.remaining),
            "shard": self.shard,
            "rejected": list(self.rejected),
            "warnings": list(self.warnings),
        }


def write_json_atomic(data: Any, path: Path) -> None:
    """Readers never see half a report or sidecar: the same atomic writer as the pictures."""
    text = json.dumps(data, indent=2) + "\n"
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))
