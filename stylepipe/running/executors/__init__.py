"""Executors by name: `local` is built in, `ray` needs the optional extra (`stylepipe[ray]`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...core.errors import ConfigError
from .base import Executor
from .local import LocalExecutor

if TYPE_CHECKING:
    from ...config.schema import PipelineConfig


def _ray(config: PipelineConfig | None) -> Executor:
    """The Ray executor with the pipeline's `ray:` settings; its module imports Ray only when used."""
    from .ray import RayExecutor

    return RayExecutor(config.ray if config is not None else None)


#: name → factory given the pipeline's config (for the settings of its own section, if any).
EXECUTORS: dict[str, Callable[[PipelineConfig | None], Executor]] = {
    "local": lambda config: LocalExecutor(),
    "ray": _ray,
}


def get_executor(name: str, config: PipelineConfig | None = None) -> Executor:
    """Resolve an executor name from the config or `--executor`, configured from `config`."""
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}") from None
    return factory(config)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "get_executor"]
