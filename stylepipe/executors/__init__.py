"""Executors by name; `local` is built in, others (ray) plug in here."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Executor
from .local import LocalExecutor

EXECUTORS: dict[str, type] = {"local": LocalExecutor}


def get_executor(name: str) -> Executor:
    """Resolve an executor name from the config or `--executor`."""
    try:
        return EXECUTORS[name]()
    except KeyError:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}") from None


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "get_executor"]
