"""Keyword settings: the Python API's names for the keys of pipeline.yaml.

`Stylizer(max_side=64, steps=3, style_weight=300)` means `size: {max_side: 64}`,
`optimize: {steps: 3}` and `losses: {style: {weight: 300}}`, and is validated by the same pydantic
models as the file, so a mistake gets the same message (with the same did-you-mean).

The rule, one for every key:

* A keyword names the key whose path ends with it, `_` standing for the dots between parts:
  `max_side` is `size.max_side`, `style_weight` is `losses.style.weight`, `cache_dir` is
  `cache.dir`. A full path works too: `size_max_side=64`, or `**{"losses.style.weight": 300}`.
* When several keys end with it, the one nearest the top wins if it is alone at its depth:
  `steps` is `optimize.steps`, not `optimize.pyramid.steps`. Otherwise the keyword is refused and
  the error lists the full names and the keywords that pick each (`weight` → `content_weight`,
  `style_weight` or `tv_weight`).
* A keyword that names a section takes a dict, merged key by key into what is already there:
  `losses={"style": {"weight": 300}}`, `pyramid={"levels": 3}`.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from ..core.errors import ConfigError
from ..core.suggest import did_you_mean
from .collect import ErrorCollector
from .overrides import Override
from .schema import PipelineConfig

#: The sections a Stylizer reads. The others (content, styles, mode, output, executor, ray…) say
#: what a run reads and writes: `stylepipe.run` takes every key.
STYLIZER_SECTIONS = ("size", "optimize", "network", "losses", "postprocess", "cache", "limits", "plugins",
                     "override_plugins")
ALL_SECTIONS = tuple(PipelineConfig.model_fields)


@dataclass(frozen=True)
class Key:
    """One key of the schema: its path from the top, and whether it is a section (takes a dict)."""

    path: tuple[str, ...]
    section: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model a key holds (`Model` or `Model | None`); lists of models are values, not sections."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, dict, tuple):
        return None
    models = [found for arg in typing.get_args(annotation) if (found := _section_model(arg)) is not None]
    return models[0] if len(models) == 1 else None


def _walk(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterable[Key]:
    for name, info in model.model_fields.items():
        inner = _section_model(info.annotation)
        yield Key((*prefix, name), inner is not None)
        if inner is not None:
            yield from _walk(inner, (*prefix, name))


@cache
def schema_keys(sections: tuple[str, ...] = ALL_SECTIONS) -> tuple[Key, ...]:
    """Every key of pipeline.yaml under the given top-level sections, sections themselves included."""
    return tuple(key for key in _walk(PipelineConfig, ()) if key.path[0] in sections)


def _normal(keyword: str) -> str:
    return keyword.replace(".", "_")


def _matches(keyword: str, keys: Sequence[Key]) -> list[Key]:
    """Keys whose path ends with the keyword's parts."""
    wanted = _normal(keyword)
    return [key for key in keys if any("_".join(key.path[-n:]) == wanted for n in range(1, len(key.path) + 1))]


def _chosen(matches: list[Key]) -> Key | None:
    """The match nearest the top when it is alone at its depth; None when that is ambiguous."""
    if not matches:
        return None
    top = min(len(key.path) for key in matches)
    nearest = [key for key in matches if len(key.path) == top]
    return nearest[0] if len(nearest) == 1 else None


def keyword_for(key: Key, keys: Sequence[Key]) -> str:
    """The shortest keyword that names `key` (`style_weight` for losses.style.weight)."""
    for n in range(1, len(key.path) + 1):
        keyword = "_".join(key.path[-n:])
        if _chosen(_matches(keyword, keys)) == key:
            return keyword
    return "_".join(key.path)


def keywords(sections: tuple[str, ...] = ALL_SECTIONS) -> dict[str, str]:
    """Each key's shortest keyword → its dotted path, in schema order: the table in docs/library.md."""
    keys = schema_keys(sections)
    return {keyword_for(key, keys): key.dotted for key in keys}


def resolve(keyword: str, keys: Sequence[Key], where: str) -> Key:
    """The key a keyword names, or a ConfigError that says why none or which ones.

    >>> keys = schema_keys(STYLIZER_SECTIONS)
    >>> [resolve(word, keys, "Stylizer").dotted for word in ("max_side", "steps", "style_weight", "cache_dir")]
    ['size.max_side', 'optimize.steps', 'losses.style.weight', 'cache.dir']
    >>> resolve("weight", keys, "Stylizer(weight=…)")
    Traceback (most recent call last):
    ...
    stylepipe.core.errors.ConfigError: Stylizer(weight=…): weight is ambiguous: it may be losses.content.weight, \
losses.style.weight or losses.tv.weight; write content_weight, style_weight or tv_weight (or give the section as a dict, \
e.g. losses={...})
    """
    matches = _matches(keyword, keys)
    chosen = _chosen(matches)
    if chosen is not None:
        return chosen
    if not matches:
        hint = did_you_mean(keyword, [keyword_for(key, keys) for key in keys] + [key.path[-1] for key in keys])
        raise ConfigError(f"{where}: {keyword}: Extra inputs are not permitted{hint}")
    top = min(len(key.path) for key in matches)
    nearest = [key for key in matches if len(key.path) == top]
    names = _either([key.dotted for key in nearest])
    spellings = _either([keyword_for(key, keys) for key in nearest])
    raise ConfigError(f"{where}: {keyword} is ambiguous: it may be {names}; write {spellings} "
                      f"(or give the section as a dict, e.g. {nearest[0].path[0]}={{...}})")


def _either(words: list[str]) -> str:
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]


def overrides(settings: Mapping[str, Any], caller: str, sections: tuple[str, ...] = ALL_SECTIONS) -> list[Override]:
    """Keyword settings as overrides of the pipeline's keys; a dict given to a section is spread
    into one override per key, so it merges with what the file has there instead of replacing it.

    Every unknown or ambiguous keyword is reported in one ConfigError. Error lines of the values
    name the keyword (`Stylizer(steps=…): optimize.steps: Input should be greater than or equal to 1`).
    """
    keys = schema_keys(sections)
    by_path = {key.path: key for key in keys}
    errors = ErrorCollector()
    found: list[Override] = []
    for keyword, value in settings.items():
        where = f"{caller}({keyword}=…)"
        with errors.check():
            key = resolve(keyword, keys, where)
            found += _spread(key.path, value, by_path, where)
    errors.raise_if_any()
    return found


def _spread(path: tuple[str, ...], value: Any, by_path: Mapping[tuple[str, ...], Key], where: str) -> list[Override]:
    key = by_path.get(path)
    if key is not None and key.section and isinstance(value, Mapping) and value:
        return [item for name, inner in value.items() for item in _spread((*path, str(name)), inner, by_path, where)]
    return [Override(path, dict(value) if isinstance(value, Mapping) else value, where)]
