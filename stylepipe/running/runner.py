"""Wires the stages: config → plan → style targets (cached) → executor → report.

The runner owns no maths and no I/O format; it decides the order and makes sure that whatever
happens — a bad picture, a broken cache, Ctrl-C — the report of what was done gets written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline, SchemaError, load_pipeline, pipeline_from_dict
from ..config.overrides import Override
from ..core.device import resolve_device
from ..core.errors import ConfigError, DeviceUnavailable, EnvironmentProblem, StylepipeError
from ..core.network import FeatureExtractor, network_fingerprint
from ..core.target_fns import StyleSizing, style_terms, targets_to
from ..extend.networks import build_extractor, weights_availability, weights_id
from ..extend.sources import StyleSource
from ..extend.terms import LossTerm
from ..io.atomic import sweep_partials, write_json_atomic
from ..plan.build import build_plan
from ..plan.jobs import Job, Plan
from ..plan.outputs import STATE_DIR
from ..plan.resume import PAINTINGS_DIR, painting_path, read_sidecar
from ..plan.run_settings import RunSettings
from ..report.record import ItemReport, RunReport, key_settings
from ..targets.cache import TargetCache
from ..targets.keys import target_key
from ..targets.store import TargetStore
from .budget import budget_bytes, style_tiling
from .context import WorkerContext, WorkerSpec
from .encode import reencode
from .events import NullEvents, RunEvents
from .executors import get_executor
from .executors.base import Executor
from .schedule import RunBounds, RunLock, Shard


def run_device(name: str) -> torch.device:
    """The device `network.device` names; one that is absent is an environment problem naming the key."""
    try:
        return resolve_device(name)
    except DeviceUnavailable as exc:
        raise EnvironmentProblem(f"network.device is {exc.requested!r} but {exc.reason}") from None


def check_environment(settings: RunSettings) -> None:
    """What `run` would find missing before its first job: the device and the network's weights
    (EnvironmentProblem, exit 3), so that `validate` answers as `run` would."""
    run_device(settings.device)
    if settings.network_weights is not None:
        if not settings.network_weights.is_file():
            raise EnvironmentProblem(f"network.weights: {settings.network_weights}: file not found")
        return
    available, where = weights_availability(settings.network)
    if not available:
        raise EnvironmentProblem(f"network.name is {settings.network!r} but its weights are not here: {where}")


def open_cache(pipeline: LoadedPipeline) -> TargetCache:
    """The configured cache, or a memory-only one when disabled (never fatal)."""
    cfg = pipeline.config.cache
    directory = pipeline.resolve(cfg.dir) if cfg.enabled else None
    return TargetCache(directory, size_limit_bytes=cfg.size_limit_mb * 1024 * 1024)


def target_store(cache: TargetCache, extractor: FeatureExtractor, terms: list[LossTerm], sizing: StyleSizing,
                 settings: RunSettings, device: torch.device) -> TargetStore:
    """Where a run (or a Stylizer) gets style targets: the cache, else computed, on tiles when the
    memory budget says so."""
    tile_for = style_tiling(extractor, terms, settings.tile, budget_bytes(device, settings.max_memory_mb))
    return TargetStore(cache, extractor, terms, sizing, device, tile_for)


def make_plan(pipeline: LoadedPipeline, *, force: bool = False, output_dir: Path | None = None,
              errors: ErrorCollector | None = None) -> Plan:
    """The plan, with the network identity that resume hashes depend on."""
    settings = pipeline.config.network
    weights = weights_id(settings.name, pipeline.resolve(settings.weights) if settings.weights else None)
    return build_plan(pipeline, weights_id=weights, force=force, output_dir=output_dir, errors=errors)


def load_checked(pipeline: Path | str | Mapping[str, Any], overrides: Sequence[str | Override] = ()) -> LoadedPipeline:
    """Load a pipeline file (or mapping); when its schema is broken, also run the plan's checks
    (files, style entries, plugins) on the sections that are fine, so that one error lists every mistake."""
    try:
        if isinstance(pipeline, Mapping):
            return pipeline_from_dict(pipeline, overrides)
        return load_pipeline(pipeline, overrides)
    except SchemaError as exc:
        if exc.partial is None:
            raise
        errors = ErrorCollector()
        errors.add(exc)
        try:
            make_plan(exc.partial, errors=errors)
        except ConfigError as deeper:
            errors.add(deeper)
        except StylepipeError:
            pass  # an environment problem is not the file's mistake: the schema errors come first
        errors.raise_if_any()
        raise


def style_pictures(jobs: list) -> dict[str, list[str]]:
    """Each style's picture files, for the report page's column headers."""
    pictures = {}
    for source in distinct_styles(jobs):
        try:
            pictures[source.label] = [str(path) for path in source.files()]
        except StylepipeError:
            pictures[source.label] = []
    return pictures


def distinct_styles(jobs: list) -> list[StyleSource]:
    seen: dict[str, StyleSource] = {}
    for job in jobs:
        if job.style is not None:
            seen.setdefault(job.style.label, job.style)
    return list(seen.values())


@dataclass(frozen=True)
class PlannedTarget:
    label: str
    key: str
    cached: bool
    style_side: int | None = None  # the style picture's long side for this level's targets
    style_pixels: int | None = None


def cached_targets(plan: Plan, cache: TargetCache) -> list[PlannedTarget]:
    """For a dry run: which styles' targets are already in the cache, one per style and level size."""
    cfg = plan.pipeline.config.network
    network = network_fingerprint(cfg.name, weights_id(cfg.name, plan.settings.network_weights), cfg.pooling)
    if not style_terms(plan.terms):
        return []
    out = []
    for source in distinct_styles(plan.jobs):
        for sizing in plan.level_sizings:
            try:
                key = target_key(source, network, plan.terms, sizing)
            except StylepipeError:
                break
            out.append(PlannedTarget(source.label, key, key in cache, sizing.max_side, sizing.max_pixels))
    return out


def run_pipeline(
    pipeline: LoadedPipeline,
    *,
    force: bool = False,
    report_path: Path | None = None,
    output_dir: Path | None = None,
    executor: str | None = None,
    events: RunEvents | None = None,
    shard: Shard | None = None,
    bounds: RunBounds | None = None,
) -> RunReport:
    """Run every job (of this shard) that is not already done, under a lock; write the report."""
    events = events or NullEvents()
    bounds = bounds or RunBounds()
    start = time.perf_counter()
    chosen = get_executor(executor or pipeline.config.executor, pipeline.config)
    plan = make_plan(pipeline, force=force, output_dir=output_dir)
    if shard is not None:
        plan.keep(shard.owns)
    device = run_device(plan.settings.device)
    report = RunReport(pipeline=str(pipeline.path), device=str(device), shard=shard.suffix if shard else None,
                       network=plan.settings.network, settings=key_settings(plan.settings, plan.terms),
                       styles=style_pictures(plan.jobs))
    report.rejected = [{"path": str(r.path), "reason": r.reason} for r in plan.rejected]
    for rejected in plan.rejected:
        events.warning(f"not styled: {rejected}")
    report.items += [skipped_item(plan, job) for job in plan.done]
    report.warnings += plan.warnings
    for message in plan.warnings:
        events.warning(message)
    default_name = f"report.{shard.suffix}.json" if shard else "report.json"
    report_path = report_path or plan.output_dir / default_name
    with RunLock(plan.output_dir, shard):
        for leftover in sweep_partials(plan.output_dir):
            events.warning(f"removed {leftover}, a temp file left by a run that was killed")
        todo = select_jobs(plan.todo, bounds)
        prune_paintings(plan, shard, events)
        later = len(plan.todo) - len(todo)
        if later:
            events.warning(f"--max-jobs {bounds.max_jobs}: {later} job(s) left for a later run")
        events.planned(len(plan.jobs) - later, len(todo))  # what this run will do, so progress counts that
        try:
            paint = _reencode(plan, todo, report, events, bounds)
            if paint:
                _execute(plan, paint, device, chosen, report, events, bounds)
        except KeyboardInterrupt:
            bounds.reason = bounds.reason or "interrupted (a second Ctrl-C)"
            raise
        finally:
            finished = {item.job for item in report.items}
            report.remaining = [{"content": job.content_ref, "style": job.style_ref, "output": str(job.output)}
                                for job in plan.todo if job.index not in finished]
            report.stopped = (bounds.reason or bounds.cut) if report.remaining else None
            report.seconds = time.perf_counter() - start
            try:
                write_json_atomic(report.to_dict(), report_path)
            except OSError as exc:
                raise EnvironmentProblem(f"{report_path}: cannot write the report ({exc.strerror or exc}); "
                                         f"finished outputs have their sidecars, so the next run skips them") from None
            if pipeline.config.output.html:
                _write_page(plan.output_dir, report_path, default_name, events)
    return report


def _write_page(out_dir: Path, report_path: Path, default_name: str, events: RunEvents) -> None:
    """The gallery page beside the report; a page that cannot be written costs a warning, not the run."""
    from ..report.page import page_for_folder, page_for_report

    try:
        if report_path.resolve() == out_dir / default_name:
            page_for_folder(out_dir)  # every run's report in the folder (shards included) on one page
        else:
            page_for_report(report_path, out_dir)
    except Exception as exc:  # noqa: BLE001 - the outputs and report.json are written: a page bug must not fail the run
        events.warning(f"report page not written: {type(exc).__name__}: {exc}")


def _reencode(plan: Plan, todo: list[Job], report: RunReport, events: RunEvents, bounds: RunBounds) -> list[Job]:
    """Re-encode the jobs whose painting is kept (seconds each, in this process); the rest are to paint."""
    paint = []
    for job in todo:
        stored = plan.reencode.get(job.index)
        if stored is None:
            paint.append(job)
            continue
        if bounds.should_stop():
            break
        events.job_started(job)
        item = reencode(job, stored, plan.settings, plan.output_dir, plan.reasons[job.index])
        report.items.append(item)
        bounds.job_finished()
        events.job_finished(job, item)
    return paint


def prune_paintings(plan: Plan, shard: Shard | None, events: RunEvents) -> None:
    """Remove kept paintings that no job of the pipeline paints any more (a whole run only: a shard
    sees only its own jobs, so it cannot tell another shard's paintings from stale ones); all of them
    when `output.keep_painting` is off."""
    folder = plan.output_dir / STATE_DIR / PAINTINGS_DIR
    if shard is not None or not folder.is_dir():
        return
    keep = plan.settings.keep_painting
    wanted = {painting_path(plan.output_dir, job.painting) for job in plan.jobs if job.painting and keep}
    for stored in sorted(folder.glob("*.png")) + sorted(folder.glob("*.json")):
        if stored.with_suffix(".png") not in wanted:
            try:
                stored.unlink()
            except OSError as exc:
                events.warning(f"{stored}: cannot remove this stale kept painting ({exc.strerror or exc})")


def skipped_item(plan: Plan, job: Job) -> ItemReport:
    """An output already up to date, with the losses its sidecar recorded when it was made."""
    recorded = read_sidecar(plan.output_dir, job.output) or {}
    loss = recorded.get("loss") if isinstance(recorded.get("loss"), dict) else None
    return ItemReport(content=job.content_ref, style=job.style_ref, output=str(job.output), status="skipped", loss=loss,
                      job=job.index, layers=job.layers)


def select_jobs(todo: list[Job], bounds: RunBounds) -> list[Job]:
    """The jobs this run will start: all, or under `--max-jobs K` exactly K of them (whole
    styles first, so their targets are computed once)."""
    if bounds.max_jobs is None or len(todo) <= bounds.max_jobs:
        return todo
    bounds.cut = f"--max-jobs {bounds.max_jobs} reached"
    return sorted(todo, key=lambda j: (j.style_label, j.index))[: bounds.max_jobs]


def _execute(plan: Plan, todo: list[Job], device: torch.device, executor: Executor, report: RunReport, events: RunEvents,
             bounds: RunBounds) -> None:
    settings = plan.settings
    extractor = build_extractor(settings.network, settings.network_weights, settings.pooling, device)  # type: ignore[arg-type]
    config = plan.pipeline.config
    spec = WorkerSpec(plan.terms, settings, plan.output_dir,
                      plugin_folders=tuple(plan.pipeline.resolve(folder).resolve() for folder in config.plugins),
                      override_plugins=config.override_plugins)
    context = WorkerContext.from_spec(spec, extractor, device)  # its style_targets are the spec's, filled below
    context.should_stop = bounds.should_stop
    with open_cache(plan.pipeline) as cache:
        store = target_store(cache, extractor, plan.terms, plan.sizing, plan.settings, device)
        try:
            started = time.perf_counter()
            if style_terms(plan.terms):
                for source in distinct_styles(todo):
                    hits = store.cache_hits
                    try:
                        levels = store.levels(source, plan.level_sizings)  # CPU tensors, as cached
                        context.style_targets[source.label] = [targets_to(targets, device) for targets in levels]
                    except StylepipeError as exc:
                        context.style_errors[source.label] = str(exc)
                    except Exception as exc:  # noqa: BLE001 - a plugin source's or the network's error: this style's jobs only
                        context.style_errors[source.label] = f"{type(exc).__name__}: {exc}"
                    events.targets(source.label, store.cache_hits > hits)
            report.style_targets_seconds = time.perf_counter() - started
            jobs = {job.index: job for job in todo}
            for item in executor.run(todo, context, events):
                item.reason = plan.reasons.get(item.job)
                report.items.append(item)  # recorded before anything else can interrupt
                bounds.job_finished()
                events.job_finished(jobs[item.job], item)
        finally:
            report.targets_computed = store.computed
            report.targets_cache_hits = store.cache_hits
            for message in cache.warnings:
                events.warning(message)
            report.warnings += cache.warnings
