"""The pipeline schema: what pipeline.yaml may say (loading it, with errors that name the file, line,
column and key, is `config.load`).

Every section is a pydantic v2 model with `extra="forbid"`, so a typo is an error rather than a
silently ignored setting. Style sources and extra loss terms come from plugins, so their own
parameters are validated against the plugin's model when the plan is built (same error format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ..core.levels import RefineContent
from ..extend.networks import NETWORKS
from ..extend.terms import ContentParams, StyleParams, TVParams, layer_list
from ..io.images import DEFAULT_MAX_INPUT_PIXELS, SIXTEEN_BIT_FORMATS
from ..targets.cache import DEFAULT_SIZE_LIMIT_MB
from .defaults import NOISE_AMPLITUDE, REFINE_ANCHOR, REFINE_ANCHOR_PIXELS, REFINE_STEPS, STYLE_DETAIL


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SizeConfig(Strict):
    max_side: int | None = Field(256, ge=32, description="longest side of the output, in pixels (VGG19's five pools need 32)")
    max_pixels: int | None = Field(None, ge=256, description="cap on width × height of the output")
    style_scale: float = Field(1.0, gt=0, le=8, description="style pictures' size relative to max_side / max_pixels")
    style_max_side: int | None = Field(None, ge=32, description="absolute longest side of style pictures (overrides style_scale)")
    style_detail: float = Field(STYLE_DETAIL, ge=0.5, le=1,
                                description="share of a style file's own resolution whose detail the levels above "
                                            "the composition take as style: a level that takes the picture larger than "
                                            "this share of its file size sees it resampled through that size, so the "
                                            "file's pixel noise is not painted as brushwork (docs/sizes.md); 1: every pixel")
    stroke: float = Field(1.0, ge=0.125, le=8, description="stroke size relative to the picture: the composition is painted "
                                                           "at 256/stroke px and refined up to the output size")
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
    pattern: str | None = Field(None, description="fields: {content} {style} {mode} {ext} {index} {input} {layers} {stem_hash}")
    format: Literal["jpg", "png", "webp", "tiff"] = "jpg"
    quality: int = Field(92, ge=1, le=100)
    bit_depth: Literal[8, 16] = Field(8, description="bits per channel; 16 (png, tiff) keeps a print's gradients smooth")
    dpi: int | None = Field(None, ge=1, le=100_000, description="print resolution written into the file (default: the content photo's)")
    html: bool = Field(True, description="write report.html, a gallery page, beside report.json")
    keep_metadata: bool = Field(False, description="copy each content photo's EXIF to its output (orientation already applied)")
    keep_painting: bool = Field(True, description="keep each painted picture (16-bit PNG in .stylepipe/paintings) so that "
                                "changing only format, quality, bit depth, dpi, metadata or names re-encodes instead of repainting")

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


class RefineConfig(Strict):
    factor: float = Field(2.0, gt=1, le=4, description="size ratio between levels above the composition")
    steps: list[int] = Field(default_factory=lambda: list(REFINE_STEPS),
                             description="steps of the 1st, 2nd, … level above the composition; the last repeats")
    content: RefineContent = Field(
        "composition", description="what the content term holds a level above the composition to: "
                                   "the picture painted so far, or the photo at that level's size")
    anchor: float = Field(REFINE_ANCHOR, ge=0, le=100,
                          description="weight (× the style weight) of a level's hold on the composition's look: "
                                      "scaled back to the composition's size, it keeps the composition's Gram "
                                      "statistics; 0: no hold")
    anchor_pixels: float = Field(REFINE_ANCHOR_PIXELS, ge=0, le=1000,
                                 description="weight (× the style weight) of a level's hold on the composition's "
                                             "pixels: scaled back to the composition's size, it stays the composition, "
                                             "so a level adds only detail; 0: no hold")

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 1:
            raise ValueError("give at least one positive step count")
        return value


class OptimizeConfig(Strict):
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int | None = Field(None, ge=1, le=100_000, description="default: 50 for transfer, 350 for palette and reconstruct")
    lr: float | None = Field(None, gt=0, description="default 1.0 for lbfgs, 0.02 for adam")
    init: str = Field("content", description="content, noise, or a picture file")
    noise: float = Field(NOISE_AMPLITUDE, gt=0, le=1, description="amplitude of a noise start around mid-grey (1: uniform)")
    seed: int = 0
    batch_size: int | Literal["auto"] = Field("auto", description="images optimised together (same style and size)")
    pyramid: PyramidConfig | None = Field(None, description="default: single scale for transfer, 3 levels for palette and reconstruct")
    refine: RefineConfig | Literal["off"] = Field(default_factory=RefineConfig,
                                                  description="levels above the composition; off: one level at the output size")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA and on CPUs with bf16 units (AMX, AVX512-BF16); fp32 elsewhere (core.device.choose_precision)")
    compile: bool = Field(False, description="torch.compile the network (CUDA; pays off on long runs)")

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("batch_size must be 'auto' or at least 1")
        return value


class NetworkConfig(Strict):
    name: Literal[NETWORKS.names()] = "vgg19-gatys"  # type: ignore[valid-type]
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
    size_limit_mb: int = Field(DEFAULT_SIZE_LIMIT_MB, ge=1)


class LimitsConfig(Strict):
    max_input_pixels: int = Field(DEFAULT_MAX_INPUT_PIXELS, ge=1, description="decompression-bomb guard for every input")
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
    _shorthand: bool = PrivateAttr(False)

    @model_validator(mode="before")
    @classmethod
    def _grid_means_tiled(cls, data: Any) -> Any:
        """`grid` on an `image` style (written or implied) makes it `tiled`: one rule, no surprise."""
        if isinstance(data, dict) and "grid" in data and data.get("source", "image") == "image":
            return {**data, "source": "tiled"}
        return data

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @classmethod
    def shorthand(cls, path: str) -> StyleEntry:
        """A bare path under `styles:`: an `image` entry that may be a folder or glob (one style per picture)."""
        entry = cls(source="image", path=path)
        entry._shorthand = True
        return entry

    @property
    def is_shorthand(self) -> bool:
        """Written as a bare path, the only form in which a folder or glob expands to several styles."""
        return self._shorthand


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
            return [StyleEntry.shorthand(item) if isinstance(item, str) else item for item in value]
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


# --- loading --------------------------------------------------------------------------------------


