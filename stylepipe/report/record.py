"""The run report: one JSON document per run, written atomically, that later tools can grow.

Its stable core (items, style_targets, summary) is what schedulers and tests read; new
sections (timings, galleries, loss curves) are added as new keys, never by changing these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..extend.terms import LossTerm
    from ..plan.jobs import Job
    from ..plan.run_settings import RunSettings

Status = Literal["done", "skipped", "failed"]
REPORT_VERSION = 1
#: Where a job's time goes, in order: decoding and resizing, content and style targets, the
#: optimisation, writing the output and its sidecar.
STAGES = ("load", "targets", "optimise", "save")


@dataclass
class ItemReport:
    """What happened to one job."""

    content: str | None  # null when the job has no content picture (palette, style reconstruction)
    style: str | None  # null when the job has no style (content reconstruction)
    output: str | None
    status: Status
    error: str | None = None
    seconds: float = 0.0  # its share of its batch's optimisation time, plus writing its own file
    loss: dict[str, float | None] | None = None  # null: a side the mode does not use
    steps: int = 0
    job: int = -1
    history: dict[str, list[float | None]] | None = None  # downsampled loss curve: step, total, each term
    note: str | None = None  # how the input was read, when a user should know (first frame of a GIF)
    layers: str | None = None  # reconstruct mode: the layers the picture was rebuilt from
    reason: str | None = None  # why it was made: new, the painting settings that changed, an output-only change
    reencoded: bool = False  # made from the kept painting, with no optimisation
    stages: dict[str, float] | None = None  # seconds: load, targets, optimise, save (a batch's shared equally)


def failed_item(job: Job, error: str) -> ItemReport:
    """The report of a job that failed with `error` (every executor words failures this way)."""
    return ItemReport(content=job.content_ref, style=job.style_ref, output=None, status="failed", error=error, job=job.index,
                      layers=job.layers)


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
    remaining: list[dict[str, str | None]] = field(default_factory=list)  # jobs left for the next run
    shard: str | None = None
    style_targets_seconds: float = 0.0  # the style targets, from the cache or computed, once per style (stage `targets`)
    network: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the settings a reader compares runs by
    styles: dict[str, list[str]] = field(default_factory=dict)  # style label → the pictures it reads
    rejected: list[dict[str, str]] = field(default_factory=list)  # input files found but not styled: path, reason

    def count(self, status: Status) -> int:
        return sum(1 for item in self.items if item.status == status)

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage summed over the items (load, targets, optimise, save), the style
        targets (computed once per style) counted under `targets`: where a run's time went."""
        totals = {stage: 0.0 for stage in STAGES}
        totals["targets"] += self.style_targets_seconds
        for item in self.items:
            for stage, seconds in (item.stages or {}).items():
                totals[stage] = totals.get(stage, 0.0) + seconds
        return {stage: round(seconds, 3) for stage, seconds in totals.items()}

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when any job failed or any input file could not be a job."""
        return 1 if self.count("failed") or self.rejected else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "stylepipe": _dist_version("stylepipe"),
            "pipeline": self.pipeline,
            "device": self.device,
            "items": [asdict(item) for item in sorted(self.items, key=lambda i: i.job)],
            "style_targets": {"computed": self.targets_computed, "cache_hits": self.targets_cache_hits},
            "summary": {
                "done": self.count("done"),
                "skipped": self.count("skipped"),
                "reencoded": sum(1 for item in self.items if item.reencoded),
                "failed": self.count("failed"),
                "rejected": len(self.rejected),
                "remaining": len(self.remaining),
                "seconds": round(self.seconds, 3),
                "stages": self.stage_seconds(),
            },
            "stopped": self.stopped,
            "remaining": list(self.remaining),
            "shard": self.shard,
            "rejected": list(self.rejected),
            "warnings": list(self.warnings),
            "network": self.network,
            "settings": dict(self.settings),
            "styles": dict(self.styles),
        }


def key_settings(settings: RunSettings, terms: Sequence[LossTerm]) -> dict[str, Any]:
    """The settings a reader compares runs by, as plain values for the report and its page."""
    size = f"max_side {settings.size_max_side}" if settings.size_max_side else f"max_pixels {settings.size_max_pixels}"
    return {
        "mode": settings.mode,
        "size": size,
        "optimizer": settings.optimize.optimizer,
        "steps": settings.optimize.steps,
        "pyramid_levels": settings.pyramid.levels,
        "precision": settings.precision,
        "precision_reason": settings.precision_reason,
        "init": settings.init,
        "seed": settings.seed,
        "pooling": settings.pooling,
        "weights": {term.name: term.weight for term in terms},
        "preserve_colors": settings.preserve_colors,
        "output": _output_label(settings),
    }


#: The formats whose encoder reads `output.quality` (png and tiff are lossless: it does nothing there).
QUALITY_FORMATS = ("jpg", "webp")


def _output_label(settings: RunSettings) -> str:
    """`jpg q92`, `tiff 16-bit 300 dpi`: only the settings the format uses; depth and resolution
    only when they are not the defaults."""
    quality = f" q{settings.output_quality}" if settings.output_format in QUALITY_FORMATS else ""
    depth = " 16-bit" if settings.output_bit_depth == 16 else ""
    dpi = f" {settings.output_dpi} dpi" if settings.output_dpi else ""
    return f"{settings.output_format}{quality}{depth}{dpi}"
