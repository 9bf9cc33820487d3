"""VGG19 feature extractor with named taps (its weights come from `stylepipe.io.weights`).

Both supported networks share one trunk: 16 3×3 convolutions in five blocks separated by 2×2
pools. They differ only in the input stage (how RGB in [0, 1] becomes what the weights were
trained on) and in where the weights live. The trunk only runs as deep as the deepest tap a
loss asks for, so a content-only run stops at relu4_2 and never pays for block 5.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import ConfigError
from .suggest import did_you_mean

Pooling = Literal["avg", "max"]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]  # what nn.Conv2d accepts
log = logging.getLogger("stylepipe.network")

#: Convolutions per block of VGG19.
BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _tap_names() -> tuple[str, ...]:
    """Names of every tap in trunk order: conv1_1, relu1_1, …, relu5_4, plus pool1…pool5."""
    names: list[str] = []
    for block, count in enumerate(BLOCKS, start=1):
        for i in range(1, count + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


TAPS: tuple[str, ...] = _tap_names()
_TAP_INDEX = {name: i for i, name in enumerate(TAPS)}


def check_layers(layers: Iterable[str]) -> None:
    """Fail early, naming the valid taps, when a configured layer does not exist."""
    unknown = [name for name in layers if name not in _TAP_INDEX]
    if unknown:
        hint = did_you_mean(unknown[0], _TAP_INDEX) if len(unknown) == 1 else ""
        raise ConfigError(f"unknown VGG19 layer(s) {', '.join(unknown)}{hint}; valid: conv1_1 … relu5_4, pool1 … pool5")


def tap_channels(layer: str) -> int:
    """Channels of a tap's output: its block's (conv3_2, relu3_2 and pool3 all have 256)."""
    check_layers([layer])
    block = next(char for char in layer if char.isdigit())  # conv3_2 → 3, pool5 → 5
    return CHANNELS[int(block) - 1]


def deepest(layers: Iterable[str]) -> str:
    """The tap furthest down the trunk: the network is truncated after it."""
    layers = list(layers)
    check_layers(layers)
    return max(layers, key=_TAP_INDEX.__getitem__)


@dataclass(frozen=True)
class NetworkWeights:
    """The 16 convolutions of a VGG19 plus the stage that prepares RGB input for them."""

    network_id: str
    convs: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    input_stage: nn.Module
    padding_mode: PaddingMode
    sha256: str
    ceil_mode: bool = False  # how pools treat odd sizes: as the weights' original framework did


class _Truncated(nn.Module):
    """The trunk as a flat list of named layers so forward can stop at the deepest tap."""

    def __init__(self, weights: NetworkWeights, pooling: Pooling) -> None:
        super().__init__()
        self.input_stage = weights.input_stage
        layers: list[nn.Module] = []
        conv_iter = iter(weights.convs)
        in_ch = 3
        for block, count in enumerate(BLOCKS):
            out_ch = CHANNELS[block]
            for _ in range(count):
                weight, bias = next(conv_iter)
                conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, padding_mode=weights.padding_mode)
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    assert conv.bias is not None  # Conv2d's bias=True default
                    conv.bias.copy_(bias)
                layers += [conv, nn.ReLU(inplace=False)]
                in_ch = out_ch
            ceil = weights.ceil_mode
            layers.append(nn.AvgPool2d(2, 2, ceil_mode=ceil) if pooling == "avg" else nn.MaxPool2d(2, 2, ceil_mode=ceil))
        self.layers = nn.ModuleList(layers)


class FeatureExtractor(nn.Module):
    """Frozen VGG19 that returns the activations at named taps; one instance serves every job."""

    def __init__(self, weights: NetworkWeights, pooling: Pooling = "avg") -> None:
        super().__init__()
        self.network_id = weights.network_id
        self.weights_sha256 = weights.sha256
        self.pooling = pooling
        self.trunk = _Truncated(weights, pooling)
        self.requires_grad_(False)
        self.eval()
        self._compiled: Callable[..., dict[str, torch.Tensor]] | None = None
        #: Under autocast, the input stage and the trunk up to this tap still run in float32 (None:
        #: all of it in the autocast dtype). Pixels in bf16 keep 8 bits: a step smaller than 1/256
        #: of a pixel is invisible to a bf16 first convolution (docs/benchmarks.md, "bf16 on the CPU").
        self.fp32_until: str | None = "pool1"
        self.compile_error: str | None = None  # why compile_forward fell back to eager, if it did
        self._cast: dict[tuple[torch.dtype, torch.device], dict[int, nn.Module]] = {}  # see _cast_convs

    def forward(self, image: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run RGB in [0, 1], shape (B, 3, H, W), only as deep as the deepest of `taps`."""
        wanted = tuple(sorted(set(taps)))
        last = _TAP_INDEX[deepest(wanted)]
        if self._compiled is not None:
            try:
                return self._compiled(image, wanted, last)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not fail the job
                if is_out_of_memory(exc):
                    raise
                self.stop_compiling(exc)
        return self._run(image, wanted, last)

    def _run(self, image: torch.Tensor, wanted: tuple[str, ...], last: int) -> dict[str, torch.Tensor]:
        """The tapped forward pass itself: what `compile_forward` compiles, as one graph."""
        out: dict[str, torch.Tensor] = {}
        head = _TAP_INDEX[self.fp32_until] if self.fp32_until and torch.is_autocast_enabled(image.device.type) else -1
        with torch.autocast(image.device.type, enabled=False) if head >= 0 else contextlib.nullcontext():
            x = self.trunk.input_stage(image.float() if head >= 0 else image)
        cast = self._cast_convs(image) if torch.is_autocast_enabled(image.device.type) else {}
        for index, layer in enumerate(self.trunk.layers):
            if index <= head:
                with torch.autocast(image.device.type, enabled=False):
                    x = layer(x)
            else:
                x = cast.get(index, layer)(x)
            name = TAPS[index]
            if name in wanted:
                out[name] = x
            if index == last:
                break
        return out

    def _cast_convs(self, image: torch.Tensor) -> dict[int, nn.Module]:
        """The convolutions in autocast's dtype, made once per dtype and device.

        Autocast casts a weight that does not require a gradient anew at every call (its cache
        keeps only leaf weights that do): 40 MB of bf16 copies a VGG19 pass, 6 % of a 256 px bf16
        step. A kept copy gives the same convolution, bit for bit, without the casts.
        """
        dtype = torch.get_autocast_dtype(image.device.type)
        key = (dtype, image.device)
        if key not in self._cast:
            self._cast[key] = {index: copy.deepcopy(layer).to(dtype) for index, layer in enumerate(self.trunk.layers)
                               if isinstance(layer, nn.Conv2d)}
        return self._cast[key]

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile_forward(self) -> FeatureExtractor:
        """torch.compile the whole tapped forward, the function every loss evaluation calls.

        Compiling happens at the first call of each shape; if it fails there (no compiler, an
        unsupported backend), or later in the backward pass (see `stop_compiling`), the network
        runs uncompiled and `compile_error` says why.
        """
        self._compiled = torch.compile(self._run)
        self.compile_error = None
        return self

    def stop_compiling(self, exc: BaseException) -> None:
        """Fall back to the uncompiled forward for good, saying why once."""
        self._compiled = None
        lines = str(exc).strip().splitlines()
        self.compile_error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        log.warning("torch.compile failed (%s); running the network uncompiled", self.compile_error)

    def fingerprint(self) -> dict[str, str]:
        """What about the network changes its features: part of every cache key."""
        return network_fingerprint(self.network_id, self.weights_sha256, self.pooling)


def is_out_of_memory(exc: BaseException) -> bool:
    """Out of device memory: the caller halves its batch; never a reason to stop compiling."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Normalize(nn.Module):
    """ImageNet mean/std normalisation as a module, so it moves with the network."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def network_fingerprint(network_id: str, weights_sha256: str, pooling: str) -> dict[str, str]:
    """What about the network changes its features: part of every cache key."""
    return {"network": network_id, "weights_sha256": weights_sha256, "pooling": pooling}


def random_weights(seed: int = 0, network_id: str = "vgg19-random") -> NetworkWeights:
    """A VGG19 with random weights: the same shapes, for tests of plumbing that needs no real features."""
    generator = torch.Generator().manual_seed(seed)
    convs = []
    in_ch = 3
    for block, count in enumerate(BLOCKS):
        for _ in range(count):
            out_ch = CHANNELS[block]
            weight = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * (2.0 / (9 * in_ch)) ** 0.5
            convs.append((weight, torch.zeros(out_ch)))
            in_ch = out_ch
    return NetworkWeights(network_id, tuple(convs), nn.Identity(), "zeros", f"random-{seed}")
