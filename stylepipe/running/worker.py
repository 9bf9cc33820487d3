"""Jobs, start to finish on one device: load and resize the inputs, optimise in batches
(`running.stylize`, halved on out-of-memory by `running.batcher`), save each output and its sidecar.

`process_batch` never raises for a job's own problems — it returns failed ItemReports naming the
file and the cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..core.errors import StylepipeError
from ..core.geometry import MIN_SIDE, resize, target_size
from ..core.loss_fns import Targets
from ..core.network import is_out_of_memory
from ..io.images import load_image
from ..plan.jobs import Job
from ..plan.run_settings import RunSettings
from ..report.record import STAGES, ItemReport, failed_item
from .batcher import in_batches
from .context import WorkerContext
from .encode import write_output
from .events import NullEvents, RunEvents
from .stylize import stylize_batch

log = logging.getLogger("stylepipe")


def _output_size(job: Job, settings: RunSettings, content: torch.Tensor | None) -> tuple[int, int]:
    """The content's size, or for palettes the style's first picture's aspect ratio."""
    if content is not None:
        return content.shape[-2], content.shape[-1]
    picture = job.style.images()[0].image if job.style else torch.zeros(3, 1, 1)
    return target_size(picture.shape[-2], picture.shape[-1], settings.size_max_side, settings.size_max_pixels)


def _fit(image: torch.Tensor, settings: RunSettings) -> torch.Tensor:
    return resize(image, target_size(image.shape[-2], image.shape[-1], settings.size_max_side, settings.size_max_pixels))


def _loss_summary(values: dict[str, list[float]], i: int) -> dict[str, float | None]:
    summary: dict[str, float | None] = {"content": None, "style": None}
    summary.update({name: float(v[i]) for name, v in values.items()})
    return summary




@dataclass
class Ready:
    """A job whose inputs are loaded and sized: its content picture (CPU) and output size."""

    job: Job
    content: torch.Tensor | None
    size: tuple[int, int]
    note: str | None = None  # how the content was read (first frame of an animation), for the report
    dpi: tuple[int, int] | None = None  # the content photo's print resolution, which its output keeps
    load_s: float = 0.0  # decoding and resizing it (the report's `load` stage)


@dataclass
class PreparedBatch:
    """A group of jobs after the CPU-side work (decode, resize), ready for the device."""

    ready: list[Ready]
    failed: list[ItemReport]


def prepare_batch(jobs: list[Job], ctx: WorkerContext, events: RunEvents | None = None) -> PreparedBatch:
    """Decode and resize the content pictures; bad inputs become failed items here.

    Runs on the CPU and touches no device state, so an executor can prepare the next group in
    a background thread while the device works on this one.
    """
    prepared = PreparedBatch([], [])
    for job in jobs:
        try:
            prepared.ready.append(_prepare(job, ctx))
        except StylepipeError as exc:
            prepared.failed.append(failed_item(job, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a plugin's or a library's bug fails this job only
            prepared.failed.append(failed_item(job, f"{job.content_label}: {type(exc).__name__}: {exc}"))
    return prepared


def _prepare(job: Job, ctx: WorkerContext) -> Ready:
    start = time.perf_counter()
    settings = ctx.settings
    if job.error:
        raise StylepipeError(job.error)
    if job.style and job.style_label in ctx.style_errors:
        raise StylepipeError(f"style {job.style_label!r} failed: {ctx.style_errors[job.style_label]}")
    content, note, dpi = None, None, None
    if job.content:
        loaded = load_image(job.content, settings.max_input_pixels, (settings.size_max_side, settings.size_max_pixels))
        if job.content_sha is not None and loaded.sha256 != job.content_sha:
            # the resume hash was taken from other bytes: its sidecar would lie
            raise StylepipeError(f"{job.content_label}: changed while the run was going; run again to style the new version")
        content, note, dpi = _fit(loaded.tensor, settings), loaded.note, loaded.dpi
    size = _output_size(job, settings, content)
    check_size(size, job.content_label)
    return Ready(job, content, size, note, dpi, time.perf_counter() - start)


def check_size(size: tuple[int, int], label: str) -> None:
    """Refuse a working size with a side too short for VGG19's five blocks, before any device work."""
    if min(size) < MIN_SIDE:
        raise StylepipeError(f"{label}: {size[1]}×{size[0]} px at this size; every side needs "
                             f"at least {MIN_SIDE} px: raise size.max_side")


def fit_content(image: torch.Tensor, settings: RunSettings, label: str) -> torch.Tensor:
    """A content picture (3, H, W) at the run's working size, checked to be large enough."""
    fitted = _fit(image, settings)
    check_size((fitted.shape[-2], fitted.shape[-1]), label)
    return fitted


def run_prepared(prepared: PreparedBatch, ctx: WorkerContext, events: RunEvents | None = None) -> Iterator[ItemReport]:
    """Optimise prepared jobs in batches of one style and one size, halving a batch on OOM.

    Yields each batch's items as soon as its outputs are saved, so a caller records them early.
    """
    events = events or NullEvents()
    yield from prepared.failed
    buckets: dict[tuple, list[Ready]] = {}  # one style, one size, one set of terms
    for ready in prepared.ready:
        sweep = ready.job.sweep.key if ready.job.sweep else None
        buckets.setdefault((ready.job.style_label, ready.size, sweep), []).append(ready)

    def attempt(chunk: list[Ready]) -> list[ItemReport]:
        for ready in chunk:
            events.job_started(ready.job)
        return _run_chunk(chunk, ctx, events)

    for bucket in buckets.values():
        for chunk, outcome in in_batches(bucket, ctx, attempt):
            if isinstance(outcome, list):
                yield from outcome
            elif is_out_of_memory(outcome):
                yield failed_item(chunk[0].job, f"{chunk[0].job.content_label}: out of device memory even alone; lower size.max_side")
            else:  # one batch's failure (a plugin's KeyError, a NaN) is its own
                yield from (failed_item(r.job, f"{r.job.content_label}: {type(outcome).__name__}: {outcome}") for r in chunk)


def _run_chunk(chunk: list[Ready], ctx: WorkerContext, events: RunEvents) -> list[ItemReport]:
    """One batch on the device: optimise together, then save each image and its sidecar."""
    start = time.perf_counter()
    settings = ctx.settings
    first = chunk[0].job
    has_content = chunk[0].content is not None
    content = torch.stack([r.content for r in chunk if r.content is not None]) if has_content else None
    style: Targets | list[Targets] = ctx.style_targets.get(first.style_label, {}) if first.style else {}
    terms = list(first.sweep.terms) if first.sweep else ctx.terms  # a reconstruction sweep step has its own
    out = stylize_batch(ctx, content, chunk[0].size, style, terms, lambda i, n, loss: events.step(first, i, n, loss),
                        count=len(chunk))
    seconds = (time.perf_counter() - start) / len(chunk)  # a batch's time, shared by its images
    targets = out.targets_s / len(chunk)
    curves = out.curves
    items = []
    for i, ready in enumerate(chunk):
        job = ready.job
        if out.diverged[i]:
            log.warning("%s: the loss diverged; kept the best image seen", job.output.name)
        losses = _loss_summary(out.losses, i)
        saving = time.perf_counter()
        try:
            record = {"content": job.content_ref, "style": job.style_ref, "loss": losses, "history": curves[i] if curves else None}
            written = write_output(out.images[i].cpu(), job, settings, ctx.out_dir, ready.dpi, record)
        except (OSError, ValueError) as exc:  # disk full, unwritable folder: this output only
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            items.append(failed_item(job, f"{job.output}: cannot write ({cause})"))
            continue
        save = time.perf_counter() - saving  # a 16-bit print-size file takes a while to write
        own = seconds + save
        stages = dict(zip(STAGES, (round(ready.load_s, 4), round(targets, 4), round(seconds - targets, 4), round(save, 4))))
        items.append(ItemReport(content=job.content_ref, style=job.style_ref, output=str(job.output), status="done",
                                seconds=round(own, 3), loss=losses, steps=out.steps, job=job.index,
                                history=curves[i] if curves else None,
                                note="; ".join(n for n in (ready.note, out.note, written) if n) or None, layers=job.layers,
                                stages=stages))
    return items


def process_batch(jobs: list[Job], ctx: WorkerContext, events: RunEvents | None = None) -> list[ItemReport]:
    """Make a group of outputs (ideally of one style); one report per job, failures included."""
    return list(run_prepared(prepare_batch(jobs, ctx, events), ctx, events))

