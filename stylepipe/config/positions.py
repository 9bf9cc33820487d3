"""YAML positions: a config key's file, line and column (from `yaml.compose` nodes), and pydantic
errors turned into `file:line:col: key: message` with a did-you-mean.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..core.errors import ConfigError
from ..core.suggest import did_you_mean

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Positions of every key and value in the YAML file, to point errors at a line and column."""

    filename: str
    root: yaml.Node | None
    overridden: tuple[tuple[str, str], ...] = ()  # (dotted key, where its value came from: `--set`, a keyword)

    def locate(self, loc: Loc, *, at_key: bool = False) -> str:
        """`file:line:col` of the deepest node on `loc` that exists (the key itself if asked)."""
        dotted = ".".join(str(part) for part in loc)
        for key, where in self.overridden:
            if dotted == key or dotted.startswith(key + "."):
                return where
        node, key_node = self.root, None
        for part in loc:
            child, child_key = _child(node, part)
            if child is None:  # not in the file: an override below `loc` made it (a model-level check)
                below = [where for key, where in self.overridden if key.startswith(dotted + ".") or not dotted]
                if below:
                    return below[0]
                break
            node, key_node = child, child_key
        target = key_node if (at_key and key_node is not None) else node
        if target is None:
            return self.filename
        return f"{self.filename}:{target.start_mark.line + 1}:{target.start_mark.column + 1}"


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if str(key_node.value) == str(part):
                return value_node, key_node
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part], None
    return None, None


def format_loc(loc: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def config_error(source_map: SourceMap, loc: Loc, message: str, *, at_key: bool = False) -> ConfigError:
    """A ConfigError that reads `pipeline.yaml:8:13: styles.0.path: file not found`."""
    return ConfigError(f"{source_map.locate(loc, at_key=at_key)}: {format_loc(loc)}: {message}")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `Model`, `list[Model]` or `Model | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model of the mapping at `loc` inside `model` (list indices skipped), if it is one."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part)) if current is not None else None
        current = _model_in(info.annotation) if info is not None else None
        if current is None:
            return None
    return current


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at `loc` (inside `model`) may hold: what a misspelt key is compared to."""
    current = _model_at(model, loc)
    return list(current.model_fields) if current is not None else []


def _nested_key(model: type[BaseModel], loc: Loc, word: str, depth: int = 2) -> str | None:
    """The full key of a setting written one section too high (`steps` → `optimize.steps`)."""
    current = _model_at(model, loc)
    if current is None or depth == 0:
        return None
    for name, info in current.model_fields.items():
        inner = _model_in(info.annotation)
        if inner is None or typing.get_origin(info.annotation) is list:
            continue
        if word in inner.model_fields:
            return ".".join([*(str(p) for p in loc), name, word])
        deeper = _nested_key(inner, (), word, depth - 1)
        if deeper is not None:
            return ".".join([*(str(p) for p in loc), name, deeper])
    return None


def _hint(err: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    """A did-you-mean for a misspelt key (extra_forbidden) or value (literal_error)."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and model is not None and loc:
        nested = _nested_key(model, loc[:-1], str(loc[-1]))
        if nested is not None:
            return f" (did you mean `{nested}`?)"
        return did_you_mean(str(loc[-1]), _keys_at(model, loc[:-1]))
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        return did_you_mean(err["input"], re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
    return ""


def validation_error(source_map: SourceMap, exc: ValidationError, prefix: Loc = (),
                     model: type[BaseModel] | None = None) -> ConfigError:
    """Turn pydantic's errors into one line each, pointing at the YAML, with did-you-mean hints."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ") + _hint(err, model)
        lines.append(str(config_error(source_map, loc, message, at_key=err["type"] == "extra_forbidden")))
    return ConfigError("\n".join(lines))
