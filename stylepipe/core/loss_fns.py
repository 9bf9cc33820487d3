"""Loss definitions of Gatys et al., made resolution-independent, and the LossTerm protocol.

Normalisations (pinned in tests/test_losses.py; weights only mean something with them):

* content  = Σ_l w_l · mean((F_l − P_l)²) / Σ_l w_l           (F: image features, P: content's)
* gram(F)  = F Fᵀ / (C·H·W)                                      (F reshaped to C × HW)
* style_l  = ¼ Σ_ij (gram(F_l) − A_l)²_ij                        (A: the style's cached Gram target)
* style    = Σ_l w_l · style_l / Σ_l w_l

style_l is the paper's E_l = 1/(4N²M²) Σ_ij (G − A)²_ij with G = F Fᵀ (N channels, M positions),
rewritten with the position-normalised Gram: a *sum* over the N×N entries. A *mean* over the entries
would scale each layer by 1/N², and with the normalised VGG19 (equal mean activation per layer)
relu1_1 would then outweigh relu4_1 and relu5_1 64×: the painting's large strokes vanish.
* tv       = mean((x[..., 1:, :] − x[..., :-1, :])²) + mean((x[..., :, 1:] − x[..., :, :-1])²)

Every per-image quantity has shape (B,): a batch of N images is N independent problems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, cast, runtime_checkable

import torch

Side = Literal["content", "style", "image"]
Features = Mapping[str, torch.Tensor]
TensorDict = dict[str, torch.Tensor]
#: term name → that term's tensors (e.g. "style" → {"relu1_1": C×C Gram, …}).
Targets = dict[str, TensorDict]


# --- pure tensor functions -------------------------------------------------------------------


def gram(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations that forget *where* things are: the paper's style representation."""
    return normalised_gram(gram_sums(features), features.shape[2] * features.shape[3])


def gram_sums(features: torch.Tensor) -> torch.Tensor:
    """Σ F Fᵀ over positions, (B, C, C), read the way the features lie in memory.

    Channels-last features (bf16 on the CPU, CUDA) are a free (B, HW, C) view: reshaping them to
    C × HW instead copies them, and the copy's gradient comes back in the other layout, so every
    tapped layer then adds two gradients of different layouts (measured: a quarter of the
    element-wise time of a 256 px bf16 step). NCHW features keep the C × HW product as before.
    """
    b, c, h, w = features.shape
    if features.is_contiguous() or not features.is_contiguous(memory_format=torch.channels_last):
        return cast(torch.Tensor, _OuterSums.apply(features.reshape(b, c, h * w).transpose(1, 2)))
    return cast(torch.Tensor, _OuterSums.apply(features.permute(0, 2, 3, 1).reshape(b, h * w, c)))  # a view


class _OuterSums(torch.autograd.Function):
    """Rᵀ R for rows R (B, M, C), with the gradient R (g + gᵀ) in one product: autograd's own
    backward of a product of a tensor with itself takes two (measured: the Grams' backward in 40 %
    less time, a step at 256 px 6 % faster)."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        return torch.bmm(rows.transpose(1, 2), rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (rows,) = ctx.saved_tensors
        return torch.bmm(rows, grad + grad.transpose(1, 2))


def normalised_gram(sums: torch.Tensor, positions: int) -> torch.Tensor:
    """Σ F Fᵀ over `positions` positions (B, C, C) → the Gram matrix divided by C·M: the one place
    the normalisation lives, for whole pictures (`gram`) and for sums added up over tiles."""
    return sums / (sums.shape[1] * positions)


def gram_error(gram_matrix: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E_l from a Gram matrix, per image: ¼ of the summed squared difference to the target."""
    return 0.25 * (gram_matrix - target).pow(2).flatten(1).sum(dim=1)


def per_image_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per batch item, so batched images never share a loss."""
    # Mean over every dimension but the first, without flatten's copy of channels-last features.
    return (a - b).pow(2).mean(dim=tuple(range(1, a.dim())))  # b broadcasts: (C, C) or (1, …) targets


def content_loss(features: Features, targets: Features, layer_weights: Mapping[str, float]) -> torch.Tensor:
    """Weighted mean over layers of the per-image feature MSE."""
    total = sum(layer_weights.values())
    return cast(torch.Tensor, sum(w * per_image_mse(features[l], targets[l]) for l, w in layer_weights.items()) / total)


def gram_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's per-layer style error E_l, per image: ¼ of the summed squared Gram difference."""
    return gram_error(gram(features), target)


def style_loss(features: Features, targets: Features, layer_weights: Mapping[str, float]) -> torch.Tensor:
    """Weighted mean over layers of the paper's E_l, so every layer keeps the paper's balance."""
    total = sum(layer_weights.values())
    return cast(torch.Tensor, sum(w * gram_distance(features[l], targets[l]) for l, w in layer_weights.items()) / total)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Squared neighbour differences per image: discourages high-frequency noise."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).flatten(1).mean(dim=1)
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).flatten(1).mean(dim=1)
    return dx + dy


# --- what the optimiser needs of a term ----------------------------------------------------------


@runtime_checkable
class Term(Protocol):
    """What the optimiser and the targets stage read of a loss term. `stylepipe.losses.LossTerm`
    (with validated parameters, for YAML and plugins) is the usual implementation; any object
    with these members works, so the core needs no settings library."""

    @property
    def name(self) -> str: ...

    @property
    def side(self) -> Side: ...

    @property
    def weight(self) -> float: ...

    @property
    def layers(self) -> Sequence[str]: ...

    def style_targets(self, features: Features) -> TensorDict: ...

    def content_targets(self, features: Features) -> TensorDict: ...

    def loss(self, image: torch.Tensor, features: Features, content: Features, style: Features) -> torch.Tensor: ...

    def fingerprint(self) -> dict[str, Any]: ...


@runtime_checkable
class TileSafeTerm(Protocol):
    """A network term whose loss depends on the whole picture only through sums over positions.

    `stylepipe.core.tiling` evaluates such a term tile by tile, with the exact whole-picture loss and
    gradient and the memory of one tile: it adds each tile's `tile_statistics` into whole-picture
    sums S, takes the loss from `loss_from_statistics(S)`, then back-propagates dloss/dS through
    each tile's statistics. A term with `layers` that lacks these two methods is refused there.

    * `tile_statistics(features, content)`: `features[layer]` is float32 `(B, C, h, w)`, the
      tile's features at the positions it owns (its core), for each of the term's layers;
      `content` holds the term's content targets cropped to the same positions. Returns per-image
      **sums** over those positions, each `(B, …)`, differentiable in `features`: summed over the
      tiles they must give the whole picture's sums.
    * `loss_from_statistics(stats, positions, style)`: `stats` are those whole-picture sums,
      `positions[layer]` the number of positions of the whole picture at each layer (for means),
      `style` the term's style targets. Returns `(B,)`, equal to `loss` on the whole picture and
      differentiable in `stats`.

    A style-side term also gives `targets_from_statistics(stats, positions)`: its style targets
    (what `style_targets` returns for a batch of one) from the same sums, so that a style picture
    at a print size is measured tile by tile too.

    A content-side term's content targets must be maps at one of its layers, keyed by the layer
    (`"relu4_2"`) or the layer and a suffix (`"relu4_2.x"`), of that layer's spatial size: the
    engine computes them tile by tile and hands each tile its crop.
    """

    def tile_statistics(self, features: Features, content: Features) -> TensorDict: ...

    def loss_from_statistics(self, stats: Features, positions: Mapping[str, int], style: Features) -> torch.Tensor: ...
