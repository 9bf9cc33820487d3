"""A photo's transparency, read apart from its colours so that an output can carry it again.

The painting is made from the photo composited onto white (`FLATTEN_COLOUR`: what a transparent
area shows in most viewers); the alpha channel read here is then applied to the painted RGB in
formats that hold one (`ALPHA_FORMATS`), and a jpg output stays composited onto white.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import open_regular
from .images import upright

#: Output formats with an alpha channel; the others (jpg) show the photo flattened onto FLATTEN_COLOUR.
ALPHA_FORMATS = frozenset({"png", "webp", "tiff"})
FLATTEN_COLOUR = "white"
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})


def read_alpha(path: Path) -> torch.Tensor | None:
    """The photo's alpha (1, H, W) in [0, 1], upright like its pixels; None when it has none or is opaque."""
    with open_regular(Path(path)) as handle, Image.open(handle) as img:
        if img.mode not in _ALPHA_MODES and "transparency" not in img.info:
            return None
        alpha = np.asarray(upright(img).convert("RGBA").getchannel("A"), dtype=np.float32) / np.float32(255.0)
    if alpha.min(initial=1.0) >= 1.0:
        return None  # an alpha channel that is opaque everywhere: nothing to keep, nothing to note
    return torch.from_numpy(np.ascontiguousarray(alpha))[None]
