"""From a validated config to jobs: inputs expanded, terms and sources built, outputs named.

The plan is the single place where YAML-level names (plugin names, globs, output patterns) turn
into plain objects. Everything after it — targets, executors, the optimiser — sees only Jobs and
RunSettings. Which jobs are already done is asked of `plan.resume`.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline
from ..config.schema import DEFAULT_PATTERN, RECONSTRUCT_PATTERN, PipelineConfig
from ..core.errors import ConfigError, InputError
from ..extend.sources import StyleContext, StyleSource
from ..extend.terms import LossTerm
from ..io.hashing import sha256_hex, sha256_json
from .inputs import FileHasher, PictureLoader, expand_inputs
from .jobs import Job, Plan, Rejected
from .loss_setup import mode_warnings, sweep_for
from .outputs import job_label, output_path
from .resume import (
    PAINTING_SETTINGS,
    fingerprint_payload,
    flat_keys,
    is_done,
    job_fingerprint,
    settings_digest,
    todo_reason,
)
from .run_settings import shared_settings
from .styles import build_styles
from .sweep import SweepStep

# --- inputs --------------------------------------------------------------------------------------


# --- outputs and resume --------------------------------------------------------------------------


# --- the plan ------------------------------------------------------------------------------------


def build_plan(pipeline: LoadedPipeline, *, weights_id: str, force: bool = False, output_dir: Path | None = None,
               errors: ErrorCollector | None = None) -> Plan:
    """Expand the pipeline into jobs, name their outputs, and mark the ones already done.

    Every independent check runs even after one fails, so that one ConfigError lists every
    mistake of the file (plus those already in `errors`, from the schema).
    """
    cfg = pipeline.config
    errors = errors or ErrorCollector()
    terms, settings, sizing = shared_settings(pipeline, errors)
    sha = FileHasher()
    context = StyleContext(pipeline.base_dir, PictureLoader(cfg.limits.max_input_pixels, fit=(sizing.max_side, sizing.max_pixels)), sha)
    rejected: list[Rejected] = []
    contents: list[Path | None] = [None]
    styles: list[StyleSource | None] = [None]
    with errors.check():
        contents = list(expand_inputs(pipeline, cfg.content, "content", errors, rejected)) if cfg.uses_content else [None]
    with errors.check():
        styles = list(build_styles(pipeline, context, errors, rejected)) if cfg.uses_styles else [None]
    errors.raise_if_any()
    assert settings is not None
    init_sha = sha(settings.init_path) if settings.init_path else None
    digest = settings_digest(settings, terms, sizing, init_sha)
    painting_digest = settings_digest(settings, terms, sizing, init_sha, PAINTING_SETTINGS)
    out_dir = (output_dir or pipeline.resolve(cfg.output.dir)).resolve()
    pattern = cfg.output.pattern or (RECONSTRUCT_PATTERN if cfg.mode == "reconstruct" else DEFAULT_PATTERN)
    jobs: list[Job] = []
    seen: dict[Path, Job] = {}
    for content, style, step in _pairs(cfg, terms, contents, styles):
        index = len(jobs)
        fields = {
            "content": content.stem if content else "palette",
            "style": style.label if style else "content",
            "mode": f"reconstruct-{step.side}" if step else settings.mode,
            "ext": cfg.output.format,
            "index": f"{index:05d}",
            "input": content.stem if content else (style.label if style else ""),
            "layers": step.label if step else "all",
            "stem_hash": stem_hash(content.name if content else (style.label if style else "")),
        }
        try:
            output = output_path(out_dir, pattern, fields)
        except ConfigError as exc:
            raise pipeline.error(("output", "pattern"), str(exc).removeprefix("output.pattern ")) from None
        if output in seen:
            raise _collision(pipeline, pattern, f"{_describe(seen[output])} and {_describe(content, style, step)} "
                             f"would both write {output.name}")
        content_sha, fingerprint, painting, painting_keys, error = None, None, None, None, None
        try:
            content_sha = sha(content) if content else None
            sweep = {"side": step.side, "layers": list(step.layers)} if step else None
            fingerprint = job_fingerprint(content_sha, style, digest, weights_id, sweep)
            painted = fingerprint_payload(content_sha, style, painting_digest, weights_id, sweep)
            painting, painting_keys = sha256_json(painted), flat_keys(painted)
        except InputError as exc:
            error = str(exc)
        job = Job(index, content, style, output, fingerprint, error, content_sha=content_sha, sweep=step, painting=painting,
                  painting_keys=painting_keys)
        seen[output] = job
        jobs.append(job)
    plan = Plan(pipeline, settings, terms, sizing, jobs, output_dir=out_dir, warnings=mode_warnings(pipeline),
                rejected=rejected)
    if not force:
        plan.done = [job for job in jobs if is_done(out_dir, job.output, job.fingerprint)]
    for job in plan.todo:
        if force:
            plan.reasons[job.index] = "--force"
            continue
        reason, stored = todo_reason(out_dir, job.output, job.painting, job.painting_keys, settings.keep_painting)
        plan.reasons[job.index] = reason
        if stored is not None and job.error is None:
            plan.reencode[job.index] = stored
    return plan


def stem_hash(name: str) -> str:
    """`{stem_hash}`: 8 hex digits of the input's file name, which tell apart names that clean to the same text."""
    return sha256_hex(unicodedata.normalize("NFC", name))[:8]


def _collision(pipeline: LoadedPipeline, pattern: str, clash: str) -> ConfigError:
    """Two jobs, one output name: blamed on `output.pattern` where it is set, else on the default pattern."""
    example = pattern.replace("{content}", "{content}-{stem_hash}", 1) if "{content}" in pattern else "{index}_" + pattern
    fix = f"add {{index}} or {{stem_hash}} (8 hex digits of the input's file name), e.g. output.pattern: '{example}'"
    if pipeline.config.output.pattern is None:
        return ConfigError(f"{pipeline.source_map.filename}: output.pattern is not set, and the default pattern "
                           f"{pattern!r} names two outputs alike: {clash}; {fix}")
    return pipeline.error(("output", "pattern"), f"{clash}; {fix}")


def _describe(first: Job | Path | None, style: StyleSource | None = None, step: SweepStep | None = None) -> str:
    """A job in words for error messages, with the content's path as configured."""
    if isinstance(first, Job):
        job = first
        first, style, step = job.content, job.style, job.sweep
    return job_label(str(first) if first else None, style.label if style else None, step.label if step else None)


def _pairs(cfg: PipelineConfig, terms: list[LossTerm], contents: list[Path | None],
           styles: list[StyleSource | None]) -> list[tuple[Path | None, StyleSource | None, SweepStep | None]]:
    """What each job makes: content × style, or in reconstruct mode each input × sweep step."""
    if cfg.mode != "reconstruct":
        return [(content, style, None) for content in contents for style in styles]
    sweeps = sweep_for(terms, cfg)
    pairs: list[tuple[Path | None, StyleSource | None, SweepStep | None]] = []
    pairs += [(content, None, step) for content in contents if content for step in sweeps.get("content", [])]
    pairs += [(None, style, step) for style in styles if style for step in sweeps.get("style", [])]
    return pairs
