"""Tile geometry: what the network sees (strides, reach, feature sizes, read off its layers) and
which pixels each tile owns and reads. Why tiles at all, and why this is exact: `core.tiling`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import nn

from .errors import TilingError
from .network import TAPS, FeatureExtractor, deepest

# --- what the network sees: strides, reach, feature sizes ----------------------------------------


class _Op(NamedTuple):
    """One spatial operation of the trunk (a convolution or a pooling), square windows."""

    kernel: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool

    def length(self, n: int) -> int:
        """Output length along one axis for an input of `n`, as torch computes it."""
        span = self.dilation * (self.kernel - 1) + 1
        if not self.ceil_mode:
            return (n + 2 * self.padding - span) // self.stride + 1
        out = -(-(n + 2 * self.padding - span) // self.stride) + 1
        return out - 1 if (out - 1) * self.stride >= n + self.padding else out  # a window must start inside


def _square(value: Any, what: str) -> int:
    """An int, or the single value of a square (a, a) pair."""
    if isinstance(value, int):
        return value
    values = set(value)
    if len(values) != 1:
        raise TilingError(f"tiling needs square {what}s, found {tuple(value)}")
    return int(values.pop())


def _spatial_op(module: nn.Module) -> _Op | None:
    """The module's window as an _Op; None for position-wise modules (ReLU, normalisation, …)."""
    if isinstance(module, nn.Conv2d):
        kernel, dilation = _square(module.kernel_size, "kernel"), _square(module.dilation, "dilation")
        if isinstance(module.padding, str):  # "valid" or "same" (stride 1 only)
            padding = 0 if module.padding == "valid" else dilation * (kernel - 1) // 2
        else:
            padding = _square(module.padding, "padding")
        return _Op(kernel, _square(module.stride, "stride"), padding, dilation, False)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        kernel = _square(module.kernel_size, "kernel")
        stride = _square(module.stride if module.stride is not None else kernel, "stride")
        dilation = _square(getattr(module, "dilation", 1), "dilation")
        return _Op(kernel, stride, _square(module.padding, "padding"), dilation, bool(module.ceil_mode))
    return None


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class Footprint:
    """What tiling needs to know about the network up to a set of taps, read off its layers."""

    strides: Mapping[str, int]  # tap → input pixels per feature position (product of the strides before it)
    reach: int  # pixels of context beyond its own that a position of any tap reads, on either side
    receptive_field: int  # side of one position's receptive field at the deepest tap
    ops: Mapping[str, tuple[_Op, ...]] = field(repr=False)  # tap → the spatial ops up to it

    @property
    def align(self) -> int:
        """Tile origins and core sides are multiples of this: the deepest tap's stride."""
        return max(self.strides.values())

    @property
    def halo(self) -> int:
        """The smallest exact halo: the reach, rounded up to the alignment."""
        return _round_up(self.reach, self.align)

    def length(self, layer: str, n: int) -> int:
        """Feature positions at `layer` along an axis of `n` pixels."""
        for op in self.ops[layer]:
            n = op.length(n)
        return n


def footprint(extractor: FeatureExtractor, layers: Sequence[str]) -> Footprint:
    """Strides, reach and receptive field of `layers`, derived from the network's own layers.

    A position i at stride J sits on pixels [J·i, J·i + J) and reads pixels [J·i + a, J·i + b];
    a window of k (dilation d, padding p, stride s) at stride J moves a by −J·p and b by
    J·(d(k−1) − p). Its reach is max(−a, b − J + 1). VGG19 at relu5_1: a = −70, b = 85, J = 16:
    receptive field 156 px, reach 70 px. Modules other than convolutions and pools are assumed
    position-wise (ReLU, the input normalisation or its 1×1 convolution).
    """
    wanted = set(layers)
    last = TAPS.index(deepest(wanted))
    ops: list[_Op] = []
    stride, low, high = 1, 0, 0
    strides: dict[str, int] = {}
    by_tap: dict[str, tuple[_Op, ...]] = {}
    reach, field_size = 0, 1
    stages: list[tuple[str, nn.Module]] = [("input", m) for m in extractor.trunk.input_stage.modules()]
    stages += list(zip(TAPS[: last + 1], extractor.trunk.layers[: last + 1]))
    for name, module in stages:
        op = _spatial_op(module)
        if op is not None:
            ops.append(op)
            low -= stride * op.padding
            high += stride * (op.dilation * (op.kernel - 1) - op.padding)
            stride *= op.stride
        if name in wanted:
            strides[name] = stride
            by_tap[name] = tuple(ops)
            reach = max(reach, -low, high - stride + 1)
            field_size = high - low + 1
    return Footprint(strides, reach, field_size, by_tap)


# --- tile geometry ---------------------------------------------------------------------------------


class Span(NamedTuple):
    """A half-open pixel range [start, stop) along one axis."""

    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass(frozen=True)
class Tile:
    """One tile: the pixels it owns (`core`) and what the network sees (`region`: core + halo)."""

    core: tuple[Span, Span]  # rows, columns
    region: tuple[Span, Span]


def _axis(length: int, core: int, halo: int) -> tuple[tuple[Span, Span], ...]:
    """(core, region) spans along one axis: cores of `core` pixels (the last one shorter), halos clipped."""
    spans = []
    for start in range(0, length, core):
        owned = Span(start, min(start + core, length))
        spans.append((owned, Span(max(0, start - halo), min(length, owned.stop + halo))))
    return tuple(spans)


@dataclass(frozen=True)
class TilePlan:
    """The tiles of an (H, W) picture: cores partition it; regions add the halo, clipped at borders.

    Core sides and the halo are multiples of `align`, so every region starts on the coarsest
    pooling grid; a region that reaches the picture's border ends there.
    """

    size: tuple[int, int]
    core: int
    halo: int
    align: int
    rows: tuple[tuple[Span, Span], ...]
    cols: tuple[tuple[Span, Span], ...]

    @classmethod
    def build(cls, size: tuple[int, int], core: int, halo: int, align: int) -> TilePlan:
        """Core side rounded to the nearest multiple of `align` (at least one), halo rounded up."""
        height, width = size
        core = max(align, round(core / align) * align)
        halo = _round_up(max(0, halo), align)
        return cls((height, width), core, halo, align, _axis(height, core, halo), _axis(width, core, halo))

    @property
    def tiles(self) -> list[Tile]:
        return [Tile((row_core, col_core), (row_region, col_region))
                for row_core, row_region in self.rows for col_core, col_region in self.cols]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def core_at(tile: Tile, plan: TilePlan, fp: Footprint, layer: str) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The tile's core at `layer`, as slices of the tile's feature map and of the whole picture's."""
    stride = fp.strides[layer]
    local, whole = [], []
    for core, region, length in zip(tile.core, tile.region, plan.size):
        start = core.start // stride
        stop = core.stop // stride if core.stop < length else fp.length(layer, length)
        offset = region.start // stride
        local.append(slice(start - offset, stop - offset))
        whole.append(slice(start, stop))
    return (local[0], local[1]), (whole[0], whole[1])
