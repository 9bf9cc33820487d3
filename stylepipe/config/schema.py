"""The pipeline schema, and YAML loading whose errors name the file, line, column and key.

Every section is a pydantic v2 model with `extra="forbid"`, so a typo is an error rather than a
silently ignored setting. Style sources and extra loss terms come from plugins, so their own
parameters are validated against the plugin's model when the plan is built (same error format).
"""

from __future__ import annotations

import contextlib
import copy
import re
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.suggest import did_you_mean
from ..extend.terms import ContentParams, StyleParams, TVParams
from ..io.images import SIXTEEN_BIT_FORMATS
from ..io.weights import NETWORKS

Loc = tuple[str | int, ...]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SizeConfig(Strict):
    max_side: int | None = Field(256, ge=32, description="longest side of the output, in pixels (VGG19's five pools need 32)")
    max_pixels: int | None = Field(None, ge=256, description="cap on width × height of the output")
    style_scale: float = Field(1.0, gt=0, le=8, description="style pictures' size relative to max_side / max_pixels")
    style_max_side: int | None = Field(None, ge=32, description="absolute longest side of style pictures (overrides style_scale)")
    tile: Literal["auto", "off"] | int = Field(
        "auto", description="auto: run the network on tiles only when the whole picture would not fit in memory; "
                            "off: never; a number: tiles of that side (px), for print sizes on small machines")

    @field_validator("tile", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare `off` as false (and `on` as true): they mean "off" and "auto" here."""
        if isinstance(value, bool):
            return "auto" if value else "off"
        return value

    @field_validator("tile")
    @classmethod
    def _tile_side(cls, value: Literal["auto", "off"] | int) -> Literal["auto", "off"] | int:
        if isinstance(value, int) and value < 64:
            raise ValueError("a tile needs at least 64 px a side (use auto, off, or 64 and more)")
        return value

    @model_validator(mode="after")
    def _some_size(self) -> SizeConfig:
        if self.max_side is None and self.max_pixels is None:
            raise ValueError("set max_side or max_pixels: full-resolution optimisation is rarely intended")
        return self


#: Output names when `output.pattern` is not set: per mode, since a reconstruction sweep makes
#: one picture per layer of one input.
DEFAULT_PATTERN = "{content}__{style}.{ext}"
RECONSTRUCT_PATTERN = "{input}__{mode}__{layers}.{ext}"
_FORMAT_ALIASES = {"jpeg": "jpg", "tif": "tiff"}


class OutputConfig(Strict):
    dir: str = "outputs"
    pattern: str | None = Field(None, description="fields: {content} {style} {mode} {ext} {index} {input} {layers}")
    format: Literal["jpg", "png", "webp", "tiff"] = "jpg"
    quality: int = Field(92, ge=1, le=100)
    bit_depth: Literal[8, 16] = Field(8, description="bits per channel; 16 (png, tiff) keeps a print's gradients smooth")
    dpi: int | None = Field(None, ge=1, le=100_000, description="print resolution written into the file (default: the content photo's)")
    html: bool = Field(True, description="write report.html, a gallery page, beside report.json")
    keep_metadata: bool = Field(False, description="copy each content photo's EXIF to its output (orientation already applied)")

    @field_validator("pattern")
    @classmethod
    def _pattern_stays_inside(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith(("/", "\\", "~")) or ".." in Path(value).parts):
            raise ValueError("the pattern must be a relative path inside output.dir (no '..', no leading '/')")
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format_alias(cls, value: Any) -> Any:
        """`jpeg` and `JPG` mean `jpg`: users write the format as their files are named."""
        if isinstance(value, str):
            value = value.strip().lower()
            return _FORMAT_ALIASES.get(value, value)
        return value

    @field_validator("bit_depth")
    @classmethod
    def _depth_fits_format(cls, value: int, info: ValidationInfo) -> int:
        """jpg and webp hold 8 bits per channel: a 16-bit request there would be quietly lost."""
        fmt = info.data.get("format")  # absent when the format itself is wrong: that error is enough
        if value == 16 and fmt is not None and fmt not in SIXTEEN_BIT_FORMATS:
            raise ValueError(f"{fmt} holds 8 bits per channel; 16-bit output needs format "
                             f"{' or '.join(SIXTEEN_BIT_FORMATS)}")
        return value

    @field_validator("keep_metadata")
    @classmethod
    def _metadata_fits_format(cls, value: bool, info: ValidationInfo) -> bool:
        """EXIF is not written into TIFF: refusing says so, instead of dropping it unasked."""
        if value and info.data.get("format") == "tiff":
            raise ValueError("EXIF is not copied into tiff outputs; use png (16-bit too), jpg or webp to keep it")
        return value


class PyramidConfig(Strict):
    levels: int = Field(1, ge=1, le=6, description="1: single scale; 3: three sizes, coarse to fine")
    factor: float = Field(2.0, gt=1, le=4, description="size ratio between levels")
    steps: list[int] | None = Field(None, description="steps per level, coarse → fine (default: 4:2:1 split of optimize.steps)")

    @model_validator(mode="after")
    def _steps_per_level(self) -> PyramidConfig:
        if self.steps is not None and (len(self.steps) != self.levels or min(self.steps) < 1):
            raise ValueError(f"give {self.levels} positive step counts, one per level")
        return self


class OptimizeConfig(Strict):
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int | None = Field(None, ge=1, le=100_000, description="default: 50 for transfer, 350 for palette and reconstruct")
    lr: float | None = Field(None, gt=0, description="default 1.0 for lbfgs, 0.02 for adam")
    init: str = Field("content", description="content, noise, or a picture file")
    noise: float = Field(0.3, gt=0, le=1, description="amplitude of a noise start around mid-grey (1: uniform)")
    seed: int = 0
    batch_size: int | Literal["auto"] = Field("auto", description="images optimised together (same style and size)")
    pyramid: PyramidConfig | None = Field(None, description="default: single scale for transfer, 3 levels for palette and reconstruct")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA, fp32 elsewhere")
    compile: bool = Field(False, description="torch.compile the network (CUDA; pays off on long runs)")

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be 'auto' or at least 1")
        return value


class NetworkConfig(Strict):
    name: Literal[tuple(NETWORKS)] = "vgg19-gatys"  # type: ignore[valid-type]
    weights: str | None = Field(None, description="a local weights file instead of the default source")
    pooling: Literal["avg", "max"] = "avg"
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not (value.startswith("cuda:") and value[5:].isdigit()):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value


class ExtraLoss(BaseModel):
    """A plugin loss term: its `name`, and its own parameters (weight included)."""

    model_config = ConfigDict(extra="allow")
    name: str


class LossesConfig(Strict):
    content: ContentParams = Field(default_factory=ContentParams)
    style: StyleParams = Field(default_factory=StyleParams)
    tv: TVParams = Field(default_factory=TVParams)
    extra: list[ExtraLoss] = Field(default_factory=list)


class PostprocessConfig(Strict):
    preserve_colors: Literal["ycbcr", "lab"] | None = None


class CacheConfig(Strict):
    enabled: bool = True
    dir: str = "cache"
    size_limit_mb: int = Field(2048, ge=1)


class LimitsConfig(Strict):
    max_input_pixels: int = Field(178_956_970, ge=1, description="decompression-bomb guard for every input")
    max_memory_mb: int | None = Field(None, ge=256, description="memory one batch may use (RAM on the CPU, device "
                                                             "memory on a GPU); default: what is free; size.tile: auto keeps within it")


class RayConfig(Strict):
    """Where and how the `ray` executor runs (ignored by `local`)."""

    address: str | None = Field(None, description="None: start a local Ray; 'auto': the running cluster; 'ray://host:10001'")
    num_workers: int | None = Field(None, ge=1, description="long-lived worker actors (default: one per GPU, else per CPU)")
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0, description="claimed only when the cluster has GPUs")
    max_retries: int = Field(2, ge=0, description="times a job is retried after its worker died")


class StyleEntry(BaseModel):
    """A style: `source` names a registered style source; the other keys are its parameters."""

    model_config = ConfigDict(extra="allow")
    source: str = "image"
    name: str | None = Field(None, description="label used for {style} in output names")

    @model_validator(mode="before")
    @classmethod
    def _grid_means_tiled(cls, data: Any) -> Any:
        """`grid` on an `image` style (written or implied) makes it `tiled`: one rule, no surprise."""
        if isinstance(data, dict) and "grid" in data and data.get("source", "image") == "image":
            return {**data, "source": "tiled"}
        return data

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


#: The paper's Figure 1: content from each of these layers alone, style from growing prefixes.
SWEEP_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


class ReconstructConfig(Strict):
    """What `mode: reconstruct` rebuilds from noise, one picture per layer (or layer prefix)."""

    side: Literal["content", "style", "both"] = Field("content", description="content photos, style pictures, or both")
    layers: list[str] = Field(default_factory=lambda: list(SWEEP_LAYERS),
                              description="content: one picture per layer; style: one per prefix (l1, l1+l2, …)")

    @field_validator("layers")
    @classmethod
    def _known_layers(cls, value: list[str]) -> list[str]:
        from ..core.network import layer_list

        return layer_list(value)


class PipelineConfig(Strict):
    version: Literal[1] = 1
    mode: Literal["transfer", "palette", "reconstruct"] = "transfer"
    reconstruct: ReconstructConfig = Field(default_factory=ReconstructConfig, description="what mode: reconstruct rebuilds")
    content: list[str] = Field(default_factory=list, description="files, folders or globs")
    styles: list[StyleEntry] = Field(default_factory=list)
    size: SizeConfig = Field(default_factory=SizeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    losses: LossesConfig = Field(default_factory=LossesConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    plugins: list[str] = Field(default_factory=list, description="folders of plugin .py files")
    override_plugins: bool = False
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("content", "plugins", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("styles", mode="before")
    @classmethod
    def _style_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"source": "image", "path": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("reconstruct", mode="before")
    @classmethod
    def _reconstruct_shorthand(cls, value: Any) -> Any:
        return {"side": value} if isinstance(value, str) else value

    @property
    def uses_content(self) -> bool:
        """Whether this mode reads the content photos."""
        return self.mode == "transfer" or (self.mode == "reconstruct" and self.reconstruct.side != "style")

    @property
    def uses_styles(self) -> bool:
        """Whether this mode reads the style pictures."""
        return self.mode != "reconstruct" or self.reconstruct.side != "content"

    @model_validator(mode="after")
    def _inputs_for_mode(self) -> PipelineConfig:
        needs_content, needs_styles = self.uses_content, self.uses_styles
        if needs_content and not self.content:
            raise ValueError(f"mode {self.mode} needs `content:` (files, folders or globs)")
        if needs_styles and not self.styles:
            raise ValueError(f"mode {self.mode} needs `styles:`")
        return self


# --- YAML positions ------------------------------------------------------------------------------


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
            if child is None:
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


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at `loc` (inside `model`) may hold: what a misspelt key is compared to."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part)) if current is not None else None
        current = _model_in(info.annotation) if info is not None else None
        if current is None:
            return []
    return list(current.model_fields) if current is not None else []


def _hint(err: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    """A did-you-mean for a misspelt key (extra_forbidden) or value (literal_error)."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and model is not None and loc:
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


_POSITION = re.compile(r"^[^\n]*?:(\d+):(\d+): ")


def _position(line: str) -> tuple[int, int, int]:
    """Sort key of an error line: `--set` ones first, then by file line and column, then the rest."""
    if line.startswith("--set"):
        return (0, 0, 0)
    match = _POSITION.match(line)
    return (1, int(match[1]), int(match[2])) if match else (2, 0, 0)


class ErrorCollector:
    """Gathers ConfigErrors so that one `validate` reports every mistake of a file at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, exc: ConfigError) -> None:
        for line in str(exc).splitlines():
            if line not in self.lines:
                self.lines.append(line)

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Run a check; its ConfigError is recorded and the caller goes on with the next one."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def raise_if_any(self) -> None:
        """One ConfigError with every recorded line, in file order."""
        if self.lines:
            raise ConfigError("\n".join(sorted(self.lines, key=_position)))


class SchemaError(ConfigError):
    """The file breaks the schema. `partial` is the file with its broken sections dropped (when
    that validates), so that deeper checks (files, style entries) can report in the same round."""

    def __init__(self, message: str, partial: LoadedPipeline | None) -> None:
        super().__init__(message)
        self.partial = partial


# --- loading --------------------------------------------------------------------------------------


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


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`--set optimize.steps=50` → (["optimize", "steps"], 50); values are YAML, and a value
    that is not valid YAML (`{mode}/{content}.{ext}`) is taken as the string it is."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optimize.steps=50")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


#: Keys whose values are paths (`*` is any list index or key). Paths in the file are relative to
#: the file; paths given on the command line (`--set`, like `-o`) to the working directory.
PATH_KEYS = ("content", "content.*", "plugins", "plugins.*", "styles.*", "styles.*.path", "styles.*.styles.*.path",
             "output.dir", "cache.dir", "network.weights", "optimize.init")
_NOT_PATHS = {"optimize.init": {"content", "noise"}}
_ONE_OR_MANY = ("content", "styles", "plugins")  # a string stands for a list of one


def command_line_paths(parts: Sequence[str | int], value: Any, cwd: Path) -> Any:
    """Path values of a `--set` made absolute against the working directory (one rule for the
    whole command line); other values, and paths already absolute, are returned unchanged."""
    if isinstance(value, dict):
        return {k: command_line_paths([*parts, k], v, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [command_line_paths([*parts, i], v, cwd) for i, v in enumerate(value)]
    key = [str(part) for part in parts]
    is_path = any(_matches(key, pattern.split(".")) for pattern in PATH_KEYS)
    if not isinstance(value, str) or not is_path or value in _NOT_PATHS.get(".".join(key), ()):
        return value
    path = Path(value).expanduser()
    return value if path.is_absolute() else str(cwd / path)


def _matches(key: Sequence[str], pattern: Sequence[str]) -> bool:
    return len(key) == len(pattern) and all(p in ("*", k) for k, p in zip(key, pattern))


@dataclass(frozen=True)
class Override:
    """A value set from outside the file: `--set key=value` on the command line, or a keyword
    setting of the Python API (`stylepipe.run(path, steps=3)`); `label` is what error lines
    name as its origin."""

    parts: tuple[str | int, ...]
    value: Any
    label: str = "--set"


def apply_override(raw: dict[str, Any], parts: Sequence[str | int], value: Any, label: str = "--set") -> None:
    """Set a dotted key in the raw YAML mapping, creating mappings on the way; a shorthand style
    entry (a bare path) grows into `{path: …}` when a key is set inside it."""
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else (
            node.get(part) if isinstance(node, dict) else None)
        if isinstance(nxt, str) and i == 0 and part in _ONE_OR_MANY:
            nxt = node[part] = [nxt]
        if isinstance(nxt, str) and i == 1 and parts[0] == "styles":
            nxt = node[part] = {"path": nxt}
        if nxt is None:
            if isinstance(node, list):
                raise ConfigError(f"{label} {format_loc(parts)}: index {part} is past the end of the list")
            nxt = node[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise ConfigError(f"{label} {format_loc(parts)}: {format_loc(parts[: i + 1])} is not a mapping")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError(f"{label} {format_loc(parts)}: no such list item")
    if not isinstance(node, (dict, list)):
        raise ConfigError(f"{label} {format_loc(parts)}: {format_loc(parts[:-1])} is not a mapping")
    cast(Any, node)[last] = value  # into a list only with an int index: checked above


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
