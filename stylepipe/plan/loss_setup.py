"""Loss terms from a config: plugins loaded, the active terms built, the reconstruction sweeps.
"""

from __future__ import annotations

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline, validate_model
from ..config.schema import PipelineConfig
from ..core.errors import ConfigError
from ..extend.plugins import load_plugin_folders
from ..extend.registries import LOSSES, register_builtins
from ..extend.terms import LossTerm
from .sweep import Side, SweepStep, sweep_steps, union_terms


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
