"""Example loss plugin: match the per-channel mean and standard deviation of VGG features.

Why
---
The Gram loss compares channel *correlations*, ``F Fᵀ / (C·H·W)``, which mixes two things: the
channels' mean levels and how they co-vary (Gram = covariance + mean·meanᵀ). It can therefore
trade one for the other, and in practice flat regions of a result often end up with the right
textures but washed-out or shifted colour and contrast. Matching each channel's mean and
standard deviation directly — the two statistics AdaIN swaps (Huang & Belongie 2017, "Arbitrary
Style Transfer in Real-time with Adaptive Instance Normalization"), and the "BN statistics"
style loss of Li et al. 2017 ("Demystifying Neural Style Transfer") — pins those levels down.
It is cheap (two C-vectors per layer instead of a C×C matrix) and works well as a companion to
the Gram loss rather than as a replacement for it.

How to use it
-------------
Put this file in a folder that your pipeline.yaml lists under ``plugins:`` (paths are relative
to the pipeline file) and add the term under ``losses.extra``::

    plugins: [plugins/]
    losses:
      extra:
        - name: mean_std
          weight: 100                 # optional, default 100
          layers: [relu1_1, relu2_1]  # optional, default relu1_1 … relu4_1

Choosing the weight: with the default weight of 100 this term starts out 8–28× larger than the
Gram term of a style weight of 3e4 (on the normalised Gram loss of stylepipe.losses), so 2.4–8.4×
larger than that of the default style weight 1e5 (the ratio at the start scales with the style
weight), when the optimisation starts from the content photo, and at convergence it is about
as large as the content term: a strong pull. Measured on the bundled samples (chelsea × starry
night / the scream, 96 px, 60 L-BFGS steps), weight 100 raised the final content loss 2.5–4×
and left the Gram loss 9–36× lower than without the term (a channel's mean is part of its Gram
matrix, so the two help each other); weight 10 raised the content loss 1.5–2×. Use 10 for a
gentler effect, 0 to switch it off without deleting the entry.

How it plugs in
---------------
``side = "style"`` tells stylepipe that the targets come from the style picture(s):
``style_targets`` runs once per style on a batch of one, its tensors are blended by weight
across the pictures of a source (a style made of several pictures gets the weighted average of
their means and of their stds) and cached on disk (so they must be a plain ``str → Tensor``
mapping), and ``loss`` scores every image of a batch against them, one value per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from pydantic import Field, field_validator

from stylepipe import Features, LossTerm, TensorDict, TermParams, layer_list, per_image_mse, register_loss

#: Added to the variance before the square root, as AdaIN does: keeps the gradient of a dead
#: (all-zero) ReLU channel finite.
EPS = 1e-5


def channel_mean_std(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and std over the spatial positions: (B, C, H, W) → 2 × (B, C)."""
    flat = features.flatten(2)
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=False) + EPS).sqrt()
    return mean, std


class MeanStdParams(TermParams):
    """Parameters of the mean_std term; unknown keys are errors (`extra="forbid"` is inherited)."""

    weight: float = Field(1e2, ge=0, description="multiplier of this term in the total loss")
    layers: list[str] = Field(
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1"],
        description="VGG19 taps whose channel statistics are matched",
    )

    @field_validator("layers")
    @classmethod
    def _known_layers(cls, value: list[str]) -> list[str]:
        return layer_list(value)


@register_loss("mean_std")
class MeanStdLoss(LossTerm):
    """Match each channel's mean and standard deviation at a few layers (AdaIN's statistics)."""

    name = "mean_std"
    version = 1  # bump when the targets' definition changes: it is part of the cache key
    side = "style"
    Params = MeanStdParams

    @property
    def layers(self) -> Sequence[str]:
        return self.params.layers

    def style_targets(self, features: Features) -> TensorDict:
        """`{"relu1_1.mean": (C,), "relu1_1.std": (C,), …}` of a style picture (batch of 1)."""
        targets: TensorDict = {}
        for layer in self.layers:
            mean, std = channel_mean_std(features[layer].detach())
            targets[f"{layer}.mean"] = mean[0]
            targets[f"{layer}.std"] = std[0]
        return targets

    def loss(self, image: torch.Tensor, features: Features, content: Features, style: Features) -> torch.Tensor:
        """Per image (B,): mean over layers of MSE(mean) + MSE(std) against the style's targets."""
        per_layer = []
        for layer in self.layers:
            mean, std = channel_mean_std(features[layer])
            per_layer.append(per_image_mse(mean, style[f"{layer}.mean"]) + per_image_mse(std, style[f"{layer}.std"]))
        return torch.stack(per_layer).mean(dim=0)

    # Tiling (stylepipe.losses.TileSafeTerm): with these methods the term can be used with
    # tiled evaluation (print-size pictures). Mean and std come from per-channel sums of x and x²,
    # which add up over tiles; var = E[x²] − E[x]² is the same variance as `channel_mean_std`'s.
    def tile_statistics(self, features: Features, content: Features) -> TensorDict:
        """Σx and Σx² over the tile's positions, per image and channel: `{"relu1_1.sum": (B, C), …}`."""
        stats: TensorDict = {}
        for layer in self.layers:
            flat = features[layer].flatten(2)
            stats[f"{layer}.sum"] = flat.sum(dim=2)
            stats[f"{layer}.sumsq"] = flat.pow(2).sum(dim=2)
        return stats

    def loss_from_statistics(self, stats: Features, positions: Mapping[str, int], style: Features) -> torch.Tensor:
        """`loss` from the whole picture's sums: the same mean, std (EPS included) and MSEs."""
        per_layer = []
        for layer in self.layers:
            mean, std = self._moments(stats, positions, layer)
            per_layer.append(per_image_mse(mean, style[f"{layer}.mean"]) + per_image_mse(std, style[f"{layer}.std"]))
        return torch.stack(per_layer).mean(dim=0)

    def _moments(self, stats: Features, positions: Mapping[str, int], layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        mean = stats[f"{layer}.sum"] / positions[layer]
        var = (stats[f"{layer}.sumsq"] / positions[layer] - mean.pow(2)).clamp_min(0.0)  # ≥ 0, as rounding may not be
        return mean, (var + EPS).sqrt()

    def targets_from_statistics(self, stats: Features, positions: Mapping[str, int]) -> TensorDict:
        """`style_targets` from a style picture's sums (batch of one), for print-size styles."""
        targets: TensorDict = {}
        for layer in self.layers:
            mean, std = self._moments(stats, positions, layer)
            targets[f"{layer}.mean"], targets[f"{layer}.std"] = mean[0], std[0]
        return targets
