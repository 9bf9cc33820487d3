"""Plugin registries: one small typed name → factory table per kind of extension (loading plugin
files is `extend.plugins`).

Filled from three places, in this order of trust: the built-ins, installed packages' entry points
(groups `stylepipe.losses` and `stylepipe.style_sources`, loaded when a config names something
the table lacks, or when `stylepipe plugins list` asks for everything), and Python files in the
folders that `plugins:` names in pipeline.yaml. The registries are the only global state in
stylepipe, on purpose: a plugin registers itself with a decorator at import time.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.errors import ConfigError, PluginError
from ..core.suggest import did_you_mean

T = TypeVar("T")
BUILTIN = "built-in"
PLUGIN_NAMESPACE = "stylepipe_plugins"  # the private package that plugin files are imported under
#: set by `extend.plugins` while it imports a plugin file: whether it may override, and which file it is
OVERRIDING: contextvars.ContextVar[bool] = contextvars.ContextVar("stylepipe_plugin_override", default=False)
LOADING: contextvars.ContextVar[str | None] = contextvars.ContextVar("stylepipe_plugin_file", default=None)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered factory and where it came from (shown by `stylepipe plugins list`)."""

    name: str
    factory: T
    origin: str


def _origin_of(obj: Any) -> str:
    """The file that defined `obj`, or 'built-in' for stylepipe's own code."""
    module_name = getattr(obj, "__module__", "") or ""
    if module_name == "stylepipe" or module_name.startswith("stylepipe."):
        return BUILTIN
    module = sys.modules.get(module_name)
    return str(getattr(module, "__file__", None) or module_name or "unknown")


class Registry(Generic[T]):
    """Name → factory for one kind of plugin; duplicate names are refused unless overriding."""

    def __init__(self, kind: str, entry_point_group: str | None, check: Callable[[Any], str | None] | None = None) -> None:
        """`entry_point_group` None: a table of stylepipe's own (networks, executors) that packages cannot extend."""
        self.kind = kind
        self.group = entry_point_group
        self._check = check
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_loaded = False

    def register(self, name: str, factory: T, *, origin: str | None = None, override: bool | None = None) -> T:
        """Add a factory; a second one under the same name from elsewhere is an error unless overriding."""
        origin = origin or LOADING.get() or _origin_of(factory)
        override = OVERRIDING.get() if override is None else override
        if not name or not isinstance(name, str):
            raise PluginError(f"{origin}: a {self.kind} needs a non-empty string name, got {name!r}")
        problem = self._check(factory) if self._check else None
        if problem:
            raise PluginError(f"{origin}: {self.kind} {name!r} {problem}")
        existing = self._entries.get(name)
        if existing and existing.origin != origin and not override:
            raise PluginError(
                f"{origin}: {self.kind} {name!r} is already registered by {existing.origin}; "
                "rename it, or set `override_plugins: true` in the pipeline to replace it"
            )
        self._entries[name] = Entry(name, factory, origin)
        return factory

    def decorator(self, name: str, *, override: bool | None = None) -> Callable[[T], T]:
        """`@register_loss("name")` style registration at import time."""

        def wrap(factory: T) -> T:
            return self.register(name, factory, override=override)

        return wrap

    def get(self, name: str) -> T:
        """Resolve a name from the config, loading entry points lazily, or list what exists."""
        if name not in self._entries:
            self.load_entry_points()
        try:
            return self._entries[name].factory
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            hint = did_you_mean(name, self._entries)
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; available: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> tuple[str, ...]:
        """The registered names, in the order they were registered (the built-ins' own order first)."""
        return tuple(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def load_entry_points(self) -> None:
        """Import installed packages' plugins once; a broken one names its entry point."""
        if self._entry_points_loaded or self.group is None:
            return
        broken: list[str] = []
        for ep in importlib.metadata.entry_points(group=self.group):
            origin = f"entry point {ep.name} = {ep.value}" + (f" ({ep.dist.name})" if ep.dist else "")
            if ep.name in self._entries and self._entries[ep.name].origin == origin:
                continue
            try:
                factory = ep.load()
                self.register(ep.name, factory, origin=origin)
            except PluginError as exc:
                broken.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                broken.append(f"{origin}: cannot be loaded: {type(exc).__name__}: {exc}")
        self._entry_points_loaded = True  # the good ones stay registered even if one is broken
        if broken:
            raise PluginError("\n".join(broken))

    def snapshot(self) -> dict[str, Entry[T]]:
        """Copy of the table, so tests can restore it after loading plugins."""
        return dict(self._entries)

    def restore(self, snapshot: dict[str, Entry[T]]) -> None:
        """Back to a snapshot; plugin files loaded since are forgotten so they can load again."""
        self._entries = dict(snapshot)
        origins = {entry.origin for entry in snapshot.values()}
        for name, module in list(sys.modules.items()):
            if name.startswith(PLUGIN_NAMESPACE + ".") and getattr(module, "__file__", None) not in origins:
                del sys.modules[name]


def _check_loss(factory: Any) -> str | None:
    from .terms import LossTerm

    if not (isinstance(factory, type) and issubclass(factory, LossTerm)):
        return "must be a subclass of stylepipe.losses.LossTerm"
    return None


def _check_style_source(factory: Any) -> str | None:
    from .sources import StyleSource

    if not (isinstance(factory, type) and issubclass(factory, StyleSource)):
        return "must be a subclass of stylepipe.StyleSource"
    return None


LOSSES: Registry[Any] = Registry("loss term", "stylepipe.losses", _check_loss)
STYLE_SOURCES: Registry[Any] = Registry("style source", "stylepipe.style_sources", _check_style_source)


def register_loss(name: str, *, override: bool | None = None) -> Callable[[T], T]:
    """Decorator for a LossTerm subclass: `@register_loss("mean_std")`."""
    return LOSSES.decorator(name, override=override)


def register_style_source(name: str, *, override: bool | None = None) -> Callable[[T], T]:
    """Decorator for a StyleSource subclass: `@register_style_source("folder")`."""
    return STYLE_SOURCES.decorator(name, override=override)


def register_builtins() -> None:
    """Fill the tables with stylepipe's own terms and sources (idempotent)."""
    from .sources import BUILTIN_SOURCES
    from .terms import BUILTIN_TERMS

    for term in BUILTIN_TERMS:
        if term.name not in LOSSES:
            LOSSES.register(term.name, term, origin=BUILTIN)
    for source in BUILTIN_SOURCES:
        if source.name not in STYLE_SOURCES:
            STYLE_SOURCES.register(source.name, source, origin=BUILTIN)
