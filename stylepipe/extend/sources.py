"""Style sources: where the pictures behind one style target come from.

A source turns its parameters into weighted pictures; the targets stage computes each picture's
statistics and blends them by weight into one target. `image` is one file, `tiled` repeats a
picture n×n first (so a face or a guitar becomes a texture), and `blend` mixes several. Plugins
add more by subclassing StyleSource and decorating it with @register_style_source("name").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..core.target_fns import WeightedImage
from ..io.images import LoadedImage


@dataclass(frozen=True)
class StyleContext:
    """What a source may use: path resolution against the pipeline's folder, and image loading."""

    base_dir: Path
    load: Callable[[Path], LoadedImage]
    sha256: Callable[[Path], str]

    def resolve(self, path: str | Path) -> Path:
        """Paths in pipeline.yaml are relative to the file, not to the working directory."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)


class SourceParams(BaseModel):
    """Base for a style source's parameters; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class StyleSource:
    """Base class of style sources: parameters in, weighted pictures out."""

    name: ClassVar[str] = "source"
    version: ClassVar[int] = 1
    Params: ClassVar[type[SourceParams]] = SourceParams

    def __init__(self, params: SourceParams, context: StyleContext, label: str | None = None) -> None:
        self.params = params
        self.context = context
        self._label = label

    def files(self) -> list[Path]:
        """Every file this source reads: hashed for cache keys and named in errors."""
        return []

    def default_label(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """Short name used in output file names (`{style}`)."""
        return self._label or self.default_label()

    def images(self) -> list[WeightedImage]:
        """The weighted pictures whose statistics make up this style."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the pictures: source name, version, parameters, file contents.

        Where the files live is not in it (see `without_locations`): a moved project, a second
        clone or a cluster node with another mount point finds the same cache entries.
        """
        return {
            "source": self.name,
            "version": self.version,
            "params": without_locations(self.params.model_dump(mode="json")),
            "files": [self.context.sha256(path) for path in self.files()],
        }


def without_locations(params: Any) -> Any:
    """Drop every parameter named `path` or `*_path` at any depth: files count by their bytes."""
    if isinstance(params, dict):
        return {key: without_locations(value) for key, value in params.items()
                if not (key == "path" or key.endswith("_path"))}
    if isinstance(params, list):
        return [without_locations(value) for value in params]
    return params


class ImageParams(SourceParams):
    path: str = Field(description="a style picture")


class ImageSource(StyleSource):
    """One painting, used as it is."""

    name = "image"
    Params = ImageParams
    params: ImageParams

    def files(self) -> list[Path]:
        return [self.context.resolve(self.params.path)]

    def default_label(self) -> str:
        return Path(self.params.path).stem

    def images(self) -> list[WeightedImage]:
        return [WeightedImage(self.context.load(self.files()[0]).tensor, 1.0)]


class TiledParams(SourceParams):
    path: str
    grid: int = Field(2, ge=1, le=16, description="repeat the picture grid×grid before taking its statistics")


class TiledSource(StyleSource):
    """A non-artistic picture repeated n×n so that it reads as a texture (fast.ai's tiling)."""

    name = "tiled"
    version = 2  # tiles after resizing, not before
    Params = TiledParams
    params: TiledParams

    def files(self) -> list[Path]:
        return [self.context.resolve(self.params.path)]

    def default_label(self) -> str:
        return f"{Path(self.params.path).stem}-tiled{self.params.grid}"

    def images(self) -> list[WeightedImage]:
        return [WeightedImage(self.context.load(self.files()[0]).tensor, 1.0, self.params.grid)]


class BlendPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    weight: float = Field(1.0, gt=0)
    grid: int = Field(1, ge=1, le=16)


class BlendParams(SourceParams):
    styles: list[BlendPart] = Field(min_length=2, description="pictures to mix, each with a weight")


class BlendSource(StyleSource):
    """Several styles mixed into one target by weight (weights are normalised to sum to 1)."""

    name = "blend"
    version = 2  # tiles after resizing, not before
    Params = BlendParams
    params: BlendParams

    def files(self) -> list[Path]:
        return [self.context.resolve(part.path) for part in self.params.styles]

    def default_label(self) -> str:
        return "+".join(Path(part.path).stem for part in self.params.styles)

    def images(self) -> list[WeightedImage]:
        total = sum(part.weight for part in self.params.styles)
        return [
            WeightedImage(self.context.load(path).tensor, part.weight / total, part.grid)
            for part, path in zip(self.params.styles, self.files())
        ]


BUILTIN_SOURCES: tuple[type[StyleSource], ...] = (ImageSource, TiledSource, BlendSource)
