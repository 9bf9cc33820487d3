"""Jobs, start to finish on one device: load, resize, optimise, postprocess, save.

A WorkerSpec is everything a worker needs that can travel (to a Ray actor, say): the active
terms, the settings, the style targets computed once by the driver, the plugin folders to load.
A WorkerContext is that plus the network, built once per device. `process_batch` never raises
for a job's own problems — it returns failed ItemReports naming the file and the cause.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import StylepipeError
from .events import NullEvents, RunEvents
from .images import load_image, resize, save_image, target_size
from .losses import LossTerm
from .network import FeatureExtractor
from .optimize import Objective, content_targets, initial_image, optimize
from .plan import Job, RunSettings, sidecar_path
from .postprocess import postprocess
from .report import ItemReport, write_json_atomic
from .targets import Targets

log = logging.getLogger("stylepipe")


@dataclass
class WorkerSpec:
    """The picklable part of a worker's context: shipped once to every worker."""

    terms: list[LossTerm]
    settings: RunSettings
    out_dir: Path
    style_targets: dict[str, Targets] = field(default_factory=dict)  # by style label
    style_errors: dict[str, str] = field(default_factory=dict)  # style label → why it failed
    plugin_folders: tuple[Path, ...] = ()
    override_plugins: bool = False


@dataclass
class WorkerContext:
    """What every job on one device shares; built once per run (or once per Ray actor)."""

    extractor: FeatureExtractor
    terms: list[LossTerm]
    settings: RunSettings
    device: torch.device
    out_dir: Path
    style_targets: dict[str, Targets] = field(default_factory=dict)  # by style label
    style_errors: dict[str, str] = field(default_factory=dict)  # style label → why it failed
    spec: WorkerSpec | None = None  # what a remote executor ships to its workers
    should_stop: Callable[[], bool] = lambda: False  # driver-side: checked before each job/batch

    @classmethod
    def from_spec(cls, spec: WorkerSpec, extractor: FeatureExtractor, device: torch.device) -> WorkerContext:
        return cls(extractor, spec.terms, spec.settings, device, spec.out_dir, spec.style_targets, spec.style_errors, spec)

    @classmethod
    def build(cls, spec: WorkerSpec, device: torch.device) -> WorkerContext:
        """In a fresh process: load the plugins the terms need, then the network, once."""
        from .network import build_extractor
        from .registry import load_plugin_folders, register_builtins

        register_builtins()
        load_plugin_folders(spec.plugin_folders, override=spec.override_plugins)
        settings = spec.settings
        extractor = build_extractor(settings.network, settings.network_weights, settings.pooling, device)  # type: ignore[arg-type]
        return cls.from_spec(spec, extractor, device)


def _output_size(job: Job, settings: RunSettings, content: torch.Tensor | None) -> tuple[int, int]:
    """The content's size, or for palettes the style's first picture's aspect ratio."""
    if content is not None:
        return content.shape[-2], content.shape[-1]
    picture = job.style.images()[0].image if job.style else torch.zeros(3, 1, 1)
    return target_size(picture.shape[-2], picture.shape[-1], settings.size_max_side, settings.size_max_pixels)


def _fit(image: torch.Tensor, settings: RunSettings) -> torch.Tensor:
    return resize(image, target_size(image.shape[-2], image.shape[-1], settings.size_max_side, settings.size_max_pixels))


def _loss_summary(values: dict[str, list[float]]) -> dict[str, float | None]:
    summary: dict[str, float | None] = {"content": None, "style": None}
    summary.update({name: float(v[0]) for name, v in values.items()})
    return summary


def _stylise(job: Job, ctx: WorkerContext, events: RunEvents) -> tuple[torch.Tensor, dict[str, float | None], int]:
    settings = ctx.settings
    content = None
    if job.content is not None:
        content = _fit(load_image(job.content, settings.max_input_pixels).tensor, settings)
        content = content.unsqueeze(0).to(ctx.device)
    style = ctx.style_targets.get(job.style_label, {}) if job.style else {}
    objective = Objective(ctx.extractor, ctx.terms, content_targets(ctx.extractor, ctx.terms, content) if content is not None else {}, style)
    height, width = _output_size(job, settings, content)
    init_picture = None
    if settings.init == "image" and settings.init_path is not None:
        init_picture = resize(load_image(settings.init_path, settings.max_input_pixels).tensor, (height, width)).unsqueeze(0)
    init = initial_image(settings.init, content, (1, 3, height, width), settings.seed, init_picture).to(ctx.device)
    result = optimize(init, objective, settings.optimize, lambda i, n, loss: events.step(job, i, n, loss))
    if result.diverged:
        log.warning("%s: the loss diverged after %d steps; kept the best image seen", job.output.name, result.steps)
    final = postprocess(result.image, content, settings.preserve_colors if content is not None else None)
    return final, _loss_summary(objective.evaluate(final)), result.steps


def process_job(job: Job, ctx: WorkerContext, events: RunEvents | None = None) -> ItemReport:
    """Make one output; a failure is reported, never raised, so the other jobs carry on."""
    events = events or NullEvents()
    start = time.perf_counter()
    item = ItemReport(content=job.content_label, style=job.style_label, output=None, status="failed", job=job.index)
    try:
        if job.error:
            raise StylepipeError(job.error)
        if job.style and job.style_label in ctx.style_errors:
            raise StylepipeError(f"style {job.style_label!r} failed: {ctx.style_errors[job.style_label]}")
        image, losses, steps = _stylise(job, ctx, events)
        save_image(image[0].cpu(), job.output, ctx.settings.output_format, ctx.settings.output_quality)
        record = {"fingerprint": job.fingerprint, "content": job.content_label, "style": job.style_label, "loss": losses}
        write_json_atomic(record, sidecar_path(ctx.out_dir, job.output))
        item.output, item.status, item.loss, item.steps = str(job.output), "done", losses, steps
    except StylepipeError as exc:
        item.error = str(exc)
    except (OSError, RuntimeError, ValueError) as exc:  # disk full, device errors: this job only
        log.debug("job %d failed", job.index, exc_info=True)
        item.error = f"{job.content_label}: {type(exc).__name__}: {exc}"
    item.seconds = round(time.perf_counter() - start, 3)
    return item


def process_batch(jobs: list[Job], ctx: WorkerContext, events: RunEvents | None = None) -> list[ItemReport]:
    """Make a group of outputs that share a style; one report per job, failures included."""
    events = events or NullEvents()
    items = []
    for job in jobs:
        events.job_started(job)
        items.append(process_job(job, ctx, events))
    return items
