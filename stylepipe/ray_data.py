"""A Ray Data stage: style the pictures of a dataset inside someone else's pipeline.

    ds = ray.data.read_images("photos/", include_paths=True)
    styled = ds.map_batches(StylizeBatch, fn_constructor_kwargs={"style": "painting.jpg", "max_side": 512},
                            batch_size=8, concurrency=2, num_gpus=1)

Ray makes `concurrency` long-lived actors of the class; each one loads the network and the
style's targets once, in `__init__` (from the cache when `cache_dir` is given and has them, or from
a `Style` computed by the driver and passed in: then no actor reads the painting at all), and
then styles batch after batch through `Stylizer.stylize`, batched on its device. This module
imports Ray only for its types: it is the caller who has Ray (`pip install 'stylepipe[ray-data]'`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .api import StyleLike, Stylizer
from .extend.pictures import to_uint8

__all__ = ["StylizeBatch"]


class StylizeBatch:
    """A callable class for `Dataset.map_batches`: rows in, the same rows with the picture styled out.

    Rows hold pictures in `column` ((H, W, 3) uint8 arrays, as `ray.data.read_images` gives them;
    (H, W) and (H, W, 4) too) or, when the batch has no such column, file paths in `path_column`.
    The styled pictures replace `column` as (h, w, 3) uint8 arrays at the working size; every other
    column passes through. With `stats=True` each row also gets `targets_computed` (this actor's
    count: 0 or 1 for one style), `worker` (the actor's process id) and `batch` (its call number).

    `style` is anything `Stylizer.style` takes (a path, a style entry dict, a `Style` computed by
    the driver); `network`, `device`, `cache_dir` and the keyword settings are `Stylizer`'s.

    >>> import numpy as np
    >>> from PIL import Image
    >>> from stylepipe.ray_data import StylizeBatch
    >>> stage = StylizeBatch(style=Image.radial_gradient("L").convert("RGB"), max_side=32, steps=2, stats=True)
    >>> rows = stage({"image": np.zeros((2, 40, 60, 3), np.uint8), "id": np.array([7, 8])})
    >>> rows["image"].shape, rows["image"].dtype, rows["id"].tolist(), rows["targets_computed"].tolist()
    ((2, 21, 32, 3), dtype('uint8'), [7, 8], [1, 1])
    """

    def __init__(self, style: StyleLike, *, column: str = "image", path_column: str = "path", network: str = "vgg19-gatys",
                 device: str = "auto", cache_dir: str | os.PathLike[str] | None = None, stats: bool = False,
                 **settings: Any) -> None:
        self.stylizer = Stylizer(network, device, cache_dir, **settings)
        self.style = self.stylizer.style(style)
        self.column = column
        self.path_column = path_column
        self.stats = stats
        self.batches = 0

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Style one batch of rows (Ray's "numpy" batch format: column name → array)."""
        self.batches += 1
        if self.column in batch:
            pictures: list[Any] = list(batch[self.column])
        elif self.path_column in batch:
            pictures = [str(path) for path in batch[self.path_column]]
        else:
            raise KeyError(f"StylizeBatch: the batch has neither {self.column!r} (pictures) nor {self.path_column!r} (paths); "
                           f"it has {sorted(batch)}: set column= or path_column=")
        styled = [to_uint8(image) for image in self.stylizer.stylize(pictures, self.style, as_tensor=True)]
        out = dict(batch)
        out[self.column] = _column(styled)
        if self.stats:
            rows = len(styled)
            out["targets_computed"] = np.full(rows, self.stylizer.targets_computed)
            out["worker"] = np.full(rows, os.getpid())
            out["batch"] = np.full(rows, self.batches)
        return out


def _column(arrays: list[np.ndarray]) -> np.ndarray:
    """One (B, h, w, 3) array when the pictures share a size, else an object array of them
    (Ray stores that as a variable-shaped tensor column)."""
    if len({array.shape for array in arrays}) <= 1:
        return np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)
    column = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        column[i] = array
    return column
