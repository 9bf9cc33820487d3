"""Jobs, start to finish on one device: load, resize, optimise, postprocess, save.

A WorkerSpec is everything a worker needs that can travel (to a Ray actor, say): the active
terms, the settings, the style targets computed once by the driver, the plugin folders to load.
A WorkerContext is that plus the network, built once per device. `process_batch` never raises
for a job's own problems — it returns failed ItemReports naming the file and the cause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar, cast

import torch

from ..core.device import resolve_precision
from ..core.errors import StylepipeError
from ..core.geometry import MIN_SIDE, resize, target_size
from ..core.loss_fns import Targets
from ..core.network import FeatureExtractor
from ..core.objective import Objective, Precision, content_targets
from ..core.optimize import (
    OptimizeSettings,
    StepCallback,
    initial_image,
    optimize,
    optimize_pyramid,
    resample,
    solver_bytes_per_image,
)
from ..core.postprocess import ColorSpace, postprocess
from ..core.tiling import content_targets as tiled_content_targets
from ..extend.terms import LossTerm
from ..io.images import load_image, read_exif, save_image
from ..plan.jobs import Job
from ..plan.resume import write_sidecar
from ..plan.run_settings import RunSettings
from ..report.history import LossHistory, RecordingObjective
from ..report.record import ItemReport
from .budget import budget_bytes, free_ram, plan_memory
from .events import NullEvents, RunEvents

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
    batch_size: int = 1  # images per device batch; halved for good after an out-of-memory
    precision: str = "fp32"  # resolved for this device: fp32, bf16 or fp16

    @classmethod
    def from_spec(cls, spec: WorkerSpec, extractor: FeatureExtractor, device: torch.device) -> WorkerContext:
        settings = spec.settings
        extractor = tune_for_device(extractor, device, settings.compile)
        return cls(extractor, spec.terms, settings, device, spec.out_dir, spec.style_targets, spec.style_errors, spec,
                   batch_size=resolve_batch_size(settings.batch_size, device, settings),
                   precision=resolve_precision(settings.precision, device))

    @classmethod
    def build(cls, spec: WorkerSpec, device: torch.device) -> WorkerContext:
        """In a fresh process: load the plugins the terms need, then the network, once."""
        from ..extend.plugins import load_plugin_folders
        from ..extend.registries import register_builtins
        from ..io.weights import build_extractor

        register_builtins()
        load_plugin_folders(spec.plugin_folders, override=spec.override_plugins)
        settings = spec.settings
        extractor = build_extractor(settings.network, settings.network_weights, settings.pooling, device)  # type: ignore[arg-type]
        return cls.from_spec(spec, extractor, device)


#: Bytes of activations per output pixel kept for the backward pass of VGG19 up to relu5_1,
#: float32, measured on the CPU (peak RSS growth per pixel) and rounded up.
_BYTES_PER_PIXEL = 6_000
_AUTO_CPU_BATCH = 1  # measured (docs/benchmarks.md): larger CPU batches gain nothing and cost memory


def resolve_batch_size(configured: int | str, device: torch.device, settings: RunSettings) -> int:
    """`auto`: on CUDA the largest batch that fits in half the free memory (OOM halves it further)."""
    if configured != "auto":
        return int(configured)
    side = settings.size_max_side or int(settings.size_max_pixels ** 0.5)  # type: ignore[operator]
    return auto_batch_size(device, side, settings.optimize)


def bytes_per_image(side: int, optimize: OptimizeSettings) -> int:
    """Memory one image of a batch needs: the activations kept for the backward pass, plus the
    optimiser's state — the L-BFGS history alone is 2·m·N float32, ≈ 1.2 KB per pixel at m = 50."""
    return _BYTES_PER_PIXEL * side * side + solver_bytes_per_image(3 * side * side, optimize)


def auto_batch_size(device: torch.device, side: int, optimize: OptimizeSettings) -> int:
    """The largest batch of side × side images that fits in half the free memory, at most 64."""
    per_image = bytes_per_image(side, optimize)
    if device.type != "cuda":
        free = free_ram()
        return max(1, min(_AUTO_CPU_BATCH, int(free * 0.5 // per_image)))
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, min(64, int(free * 0.5 // per_image)))


def tune_for_device(extractor: FeatureExtractor, device: torch.device, compile_network: bool) -> FeatureExtractor:
    """On CUDA channels-last convolutions and cuDNN autotuning; torch.compile wherever asked
    (`FeatureExtractor.compile_forward` compiles the call every loss makes, and falls back to eager)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        extractor = extractor.to(memory_format=torch.channels_last)
    if compile_network:
        extractor.compile_forward()
    return extractor


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


def _failed(job: Job, error: str) -> ItemReport:
    return ItemReport(content=job.content_ref, style=job.style_ref, output=None, status="failed", error=error, job=job.index,
                      layers=job.layers)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class Ready:
    """A job whose inputs are loaded and sized: its content picture (CPU) and output size."""

    job: Job
    content: torch.Tensor | None
    size: tuple[int, int]
    note: str | None = None  # how the content was read (first frame of an animation), for the report
    dpi: tuple[int, int] | None = None  # the content photo's print resolution, which its output keeps


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
            prepared.failed.append(_failed(job, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a plugin's or a library's bug fails this job only
            prepared.failed.append(_failed(job, f"{job.content_label}: {type(exc).__name__}: {exc}"))
    return prepared


def _prepare(job: Job, ctx: WorkerContext) -> Ready:
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
    return Ready(job, content, size, note, dpi)


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
            elif _is_oom(outcome):
                yield _failed(chunk[0].job, f"{chunk[0].job.content_label}: out of device memory even alone; lower size.max_side")
            else:  # one batch's failure (a plugin's KeyError, a NaN) is its own
                yield from (_failed(r.job, f"{r.job.content_label}: {type(outcome).__name__}: {outcome}") for r in chunk)


T = TypeVar("T")
R = TypeVar("R")


def in_batches(items: list[T], ctx: WorkerContext, run: Callable[[list[T]], R]) -> Iterator[tuple[list[T], R | Exception]]:
    """Run items (one style, one size) in device batches of `ctx.batch_size`, each batch's result
    or exception paired with it. An out-of-memory batch is split in half and retried, and the smaller
    size is kept for the rest of the run; a single item out of memory is yielded with its exception.
    Stops between batches when `ctx.should_stop()`. Shared by the file pipeline and the Python API.
    """
    queue = [items[i : i + ctx.batch_size] for i in range(0, len(items), ctx.batch_size)]
    while queue:
        if ctx.should_stop():
            return  # a stop (SIGTERM, a bound) between batches: the rest stays for the next run
        chunk = queue.pop(0)
        try:
            outcome: R | Exception = run(chunk)
        except Exception as exc:  # noqa: BLE001 - the caller decides what a failed batch means
            if _is_oom(exc) and ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            if not _is_oom(exc) or len(chunk) == 1:
                outcome = exc
            else:
                half = len(chunk) // 2
                ctx.batch_size = max(1, half)  # remember: later batches start at the size that fitted
                log.warning("out of memory with a batch of %d; retrying as %d + %d", len(chunk), half, len(chunk) - half)
                queue[:0] = [chunk[:half], chunk[half:]]
                continue
        yield chunk, outcome


@dataclass
class Stylized:
    """One device batch, optimised and postprocessed: what every caller gets from `stylize_batch`."""

    images: torch.Tensor  # (B, 3, H, W) in [0, 1], on the device
    losses: dict[str, list[float]]  # per term and "total", one value per image
    steps: int  # loss evaluations made
    diverged: list[bool]  # per image: a non-finite loss stopped it (the best image seen is kept)
    curves: list[dict[str, list[float | None]]]  # per image: the downsampled loss curve
    note: str | None = None  # how it was made to fit in memory (tiles, a shorter L-BFGS history)


def stylize_batch(ctx: WorkerContext, content: torch.Tensor | None, size: tuple[int, int], style: Targets,
                  terms: Sequence[LossTerm] | None = None, on_step: StepCallback | None = None,
                  count: int = 1) -> Stylized:
    """Optimise one batch on the device: the set-up (targets, start, precision, pyramid, colours)
    that the file pipeline, the Python API and the Ray Data stage share, so that the same settings
    give the same pixels whichever way a picture comes in.

    `content` is (B, 3, H, W) at `size` (or None for a palette of `count` images), `style` the
    style's targets on the device, `terms` the run's unless a reconstruction step has its own.
    """
    settings = ctx.settings
    terms = ctx.terms if terms is None else terms
    height, width = size
    count = len(content) if content is not None else count
    content = content.to(ctx.device) if content is not None else None
    history = LossHistory(settings.optimize.steps, {term.name: term.weight for term in ctx.terms})
    budget = budget_bytes(ctx.device, settings.max_memory_mb)
    memory = plan_memory(ctx.extractor, terms, (height, width), count, settings.optimize, settings.tile, budget)
    if memory.note:
        (log.info if memory.fits else log.warning)("%d picture(s) of %d×%d px: %s", count, width, height, memory.note)

    def objective_at(size: tuple[int, int]) -> Objective:
        tiling = (memory if size == (height, width) else
                  plan_memory(ctx.extractor, terms, size, count, settings.optimize, settings.tile, budget)).tiling
        scaled = resample(content, size) if content is not None else None
        targets: Targets = {}
        if scaled is not None:
            targets = (tiled_content_targets(ctx.extractor, terms, scaled, tiling) if tiling is not None
                       else content_targets(ctx.extractor, terms, scaled))
        return RecordingObjective(ctx.extractor, terms, targets, style, tiling=tiling, history=history)

    init_picture = None
    if settings.init == "image" and settings.init_path is not None:
        init_picture = resize(load_image(settings.init_path, settings.max_input_pixels).tensor, (height, width)).unsqueeze(0)
    init = torch.cat([
        initial_image(settings.init, content[i : i + 1] if content is not None else None, (1, 3, height, width), settings.seed, init_picture,
                      settings.noise)
        for i in range(count)
    ]).to(ctx.device)
    optimize_settings = replace(settings.optimize, precision=cast(Precision, ctx.precision),
                                lbfgs_history=memory.lbfgs_history or settings.optimize.lbfgs_history)

    def step(i: int, n: int, loss: float) -> None:
        history.on_step(i, n, loss)
        if on_step is not None:
            on_step(i, n, loss)

    full_size = objective_at((height, width))  # content targets at full size, computed once
    if settings.pyramid.levels > 1:
        result = optimize_pyramid(init, lambda size: full_size if size == (height, width) else objective_at(size),
                                  optimize_settings, settings.pyramid, step)
    else:
        result = optimize(init, full_size, optimize_settings, step)
    colours = cast(ColorSpace | None, settings.preserve_colors) if content is not None else None
    final = postprocess(result.image, content, colours)
    return Stylized(final, full_size.evaluate(final), result.steps, list(result.diverged), history.curves(), memory.note)


def _run_chunk(chunk: list[Ready], ctx: WorkerContext, events: RunEvents) -> list[ItemReport]:
    """One batch on the device: optimise together, then save each image and its sidecar."""
    start = time.perf_counter()
    settings = ctx.settings
    first = chunk[0].job
    has_content = chunk[0].content is not None
    content = torch.stack([r.content for r in chunk if r.content is not None]) if has_content else None
    style = ctx.style_targets.get(first.style_label, {}) if first.style else {}
    terms = list(first.sweep.terms) if first.sweep else ctx.terms  # a reconstruction sweep step has its own
    out = stylize_batch(ctx, content, chunk[0].size, style, terms, lambda i, n, loss: events.step(first, i, n, loss),
                        count=len(chunk))
    seconds = (time.perf_counter() - start) / len(chunk)  # a batch's time, shared by its images
    curves = out.curves
    items = []
    for i, ready in enumerate(chunk):
        job = ready.job
        if out.diverged[i]:
            log.warning("%s: the loss diverged; kept the best image seen", job.output.name)
        losses = _loss_summary(out.losses, i)
        saving = time.perf_counter()
        try:
            exif = read_exif(job.content) if settings.keep_metadata and job.content else None
            dpi = (settings.output_dpi, settings.output_dpi) if settings.output_dpi else ready.dpi
            save_image(out.images[i].cpu(), job.output, settings.output_format, settings.output_quality, exif,
                       bit_depth=settings.output_bit_depth, dpi=dpi)
            record = {"fingerprint": job.fingerprint, "content": job.content_ref, "style": job.style_ref, "loss": losses,
                      "history": curves[i] if curves else None}
            write_sidecar(ctx.out_dir, job.output, record)
        except (OSError, ValueError) as exc:  # disk full, unwritable folder: this output only
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            items.append(_failed(job, f"{job.output}: cannot write ({cause})"))
            continue
        own = seconds + time.perf_counter() - saving  # a 16-bit print-size file takes a while to write
        items.append(ItemReport(job.content_ref, job.style_ref, str(job.output), "done", None,
                                round(own, 3), losses, out.steps, job.index, curves[i] if curves else None,
                                "; ".join(n for n in (ready.note, out.note) if n) or None, job.layers))
    return items


def process_batch(jobs: list[Job], ctx: WorkerContext, events: RunEvents | None = None) -> list[ItemReport]:
    """Make a group of outputs (ideally of one style); one report per job, failures included."""
    return list(run_prepared(prepare_batch(jobs, ctx, events), ctx, events))

