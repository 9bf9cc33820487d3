"""Jobs and the plan: what to make (content × style, output path, fingerprint), what is done.

Plain frozen values: everything after the plan (targets, executors, the optimiser) sees only these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.load import LoadedPipeline
from ..core.target_fns import StyleSizing
from ..extend.sources import StyleSource
from ..extend.terms import LossTerm
from .run_settings import RunSettings
from .sweep import SweepStep


@dataclass(frozen=True)
class Job:
    """One output to make: a content picture (or none) styled by one style source."""

    index: int
    content: Path | None
    style: StyleSource | None
    output: Path
    fingerprint: str | None
    error: str | None = None  # set when a fingerprint could not be taken (unreadable input)
    content_sha: str | None = None  # the content bytes the fingerprint covers; decoding checks it
    sweep: SweepStep | None = None  # reconstruct mode: the layers this picture is rebuilt from
    painting: str | None = None  # the hash of what paints the pixels (not how they are encoded): plan.resume
    painting_keys: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # its payload, flat

    @property
    def content_label(self) -> str:
        return str(self.content) if self.content else "-"

    @property
    def style_label(self) -> str:
        return self.style.label if self.style else "-"

    @property
    def content_ref(self) -> str | None:
        """The content file for reports: null when the job has none (palette, style sweeps)."""
        return str(self.content) if self.content else None

    @property
    def style_ref(self) -> str | None:
        """The style label for reports: null when the job has none (content reconstructions)."""
        return self.style.label if self.style else None

    @property
    def layers(self) -> str | None:
        """The sweep layers for reports (`conv1_1+conv2_1`), null outside reconstruct mode."""
        return self.sweep.label if self.sweep else None


@dataclass(frozen=True)
class Rejected:
    """A file found under an input folder or glob that is not a picture job, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Plan:
    """Jobs to run and jobs already done, plus the terms and settings they share."""

    pipeline: LoadedPipeline
    settings: RunSettings
    terms: list[LossTerm]
    sizing: StyleSizing
    jobs: list[Job]
    done: list[Job] = field(default_factory=list)
    output_dir: Path = Path("outputs")
    rejected: list[Rejected] = field(default_factory=list)  # files found but not styled, with the reason
    warnings: list[str] = field(default_factory=list)  # settings the mode ignores
    reasons: dict[int, str] = field(default_factory=dict)  # job index → why it is to be done (new, what changed)
    reencode: dict[int, Path] = field(default_factory=dict)  # job index → the stored painting it is re-encoded from

    @property
    def level_sizings(self) -> list[StyleSizing]:
        """The style size each level's targets are taken at, composition first (one for a single level)."""
        from .run_settings import level_sizings

        return level_sizings(self.sizing, self.settings.levels)

    @property
    def todo(self) -> list[Job]:
        done = {job.index for job in self.done}
        return [job for job in self.jobs if job.index not in done]

    def job_key(self, job: Job) -> str:
        """A job's identity for sharding: its output's path inside the output folder."""
        return job.output.relative_to(self.output_dir).as_posix()

    def keep(self, owns: Callable[[str], bool]) -> None:
        """Restrict the plan to the jobs a shard owns (by job key)."""
        self.jobs = [job for job in self.jobs if owns(self.job_key(job))]
        self.done = [job for job in self.done if owns(self.job_key(job))]
        self.rejected = [r for r in self.rejected if owns(r.path.as_posix())]  # each reported by one shard
