"""How a batch fits in memory: whether the network runs on tiles, how large, and how much L-BFGS
history is kept, from a memory budget (`size.tile`, `limits.max_memory_mb`).

A whole-picture evaluation keeps every activation for the backward pass (about 3 KB a pixel up
to relu5_1), and the L-BFGS history keeps 2·m image-sized vectors (1.2 KB a pixel at m = 50):
both grow with the picture. Tiles (`core.tiling`) bound the first at the same loss and gradient;
the second can only be bounded by keeping fewer pairs, which changes the path the optimiser takes,
so it is cut only when the picture would not fit otherwise, and the report says so.

The budget is what the user set, or the memory free now (available RAM on the CPU, free device
memory on CUDA) less a margin for the allocator. Sizes come from the one memory model (`core.memory`,
per precision and device, calibrated on the CPU; `core.tiling.estimate_peak_bytes` for the
network's part): the choice errs towards smaller tiles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.errors import TilingError
from ..core.loss_fns import Term
from ..core.memory import image_bytes
from ..core.network import FeatureExtractor, tap_channels
from ..core.optimize import OptimizeSettings, lbfgs_history_size, solver_bytes_per_image
from ..core.tile_geometry import footprint
from ..core.tiling import Tiling, check_tile_safe, estimate_peak_bytes

log = logging.getLogger("stylepipe")

#: Tile cores tried by `size.tile: auto`, largest first (fewer tiles: less halo overhead).
AUTO_CORES = (2048, 1536, 1024, 768, 512, 384, 256, 128)
#: Share of the free memory a batch may plan to use: the allocator, Python and the next batch's
#: decoded pictures need the rest.
FREE_SHARE = 0.8
#: Pairs of L-BFGS history below which a cut is worth a warning: the optimiser then learns little
#: curvature and needs more steps for the same picture.
FEW_PAIRS = 5


@dataclass(frozen=True)
class MemoryPlan:
    """What one batch at one size will do to fit, and why (for the log and the report)."""

    tiling: Tiling | None
    lbfgs_history: int
    estimate: int  # bytes the plan is expected to use
    budget: int  # bytes it may use
    note: str | None = None  # what a user should know: tiles used, history cut, or no fit

    @property
    def fits(self) -> bool:
        return self.estimate <= self.budget


def budget_bytes(device: torch.device, max_memory_mb: int | None) -> int:
    """The memory a batch may use: the user's limit, else a share of what is free now."""
    if max_memory_mb is not None:
        return max_memory_mb << 20
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * FREE_SHARE)
    return int(free_ram() * FREE_SHARE)


def free_ram() -> int:
    """Available RAM in bytes (MemAvailable: free plus reclaimable caches); 8 GiB where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def _content_target_bytes(extractor: FeatureExtractor, terms: Sequence[Term], size: tuple[int, int], batch: int) -> int:
    """Full-size content feature maps kept as targets (relu4_2: 8 values a pixel)."""
    total = 0
    for term in terms:
        if term.side != "content" or not term.layers:
            continue
        fp = footprint(extractor, term.layers)
        for layer in term.layers:
            total += 4 * batch * tap_channels(layer) * fp.length(layer, size[0]) * fp.length(layer, size[1])
    return total


def plan_memory(extractor: FeatureExtractor, terms: Sequence[Term], size: tuple[int, int], batch: int,
                optimize: OptimizeSettings, tile: int | str, budget: int, precision: str = "fp32") -> MemoryPlan:
    """Choose tiles and history for a batch of `batch` pictures of `size`, by the one memory model
    (`core.memory`, for the network's device and `precision`).

    `tile` is `size.tile`: "off" never tiles, a number always tiles with that core side, "auto"
    tiles only when the whole picture would not fit, with the largest core that does. The history
    is cut, with a note, only when even then it would not fit.
    """
    layers = sorted({layer for term in terms for layer in term.layers})
    numel = 3 * size[0] * size[1]
    device_type = next(extractor.parameters()).device.type
    fixed = batch * image_bytes(numel) + _content_target_bytes(extractor, terms, size, batch)
    history = lbfgs_history_size(optimize) if optimize.optimizer == "lbfgs" else 0

    def solver(pairs: int) -> int:
        settings = OptimizeSettings(optimize.optimizer, steps=max(1, pairs) + 1, lbfgs_history=max(1, pairs))
        return batch * solver_bytes_per_image(numel, settings)

    def activations(tiling: Tiling | None) -> int:
        return estimate_peak_bytes(extractor, size, layers, batch, tiling, precision, device_type) if layers else 0

    tiling: Tiling | None = None
    if tile != "off" and layers:
        if tile == "auto":
            if fixed + solver(history) + activations(None) > budget:  # whole history first, then the largest tiles
                tiling = (_auto_tiling(terms, size, fixed + solver(history), budget, activations, strict=True)
                          or _auto_tiling(terms, size, fixed + solver(min(history, FEW_PAIRS)), budget, activations))
        else:
            tiling = Tiling(int(tile))
    used = fixed + activations(tiling)
    pairs = history
    if optimize.optimizer == "lbfgs" and used + solver(history) > budget:
        per_pair = solver(2) - solver(1)
        rest = solver(1) - per_pair  # the solver's work vectors
        pairs = max(1, min(history, (budget - used - rest) // per_pair))
    estimate = used + solver(pairs)
    notes = []
    if tiling is not None:
        notes.append(f"tiled: {tiling.core} px tiles")
    if pairs < history:
        notes.append(f"L-BFGS history cut from {history} to {pairs} pairs to fit {budget >> 20} MB")
    if estimate > budget:
        notes.append(f"needs about {estimate >> 20} MB, more than the {budget >> 20} MB available; it may fail")
    return MemoryPlan(tiling, pairs, estimate, budget, "; ".join(notes) or None)


def bytes_per_image(extractor: FeatureExtractor, terms: Sequence[Term], size: tuple[int, int],
                    optimize: OptimizeSettings, precision: str = "fp32") -> int:
    """What one picture of a batch needs, untiled, with its whole L-BFGS history: what batch
    sizing divides the free memory by (`running.context.auto_batch_size`)."""
    return plan_memory(extractor, terms, size, 1, optimize, "off", 1 << 62, precision).estimate


def _auto_tiling(terms: Sequence[Term], size: tuple[int, int], fixed: int, budget: int,
                 activations: Callable[[Tiling | None], int], strict: bool = False) -> Tiling | None:
    """The largest tile core that fits with the rest; if none does, the smallest (or None when
    `strict`), or None where the terms cannot be tiled."""
    try:
        check_tile_safe(terms)
    except TilingError as exc:
        if not strict:
            log.warning("%s: the picture is not tiled and may not fit in memory", exc)
        return None
    cores = [core for core in AUTO_CORES if core < max(size)] or [AUTO_CORES[-1]]
    for core in cores:
        tiling = Tiling(core)
        if fixed + activations(tiling) <= budget:
            return tiling
    return None if strict else Tiling(cores[-1])


def style_tiling(extractor: FeatureExtractor, terms: Sequence[Term], tile: int | str,
                 budget: int) -> Callable[[tuple[int, int]], Tiling | None]:
    """When a style picture is measured tile by tile: the same rule as for the pictures made,
    for a forward pass only (about a quarter of a forward and backward pass's memory). A
    `TargetStore` takes the result as its `tile_for`."""
    layers = sorted({layer for term in terms if term.side == "style" for layer in term.layers})

    def tile_for(size: tuple[int, int]) -> Tiling | None:
        if tile == "off" or not layers:
            return None
        if tile != "auto":
            return Tiling(int(tile)) if max(size) > int(tile) else None
        if estimate_peak_bytes(extractor, size, layers) // 4 <= budget:
            return None
        for core in AUTO_CORES:
            if core < max(size) and estimate_peak_bytes(extractor, size, layers, tiling=Tiling(core)) // 4 <= budget:
                return Tiling(core)
        return Tiling(AUTO_CORES[-1])

    return tile_for
