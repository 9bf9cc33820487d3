"""The run report: one JSON document per run, written atomically, that later tools can grow.

Its stable core (items, style_targets, summary) is what schedulers and tests read; new
sections (timings, galleries, loss curves) are added as new keys, never by changing these.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__

Status = Literal["done", "skipped", "failed"]
REPORT_VERSION = 1


@dataclass
class ItemReport:
    """What happened to one job."""

    content: str | None  # null when the job has no content picture (palette, style reconstruction)
    style: str | None  # null when the job has no style (content reconstruction)
    output: str | None
    status: Status
    error: str | None = None
    seconds: float = 0.0
    loss: dict[str, float] | None = None
    steps: int = 0
    job: int = -1
    layers: str | None = None  # reconstruct mode: the layers the picture was rebuilt from


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

    def count(self, status: Status) -> int:
        return sum(1 for item in self.items if item.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when any job failed."""
        return 1 if self.count("failed") else 0

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
                "remaining": len(self.remaining),
                "seconds": round(self.seconds, 3),
            },
            "stopped": self.stopped,
            "remaining": list(self.remaining),
            "shard": self.shard,
            "warnings": list(self.warnings),
        }


def write_json_atomic(data: Any, path: Path) -> None:
    """Readers never see half a report: write a temp file beside it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
