"""Example style-source plugin: every picture in a folder, equally weighted, as ONE style.

Why
---
One painting is one sample of a painter's style, with its own palette and subject. Averaging
the statistics of many pictures — "the style of an artist's body of work" — gives a target
that keeps what the pictures share (brushwork, colour habits) and washes out what only one of
them has. The built-in `blend` source does the same for a hand-written list with weights; this
source takes a whole folder, so adding a picture to the folder is all it takes.

How to use it
-------------
Put this file in a folder that your pipeline.yaml lists under ``plugins:`` (paths are relative
to the pipeline file) and name the source in a style entry::

    plugins: [plugins/]
    styles:
      - source: folder
        path: styles/monet/     # relative to the pipeline file; every .jpg/.png/… in it
        grid: 1                 # optional: tile each picture grid×grid first (1 = as is)
        name: monet             # optional: the {style} label; default the folder's name

The pictures are the folder's files (not its subfolders) ending in .jpg, .jpeg, .png, .webp,
.tif, .tiff or .bmp (any case), in name order; hidden files (".DS_Store", macOS "._x.jpg") are
skipped. Each picture's statistics are taken at its own aspect ratio and the blend gives each
the weight 1/n. The cache key covers every picture's bytes, so adding, removing or editing a
picture recomputes the target.

An empty (or missing) folder is a configuration error (exit 2, nothing is run), not a failed
job: the folder is named in the pipeline, so the pipeline is what needs fixing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from stylepipe import (
    IMAGE_SUFFIXES,
    ConfigError,
    SourceParams,
    StyleSource,
    WeightedImage,
    register_style_source,
)


class FolderParams(SourceParams):
    """Parameters of the folder source; unknown keys are errors (`extra="forbid"` is inherited)."""

    path: str = Field(description="a folder of style pictures, relative to the pipeline file")
    grid: int = Field(1, ge=1, le=16, description="repeat each picture grid×grid before taking its statistics")


@register_style_source("folder")
class FolderSource(StyleSource):
    """All pictures of one folder blended with equal weights into a single style target."""

    name = "folder"
    version = 2  # bump when the pictures' treatment changes: it is part of the cache key
    Params = FolderParams

    @property
    def folder(self) -> Path:
        return self.context.resolve(self.params.path)

    def files(self) -> list[Path]:
        """The folder's pictures in name order; stylepipe hashes them into the cache key."""
        folder = self.folder
        if not folder.is_dir():
            raise ConfigError(f"{folder}: style folder not found (source: folder, path: {self.params.path})")
        pictures = sorted(
            path
            for path in folder.iterdir()
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not pictures:
            raise ConfigError(f"{folder}: style folder has no pictures (.jpg, .png, .webp, … any format Pillow reads)")
        return pictures

    def default_label(self) -> str:
        return self.folder.resolve().name or "folder"

    def images(self) -> list[WeightedImage]:
        """Each picture (tiled if asked) with the weight 1/n."""
        paths = self.files()
        share = 1.0 / len(paths)
        return [WeightedImage(self.context.load(path).tensor, share, self.params.grid) for path in paths]
