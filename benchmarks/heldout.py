"""The held-out picture score: what the sweeps and the peer comparison judge pictures by.

stylepipe optimises content relu4_2 and Gram matrices at relu1_1 … relu5_1 on the avg-pooled
normalised VGG19. A lower value of that loss is not a better picture, so outputs are judged on
quantities no loss term touches:

* **style distance** (lower = more stylised): the mean over conv1_2, conv2_2, conv3_2, conv4_2 and
  conv5_2 of the relative Gram error ‖G(x) − G(s)‖_F / ‖G(s)‖_F, on the *max*-pooled network
  (the other pooling of the paper), with the style picture at the outputs' size. No loss reads
  these layers or this pooling.
* **content distance** (lower = more faithful to the photo): the mean over relu3_2 and relu5_2 of
  the relative feature error ‖F(x) − F(c)‖² / ‖F(c)‖², also max-pooled. The content loss reads
  relu4_2 only.
* **speckles per 10,000 pixels** (lower = cleaner): pixels whose luminance differs by more than
  0.25 from the median of their 3×3 neighbourhood *and* from every one of their 8 neighbours by
  more than 0.15, i.e. isolated dots rather than edges or fine lines (an edge pixel always has a
  neighbour on its own side).

No second, non-VGG network could be had offline here (torchvision's and timm's weights are
downloads), so the score stays within VGG19 but away from every layer and pooling the loss uses.
Never imported by stylepipe or its tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from stylepipe.core.geometry import resize, target_size
from stylepipe.core.loss_fns import gram
from stylepipe.extend.networks import build_extractor
from stylepipe.io.images import load_image

STYLE_LAYERS = ("conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
CONTENT_LAYERS = ("relu3_2", "relu5_2")
SPECKLE_MEDIAN = 0.25
SPECKLE_NEIGHBOURS = 0.15


@dataclass(frozen=True)
class Score:
    """One picture's held-out score (see the module docstring)."""

    style: float
    content: float
    speckles: float

    def as_dict(self) -> dict[str, float]:
        return {"style": round(self.style, 4), "content": round(self.content, 4), "speckles": round(self.speckles, 2)}


def speckles_per_10k(image: torch.Tensor) -> float:
    """Isolated dots in a (3, H, W) picture in [0, 1], per 10,000 pixels."""
    luma = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None, None]
    padded = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(padded, 3).view(9, -1)  # 3×3 neighbourhood of every pixel, centre at index 4
    centre = patches[4]
    median = patches.median(dim=0).values
    neighbours = torch.cat([patches[:4], patches[5:]])
    isolated = ((centre - median).abs() > SPECKLE_MEDIAN) & ((neighbours - centre).abs() > SPECKLE_NEIGHBOURS).all(dim=0)
    return float(isolated.sum()) * 10_000 / centre.numel()


class HeldOutScore:
    """Scores outputs made with one style picture at one size."""

    def __init__(self, style: Path, max_side: int, device: str = "cpu") -> None:
        self.max_side = max_side
        self.device = torch.device(device)
        self.extractor = build_extractor("vgg19-gatys", None, "max", self.device)
        picture = self._load(style)
        with torch.no_grad():
            features = self.extractor(picture, STYLE_LAYERS)
        self.style_grams = {layer: gram(features[layer])[0] for layer in STYLE_LAYERS}

    def _load(self, path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
        image = load_image(path).tensor
        size = size or target_size(image.shape[-2], image.shape[-1], self.max_side, None)
        return resize(image, size).unsqueeze(0).to(self.device)

    @torch.no_grad()
    def score(self, output: Path, content: Path) -> Score:
        """The held-out score of one output against its photo and this style."""
        photo = self._load(content)
        picture = self._load(output, tuple(photo.shape[-2:]))
        out = self.extractor(picture, STYLE_LAYERS + CONTENT_LAYERS)
        ref = self.extractor(photo, CONTENT_LAYERS)
        style = sum(float((gram(out[l])[0] - g).norm() / g.norm()) for l, g in self.style_grams.items()) / len(STYLE_LAYERS)
        content = sum(float((out[l] - ref[l]).pow(2).sum() / ref[l].pow(2).sum()) for l in CONTENT_LAYERS) / len(CONTENT_LAYERS)
        return Score(style, content, speckles_per_10k(picture[0].cpu()))

    def mean(self, pairs: Sequence[tuple[Path, Path]]) -> Score:
        """Mean score over (output, content photo) pairs."""
        scores = [self.score(output, content) for output, content in pairs]
        n = len(scores)
        return Score(sum(s.style for s in scores) / n, sum(s.content for s in scores) / n,
                     sum(s.speckles for s in scores) / n)
