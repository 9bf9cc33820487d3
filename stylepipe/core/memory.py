"""The one memory model: bytes one evaluation and one optimisation hold, per precision and device.

Three parts grow with the picture: the network pass (every trunk output up to the deepest tap is
kept for the backward pass: `network_bytes`, per activation value), the solver (the L-BFGS
history, 2·m image-sized float32 vectors, and its work vectors: `core.optimize.solver_bytes_per_image`)
and the image-sized float32 buffers and targets (`image_bytes`; content targets are feature maps,
counted by the caller). `running.budget.plan_memory` adds them up for a batch, and both the batch
size (`running.context.auto_batch_size`) and the tiles (`size.tile: auto`) read that sum.

The bytes per activation value are measured: peak RSS growth of a fresh `stylepipe run` process
over one at 32 px, at 256, 512 and 1024 px (docs/benchmarks.md, "One memory model"); CUDA has not
been measured here and reuses the CPU's numbers (its caching allocator only errs larger).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryModel:
    """Bytes per value of the trunk's outputs kept for one forward + backward pass."""

    whole: float  # over the whole picture
    tiled: float  # over the largest tile region: tiles of several shapes leave the allocator more slack


#: By (device type, precision). fp32: 1.25 × 4 bytes a value whole, 1.75 × 4 tiled (measured at
#: 512 and 1024 px). bf16 autocast on the CPU saves far less than half: its activations are bf16,
#: but block 1 stays float32, the tapped features are cast to float32 for the losses and oneDNN
#: keeps reordered copies: measured 0.94–0.99 × the fp32 bytes (docs/benchmarks.md); tiled bf16
#: is not measured and scales the fp32 figure alike.
MODELS: dict[tuple[str, str], MemoryModel] = {
    ("cpu", "fp32"): MemoryModel(whole=5.0, tiled=7.0),
    ("cpu", "bf16"): MemoryModel(whole=4.75, tiled=6.75),
}
#: Image-sized float32 tensors besides the solver's: the image, its gradient, the best iterate,
#: the initial batch, the content batch and the result.
IMAGE_BUFFERS = 6


def model_for(device_type: str, precision: str) -> MemoryModel:
    """The measured model nearest to a device and precision: fp16 counts as bf16, every device as the CPU."""
    half = "bf16" if precision in ("bf16", "fp16") else "fp32"
    return MODELS.get((device_type, half)) or MODELS[("cpu", half)]


def network_bytes(values: int, precision: str = "fp32", device_type: str = "cpu", tiled: bool = False) -> int:
    """Peak bytes of one forward + backward pass over `values` trunk output values (batch included)."""
    model = model_for(device_type, precision)
    return int((model.tiled if tiled else model.whole) * values)


def image_bytes(numel: int) -> int:
    """The image-sized float32 buffers an optimisation holds besides the solver's, for `numel` values."""
    return 4 * IMAGE_BUFFERS * numel
