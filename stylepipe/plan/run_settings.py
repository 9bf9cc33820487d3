"""The run settings: a validated config turned into the plain values every job of a run shares.

The only place where YAML sections become `RunSettings`, `OptimizeSettings`, `Pyramid` and
`StyleSizing`; the Python API's Stylizer uses it too (`shared_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config.collect import ErrorCollector
from ..config.defaults import defaults_for
from ..config.load import LoadedPipeline
from ..config.schema import PipelineConfig, PyramidConfig
from ..core.device import planned_precision
from ..core.errors import TilingError
from ..core.levels import Level, Refine, nominal_side, plan_levels, scaled_budget
from ..core.optimize import OptimizeSettings, Pyramid
from ..core.target_fns import StyleSizing
from ..core.tiling import check_tile_safe
from ..extend.terms import LossTerm
from .loss_setup import build_terms, load_plugins


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
    keep_painting: bool = True  # keep each painted picture at 16 bits so output-only changes re-encode it
    levels: tuple[Level, ...] = ()  # composition, then refine levels up to the output (docs/sizes.md); () or one: single scale
    precision_reason: str = "configured"  # why `precision`: "bf16: CPU has AMX (torch)" (plan, report, page)


def _pyramid(configured: PyramidConfig | None, default: Pyramid) -> Pyramid:
    """The configured coarse-to-fine schedule, or the mode's default when the pipeline has none."""
    if configured is None:
        return default
    return Pyramid(configured.levels, configured.factor, tuple(configured.steps) if configured.steps else None)


def levels_of(cfg: PipelineConfig) -> tuple[Level, ...]:
    """The levels every job of a run goes through: the composition at `size.stroke`'s side, then
    `optimize.refine`'s levels up to the output (one level when the output is about the composition's size)."""
    refine_cfg = cfg.optimize.refine
    refine = None if refine_cfg == "off" else Refine(refine_cfg.factor, tuple(refine_cfg.steps), refine_cfg.content,
                                                     refine_cfg.anchor, refine_cfg.anchor_pixels)
    return tuple(plan_levels(nominal_side(cfg.size.max_side, cfg.size.max_pixels), cfg.size.stroke, refine))


def level_sizings(sizing: StyleSizing, levels: tuple[Level, ...]) -> list[StyleSizing]:
    """Each level's style size: the output's style size at the level's scale, so a painting's stroke
    covers the same fraction of the picture at every level (one sizing, `sizing`, for a single level).
    `sizing.detail` applies above the composition only: the composition and single-level outputs are
    painted at sizes a painting's file rarely reaches, and stay what earlier versions made."""
    if len(levels) <= 1:
        return [replace(sizing, detail=1.0)]
    return [StyleSizing(*scaled_budget(sizing.max_side, sizing.max_pixels, level.scale),
                        1.0 if level.is_composition else sizing.detail) for level in levels]


def level_rows(settings: RunSettings, sizings: list[StyleSizing]) -> list[dict[str, object]]:
    """The levels as the plan shows them: side, steps, and the style size their targets are taken at."""
    levels = settings.levels or (Level(settings.size_max_side or 0, 1.0, None),)
    return [{"side": level.side, "composition": level.is_composition,
             "steps": settings.optimize.steps if level.steps is None else level.steps, "content": level.content,
             "anchor": level.anchor, "anchor_pixels": level.anchor_pixels, "style_side": sizing.max_side, "style_pixels": sizing.max_pixels,
             "style_detail": sizing.detail}
            for level, sizing in zip(levels, sizings)]


def describe_levels(rows: list[dict[str, object]]) -> str:
    """One line: `256 px (composition, 50 steps; style at 256 px) → 512 px (50 steps; style at 512 px)`."""
    parts = []
    for row in rows:
        style = f"style at {row['style_side']} px" if row["style_side"] else f"style at {row['style_pixels']} pixels"
        if row["style_detail"] != 1:
            style += f", no finer than {row['style_detail']:g} of its file"
        what = f"composition, {row['steps']} steps" if row["composition"] and len(rows) > 1 else f"{row['steps']} steps"
        holds = [f"look ×{row['anchor']:g}" if row["anchor"] else "",
                 f"pixels ×{row['anchor_pixels']:g}" if row["anchor_pixels"] else ""]
        if any(holds):
            what += ", holds the composition's " + " and ".join(h for h in holds if h)
        parts.append(f"{row['side']} px ({what}; {style})")
    return " → ".join(parts)


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
    precision = planned_precision(cfg.optimize.precision, cfg.network.device)
    return RunSettings(
        mode=cfg.mode if cfg.mode != "reconstruct" else f"reconstruct-{cfg.reconstruct.side}",
        size_max_side=cfg.size.max_side,
        size_max_pixels=cfg.size.max_pixels,
        optimize=OptimizeSettings(cfg.optimize.optimizer, cfg.optimize.steps or defaults.steps, cfg.optimize.lr),
        pyramid=_pyramid(cfg.optimize.pyramid, defaults.pyramid),
        batch_size=cfg.optimize.batch_size,
        tile=cfg.size.tile,
        max_memory_mb=cfg.limits.max_memory_mb,
        precision=precision.precision,
        precision_reason=precision.reason,
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
        keep_painting=cfg.output.keep_painting,
        levels=levels_of(cfg),
    )


def style_sizing(cfg: PipelineConfig) -> StyleSizing:
    """Style pictures' size at the output: absolute if given, else the output size scaled by
    style_scale; `size.style_detail` only when the output is a level above the composition."""
    detail = cfg.size.style_detail if len(levels_of(cfg)) > 1 else 1.0
    if cfg.size.style_max_side:
        return StyleSizing(cfg.size.style_max_side, None, detail)
    scale = cfg.size.style_scale
    max_side = round(cfg.size.max_side * scale) if cfg.size.max_side else None
    max_pixels = round(cfg.size.max_pixels * scale * scale) if cfg.size.max_pixels else None
    return StyleSizing(max_side, max_pixels, detail)


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
