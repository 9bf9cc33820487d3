"""Executors by name: `local` is built in, `ray` needs the optional extra (`stylepipe[ray]`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...extend.registries import BUILTIN, Registry
from .base import Executor
from .local import LocalExecutor

if TYPE_CHECKING:
    from ...config.schema import PipelineConfig


def _ray(config: PipelineConfig | None) -> Executor:
    """The Ray executor with the pipeline's `ray:` settings; its module imports Ray only when used."""
    from .ray import RayExecutor

    return RayExecutor(config.ray if config is not None else None)


def _local(config: PipelineConfig | None) -> Executor:
    return LocalExecutor()


#: name → factory given the pipeline's config (for the settings of its own section, if any).
EXECUTORS: Registry[Callable[[PipelineConfig | None], Executor]] = Registry("executor", None)
EXECUTORS.register("local", _local, origin=BUILTIN)
EXECUTORS.register("ray", _ray, origin=BUILTIN)


def get_executor(name: str, config: PipelineConfig | None = None) -> Executor:
    """Resolve an executor name from the config or `--executor`, configured from `config`."""
    return EXECUTORS.get(name)(config)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "get_executor"]
