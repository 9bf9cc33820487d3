"""Loading: a pipeline file or dict, with overrides, validated into a `LoadedPipeline` that remembers
where each key was written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..core.errors import ConfigError
from .overrides import Override, apply_override, command_line_paths, parse_override
from .positions import Loc, SourceMap, config_error, format_loc, validation_error
from .schema import PipelineConfig


@dataclass(frozen=True)
class LoadedPipeline:
    """A validated config plus where it came from: paths in it are relative to `base_dir`."""

    config: PipelineConfig
    path: Path
    source_map: SourceMap
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def error(self, loc: Loc, message: str) -> ConfigError:
        return config_error(self.source_map, loc, message)


class SchemaError(ConfigError):
    """The file breaks the schema. `partial` is the file with its broken sections dropped (when
    that validates), so that deeper checks (files, style entries) can report in the same round."""

    def __init__(self, message: str, partial: LoadedPipeline | None) -> None:
        super().__init__(message)
        self.partial = partial



def load_pipeline(path: Path | str, overrides: Sequence[str | Override] = ()) -> LoadedPipeline:
    """Read, override and validate a pipeline file; every problem is a ConfigError (exit 2)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file ({exc})") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the pipeline must be a YAML mapping of settings, not a {type(raw).__name__}")
    return _validated(raw, path, str(path), root, overrides)


def pipeline_from_dict(data: Mapping[str, Any], overrides: Sequence[str | Override] = (), *,
                       name: str = "<dict>") -> LoadedPipeline:
    """A pipeline given as a Python mapping (the API's `stylepipe.run({...})`): the same schema and
    checks as a file, with paths relative to the working directory; errors name `name`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: the pipeline must be a mapping of settings, not a {type(data).__name__}")
    return _validated(copy.deepcopy(dict(data)), Path.cwd() / name, name, None, overrides)


def _validated(raw: dict[str, Any], path: Path, filename: str, root: yaml.Node | None,
               overrides: Sequence[str | Override]) -> LoadedPipeline:
    """Apply the overrides (paths in them relative to the working directory), then the schema."""
    overridden = []
    for override in overrides:
        if isinstance(override, str):
            parts, value = parse_override(override)
            override = Override(tuple(parts), value)
        apply_override(raw, override.parts, command_line_paths(override.parts, override.value, Path.cwd()), override.label)
        overridden.append((format_loc(override.parts), override.label))
    source_map = SourceMap(filename, root, tuple(overridden))
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        partial = _without_broken_sections(raw, exc)
        loaded = LoadedPipeline(partial, path.resolve(), source_map, raw) if partial is not None else None
        raise SchemaError(str(validation_error(source_map, exc, model=PipelineConfig)), loaded) from None
    return LoadedPipeline(config, path.resolve(), source_map, raw)


def _without_broken_sections(raw: Mapping[str, Any], exc: ValidationError) -> PipelineConfig | None:
    """The config with every top-level section that has an error left at its default, if that
    validates: what the deeper checks can still look at in the same round."""
    broken = {err["loc"][0] for err in exc.errors() if err["loc"]}
    if any(not err["loc"] for err in exc.errors()):
        return None  # a cross-section rule failed: no section alone is to blame
    try:
        return PipelineConfig.model_validate({key: value for key, value in raw.items() if key not in broken})
    except ValidationError:
        return None


def validate_model(model: type[BaseModel], data: Mapping[str, Any], source_map: SourceMap, loc: Loc) -> BaseModel:
    """Validate a plugin's parameters with the same error format as the rest of the file."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise validation_error(source_map, exc, prefix=loc, model=model) from None
