"""From a validated config to jobs: inputs expanded, terms and sources built, outputs named.

The plan is the single place where YAML-level names (plugin names, globs, output patterns) turn
into plain objects. Everything after it — targets, executors, the optimiser — sees only Jobs and
RunSettings. Which jobs are already done is asked of `stylepipe.resume`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.defaults import defaults_for
from ..config.schema import (
    DEFAULT_PATTERN,
    RECONSTRUCT_PATTERN,
    ErrorCollector,
    LoadedPipeline,
    PipelineConfig,
    PyramidConfig,
    validate_model,
)
from ..core.device import planned_precision
from ..core.errors import ConfigError, InputError, TilingError
from ..core.optimize import OptimizeSettings, Pyramid
from ..core.target_fns import StyleSizing
from ..core.tiling import check_tile_safe
from ..extend.plugins import load_plugin_folders
from ..extend.registries import LOSSES, STYLE_SOURCES, register_builtins
from ..extend.sources import StyleContext, StyleSource
from ..extend.terms import LossTerm
from ..io.files import not_a_file
from ..io.hashing import sha256_file
from ..io.images import IMAGE_SUFFIXES, LoadedImage, load_image
from .resume import is_done, job_fingerprint, settings_digest
from .sweep import Side, SweepStep, sweep_steps, union_terms

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs besides the jobs, as plain values (no pydantic, no YAML)."""

    mode: str
    size_max_side: int | None
    size_max_pixels: int | None
    optimize: OptimizeSettings
    pyramid: Pyramid
    batch_size: int | str
    tile: int | str  # "auto", "off", or a tile's core side in pixels (size.tile)
    max_memory_mb: int | None  # the memory one batch may use (limits.max_memory_mb); None: what is free
    precision: str  # fp32, bf16 or fp16: `auto` resolved for the run's device, so resume hashes say what ran
    compile: bool
    init: str
    init_path: Path | None
    noise: float
    seed: int
    preserve_colors: str | None
    output_format: str
    output_quality: int
    max_input_pixels: int
    network: str
    network_weights: Path | None
    pooling: str
    device: str
    keep_metadata: bool = False  # copy the content photo's EXIF to its output
    output_bit_depth: int = 8  # 16: png and tiff only (the config checks)
    output_dpi: int | None = None  # None: each output keeps its content photo's resolution, if it states one


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


# --- inputs --------------------------------------------------------------------------------------


def expand_entry(pipeline: LoadedPipeline, entry: str, loc: tuple, rejected: list[Rejected] | None = None) -> list[Path]:
    """One file, folder (its pictures, sorted) or glob; one that matches nothing is an error.

    A folder's or glob's other entries go to `rejected` with their reason, so that nothing in a
    photo set is dropped in silence; hidden files and plain sub-folders are not entries.
    """
    path = pipeline.resolve(entry)
    if path.is_dir():
        found = sorted(path.iterdir())
    elif path.exists() or path.is_symlink():
        return [path]  # named on its own: tried as a picture, and its job fails if it is none
    elif glob.has_magic(entry):  # only the entry as written is a pattern, never the folder it lives in
        base = "" if Path(entry).expanduser().is_absolute() else glob.escape(str(pipeline.base_dir)) + "/"
        pattern = base + str(Path(entry).expanduser())
        found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
    else:
        raise pipeline.error(loc, f"file not found: {path}")
    matches, others = [], []
    for candidate in found:
        reason = skip_reason(candidate)
        if reason is None:
            matches.append(candidate)
        elif reason:
            others.append(Rejected(candidate, reason))
    if not matches:
        found_instead = f"; found only {len(others)} other file(s), e.g. {others[0]}" if others else ""
        raise pipeline.error(loc, f"no pictures match {entry!r}{found_instead}")
    if rejected is not None:
        rejected.extend(others)
    return matches


def skip_reason(path: Path) -> str | None:
    """None for a picture file to style; "" for what is not worth a word; else why it is skipped.

    Looks only at the directory entry (lstat/stat), never opens it: a FIFO cannot hang the plan.
    """
    if path.name.startswith("."):
        return ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling symbolic link" if path.is_symlink() else "vanished while listing"
    except OSError as exc:
        return f"cannot stat ({exc.strerror or exc})"
    kind = not_a_file(mode)
    suffix = path.suffix.lower()
    if kind and kind.startswith("is a folder"):
        return f"{kind} (sub-folders are not searched)" if suffix in IMAGE_SUFFIXES else ""
    if kind:
        return kind
    if suffix not in IMAGE_SUFFIXES:
        return f"unsupported file type {suffix or '(no extension)'!r}: not a picture format Pillow reads"
    return None


def expand_inputs(pipeline: LoadedPipeline, entries: Iterable[str], key: str, errors: ErrorCollector | None = None,
                  rejected: list[Rejected] | None = None) -> list[Path]:
    """Every entry expanded, in order, each picture once; with `errors`, every bad entry is
    recorded there (and skipped) instead of stopping at the first; files found but not styled go to
    `rejected` with their reason."""
    errors = errors or ErrorCollector()
    found: list[Path] = []
    for i, entry in enumerate(entries):
        with errors.check():
            found.extend(expand_entry(pipeline, entry, (key, i), rejected))
    if errors.lines and not found:
        errors.raise_if_any()
    return list(dict.fromkeys(p.resolve() for p in found))


def build_terms(pipeline: LoadedPipeline, errors: ErrorCollector | None = None) -> list[LossTerm]:
    """The active loss terms for the mode, built-ins first, then plugins from `losses.extra`."""
    cfg = pipeline.config
    errors = errors or ErrorCollector()
    terms: list[LossTerm] = [
        LOSSES.get("content")(cfg.losses.content),
        LOSSES.get("style")(cfg.losses.style),
        LOSSES.get("tv")(cfg.losses.tv),
    ]
    for i, extra in enumerate(cfg.losses.extra):
        with errors.check():
            try:
                factory = LOSSES.get(extra.name)
            except ConfigError as exc:
                raise pipeline.error(("losses", "extra", i, "name"), str(exc)) from None
            params = validate_model(factory.Params, extra.model_extra or {}, pipeline.source_map, ("losses", "extra", i))
            terms.append(factory(params))
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        errors.add(pipeline.error(("losses", "extra"), "each loss term may appear once"))
    if cfg.mode == "reconstruct":
        return _sweep_union(cfg, [t for t in terms if t.side == "image" and t.weight > 0])
    return [t for t in terms if t.weight > 0 and _active(t, cfg)]


def _active(term: LossTerm, cfg: PipelineConfig) -> bool:
    """Which sides a mode uses: a palette has no content side."""
    return cfg.mode == "transfer" or term.side != "content"


def _sweep_sides(cfg: PipelineConfig) -> list[Side]:
    side = cfg.reconstruct.side
    return ["content", "style"] if side == "both" else [side]


def _sweep_union(cfg: PipelineConfig, image_terms: list[LossTerm]) -> list[LossTerm]:
    weights = {"content": cfg.losses.content.weight or 1.0, "style": cfg.losses.style.weight or 1.0}
    return union_terms(_sweep_sides(cfg), cfg.reconstruct.layers, weights, image_terms)


def sweep_for(plan_terms: list[LossTerm], cfg: PipelineConfig) -> dict[str, list[SweepStep]]:
    """Reconstruct mode: each side's steps, with the plan's weights and image terms."""
    image_terms = [t for t in plan_terms if t.side == "image"]
    weights = {t.side: t.weight for t in plan_terms if t.side != "image"}
    return {side: sweep_steps(side, cfg.reconstruct.layers, weights[side], image_terms)
            for side in _sweep_sides(cfg)}


def mode_warnings(pipeline: LoadedPipeline) -> list[str]:
    """Settings the mode ignores, said once rather than silently dropped."""
    cfg = pipeline.config
    warnings = []
    if cfg.mode != "transfer" and cfg.content and not cfg.uses_content:
        warnings.append(f"{pipeline.source_map.locate(('content',))}: `content:` is not used by mode {cfg.mode}"
                        + (" with reconstruct.side style" if cfg.mode == "reconstruct" else ""))
    if cfg.mode != "transfer" and cfg.optimize.init == "content" and "init" in cfg.optimize.model_fields_set:
        warnings.append(f"{pipeline.source_map.locate(('optimize', 'init'))}: optimize.init: content is ignored; "
                        f"mode {cfg.mode} starts from noise")
    return warnings


def build_styles(pipeline: LoadedPipeline, context: StyleContext, errors: ErrorCollector | None = None,
                 rejected: list[Rejected] | None = None) -> list[StyleSource]:
    """One StyleSource per style (a folder or glob in an `image` entry gives one per picture);
    with `errors`, every bad entry is recorded there instead of stopping at the first."""
    errors = errors or ErrorCollector()
    sources: list[StyleSource] = []
    for i, entry in enumerate(pipeline.config.styles):
        with errors.check():
            sources.extend(entry_sources(pipeline, context, entry, ("styles", i), rejected))
    labels = [s.label for s in sources]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        errors.add(pipeline.error(("styles",), f"two styles share the label {dupes[0]!r}; give one a `name:`"))
    if errors.lines and not sources:
        errors.raise_if_any()
    return sources


def entry_sources(pipeline: LoadedPipeline, context: StyleContext, entry: Any, loc: tuple,
                  rejected: list[Rejected] | None = None) -> list[StyleSource]:
    """The sources of one `styles:` entry: its parameters and its files both checked, so that an
    entry with a misspelt key and a missing file reports both."""
    try:
        factory = STYLE_SOURCES.get(entry.source)
    except ConfigError as exc:
        raise pipeline.error(loc + ("source",), str(exc)) from None
    errors = ErrorCollector()
    raw = entry.params()
    with errors.check():
        validate_model(factory.Params, raw, pipeline.source_map, loc)
    variants: list[dict[str, Any]] = []
    with errors.check():
        if factory.name == "image" and isinstance(raw.get("path"), str):
            paths = expand_entry(pipeline, raw["path"], loc + ("path",), rejected)  # folders/globs allowed
            variants = [{**raw, "path": str(p)} for p in paths]
        else:
            variants = [raw]
    errors.raise_if_any()
    sources: list[StyleSource] = []
    for params_raw in variants:
        params = validate_model(factory.Params, params_raw, pipeline.source_map, loc)
        source = factory(params, context, entry.name if len(variants) == 1 else None)
        try:
            files = source.files()
        except ConfigError as exc:
            raise pipeline.error(loc, str(exc)) from None
        for path in files:
            if not path.is_file():
                raise pipeline.error(loc, f"style file not found: {path}")
        sources.append(source)
    return sources


# --- outputs and resume --------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """A file-name-safe version of a label: no separators, no dots at the start."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "_"
    return cleaned[:120]


def output_path(out_dir: Path, pattern: str, fields: dict[str, str]) -> Path:
    """Fill the pattern; the result must stay inside out_dir whatever the labels contain."""
    try:
        name = pattern.format(**{k: safe_name(v) for k, v in fields.items()})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"output.pattern {pattern!r}: unknown field {exc}; use {{content}} {{style}} {{mode}} {{ext}} {{index}}") from None
    path = (out_dir / name).resolve()
    root = out_dir.resolve()
    if root not in path.parents:
        raise ConfigError(f"output.pattern {pattern!r} gives {name!r}, which is outside {out_dir}")
    return path


# --- the plan ------------------------------------------------------------------------------------


def _pyramid(configured: PyramidConfig | None, default: Pyramid) -> Pyramid:
    """The configured coarse-to-fine schedule, or the mode's default when the pipeline has none."""
    if configured is None:
        return default
    return Pyramid(configured.levels, configured.factor, tuple(configured.steps) if configured.steps else None)


def run_settings(pipeline: LoadedPipeline) -> RunSettings:
    cfg = pipeline.config
    init = cfg.optimize.init
    init_path = None
    if init not in ("content", "noise"):
        init_path = pipeline.resolve(init)
        if not init_path.is_file():
            raise pipeline.error(("optimize", "init"), f"use content, noise, or an existing picture file (not found: {init_path})")
        init = "image"
    if init == "content" and (cfg.mode == "palette" or (cfg.mode == "reconstruct")):
        init = "noise"  # nothing to start from but noise when reconstructing or painting a palette
    defaults = defaults_for(cfg.mode)
    return RunSettings(
        mode=cfg.mode if cfg.mode != "reconstruct" else f"reconstruct-{cfg.reconstruct.side}",
        size_max_side=cfg.size.max_side,
        size_max_pixels=cfg.size.max_pixels,
        optimize=OptimizeSettings(cfg.optimize.optimizer, cfg.optimize.steps or defaults.steps, cfg.optimize.lr),
        pyramid=_pyramid(cfg.optimize.pyramid, defaults.pyramid),
        batch_size=cfg.optimize.batch_size,
        tile=cfg.size.tile,
        max_memory_mb=cfg.limits.max_memory_mb,
        precision=planned_precision(cfg.optimize.precision, cfg.network.device),
        compile=cfg.optimize.compile,
        init=init,
        init_path=init_path,
        noise=cfg.optimize.noise,
        seed=cfg.optimize.seed,
        preserve_colors=cfg.postprocess.preserve_colors,
        output_format=cfg.output.format,
        output_quality=cfg.output.quality,
        max_input_pixels=cfg.limits.max_input_pixels,
        network=cfg.network.name,
        network_weights=pipeline.resolve(cfg.network.weights) if cfg.network.weights else None,
        pooling=cfg.network.pooling,
        device=cfg.network.device,
        keep_metadata=cfg.output.keep_metadata,
        output_bit_depth=cfg.output.bit_depth,
        output_dpi=cfg.output.dpi,
    )


def style_sizing(cfg: PipelineConfig) -> StyleSizing:
    """Style pictures' size: absolute if given, else the output size scaled by style_scale."""
    if cfg.size.style_max_side:
        return StyleSizing(cfg.size.style_max_side, None)
    scale = cfg.size.style_scale
    max_side = round(cfg.size.max_side * scale) if cfg.size.max_side else None
    max_pixels = round(cfg.size.max_pixels * scale * scale) if cfg.size.max_pixels else None
    return StyleSizing(max_side, max_pixels)


def load_plugins(pipeline: LoadedPipeline) -> None:
    """Built-ins plus the folders this pipeline names (never the working directory on its own)."""
    register_builtins()
    folders = []
    for i, folder in enumerate(pipeline.config.plugins):
        path = pipeline.resolve(folder)
        if not path.is_dir():
            raise pipeline.error(("plugins", i), f"plugin folder not found: {path}")
        folders.append(path)
    load_plugin_folders(folders, override=pipeline.config.override_plugins)


class PictureLoader:
    """A memoised picture loader (each style picture is decoded once per process); picklable."""

    def __init__(self, max_input_pixels: int, capacity: int = 16, fit: tuple[int | None, int | None] | None = None) -> None:
        self.max_input_pixels = max_input_pixels
        self.capacity = capacity
        self.fit = fit  # the style size: pictures are kept no larger than twice it (tiles are smaller still)
        self._memo: dict[Path, LoadedImage] = {}

    def __call__(self, path: Path) -> LoadedImage:
        if path not in self._memo:
            if len(self._memo) >= self.capacity:
                self._memo.pop(next(iter(self._memo)))
            self._memo[path] = load_image(path, self.max_input_pixels, self.fit)
        return self._memo[path]

    def __getstate__(self) -> dict[str, Any]:
        return {"max_input_pixels": self.max_input_pixels, "capacity": self.capacity, "fit": self.fit, "_memo": {}}


class FileHasher:
    """sha256 of files, each read once per process; unreadable files become InputErrors."""

    def __init__(self) -> None:
        self._hashes: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self._hashes:
            try:
                self._hashes[path] = sha256_file(path)
            except OSError as exc:
                raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
        return self._hashes[path]


def shared_settings(pipeline: LoadedPipeline, errors: ErrorCollector) -> tuple[list[LossTerm], RunSettings | None, StyleSizing]:
    """What every job of a pipeline shares: plugins loaded, the active terms, the run settings
    (None when they are wrong: the error is in `errors`) and the style size. The plan's first
    half, and all that the Python API's Stylizer needs of a configuration."""
    with errors.check():
        load_plugins(pipeline)
    terms = build_terms(pipeline, errors)
    if not any(term.side != "image" for term in terms):  # a smoothness term alone paints flat grey
        errors.add(pipeline.error(("losses",), f"no content or style term is active in mode {pipeline.config.mode}; "
                                  "give one a weight above 0"))
    if isinstance(pipeline.config.size.tile, int):  # with `auto` such a term only turns tiling off, with a warning
        try:
            check_tile_safe(terms)
        except TilingError as exc:
            errors.add(pipeline.error(("size", "tile"), str(exc)))
    settings = None
    with errors.check():
        settings = run_settings(pipeline)
    return terms, settings, style_sizing(pipeline.config)


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
        }
        try:
            output = output_path(out_dir, pattern, fields)
        except ConfigError as exc:
            raise pipeline.error(("output", "pattern"), str(exc).removeprefix("output.pattern ")) from None
        if output in seen:
            raise pipeline.error(("output", "pattern"), f"{_describe(seen[output])} and {_describe(content, style, step)} "
                                 f"would both write {output.name}; add the field that tells them apart, or {{index}}")
        content_sha = None
        try:
            content_sha = sha(content) if content else None
            sweep = {"side": step.side, "layers": list(step.layers)} if step else None
            fingerprint, error = job_fingerprint(content_sha, style, digest, weights_id, sweep), None
        except InputError as exc:
            fingerprint, error = None, str(exc)
        job = Job(index, content, style, output, fingerprint, error, content_sha=content_sha, sweep=step)
        seen[output] = job
        jobs.append(job)
    plan = Plan(pipeline, settings, terms, sizing, jobs, output_dir=out_dir, warnings=mode_warnings(pipeline),
                rejected=rejected)
    if not force:
        plan.done = [job for job in jobs if is_done(out_dir, job.output, job.fingerprint)]
    return plan


def _describe(first: Job | Path | None, style: StyleSource | None = None, step: SweepStep | None = None) -> str:
    """A job in words for error messages: `chelsea.jpg × scream`, `starry_night from conv1_1`."""
    if isinstance(first, Job):
        job = first
        first, style, step = job.content, job.style, job.sweep
    name = " × ".join(part for part in (str(first) if first else None, style.label if style else None) if part)
    return f"{name} from {step.label}" if step else name


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
