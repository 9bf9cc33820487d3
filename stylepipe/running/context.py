"""What every job on one device shares: the spec that travels to a worker, the context built from it
once per device (network, batch size, precision), and how large a batch is by default.

A WorkerSpec is everything a worker needs that can travel (to a Ray actor, say): the active
terms, the settings, the style targets computed once by the driver, the plugin folders to load.
A WorkerContext is that plus the network, built once per device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.device import resolve_precision
from ..core.loss_fns import Targets, Term
from ..core.network import FeatureExtractor
from ..extend.terms import LossTerm
from ..plan.run_settings import RunSettings
from .budget import bytes_per_image, free_ram


@dataclass
class WorkerSpec:
    """The picklable part of a worker's context: shipped once to every worker."""

    terms: list[LossTerm]
    settings: RunSettings
    out_dir: Path
    style_targets: dict[str, list[Targets]] = field(default_factory=dict)  # by style label: one per level
    style_errors: dict[str, str] = field(default_factory=dict)  # style label → why it failed
    plugin_folders: tuple[Path, ...] = ()
    override_plugins: bool = False


@dataclass
class WorkerContext:
    """What every job on one device shares; built once per run (or once per Ray actor): the spec
    (terms, settings, targets: what travels) plus what belongs to this device."""

    spec: WorkerSpec
    extractor: FeatureExtractor
    device: torch.device
    should_stop: Callable[[], bool] = lambda: False  # driver-side: checked before each job/batch
    batch_size: int = 1  # images per device batch; halved for good after an out-of-memory
    precision: str = "fp32"  # resolved for this device: fp32, bf16 or fp16

    @property
    def terms(self) -> list[LossTerm]:
        return self.spec.terms

    @property
    def settings(self) -> RunSettings:
        return self.spec.settings

    @property
    def out_dir(self) -> Path:
        return self.spec.out_dir

    @property
    def style_targets(self) -> dict[str, list[Targets]]:
        """By style label, one per level (composition first); the driver fills it in place before the jobs run."""
        return self.spec.style_targets

    @property
    def style_errors(self) -> dict[str, str]:
        """Style label → why its targets failed (its jobs fail with that cause)."""
        return self.spec.style_errors

    @classmethod
    def from_spec(cls, spec: WorkerSpec, extractor: FeatureExtractor, device: torch.device) -> WorkerContext:
        settings = spec.settings
        extractor = tune_for_device(extractor, device, settings.compile, settings.precision)
        return cls(spec, extractor, device, batch_size=resolve_batch_size(settings.batch_size, device, settings, extractor, spec.terms),
                   precision=resolve_precision(settings.precision, device))

    @classmethod
    def build(cls, spec: WorkerSpec, device: torch.device) -> WorkerContext:
        """In a fresh process: load the plugins the terms need, then the network, once."""
        from ..extend.networks import build_extractor
        from ..extend.plugins import load_plugin_folders
        from ..extend.registries import register_builtins

        register_builtins()
        load_plugin_folders(spec.plugin_folders, override=spec.override_plugins)
        settings = spec.settings
        extractor = build_extractor(settings.network, settings.network_weights, settings.pooling, device)  # type: ignore[arg-type]
        return cls.from_spec(spec, extractor, device)


_AUTO_CPU_BATCH = 1  # measured (docs/benchmarks.md): larger CPU batches gain nothing and cost memory


def resolve_batch_size(configured: int | str, device: torch.device, settings: RunSettings, extractor: FeatureExtractor,
                       terms: Sequence[Term]) -> int:
    """`auto`: on CUDA the largest batch that fits in half the free memory (OOM halves it further),
    by the one memory model that also decides the tiles (`running.budget.bytes_per_image`)."""
    if configured != "auto":
        return int(configured)
    side = settings.size_max_side or int(settings.size_max_pixels ** 0.5)  # type: ignore[operator]
    return auto_batch_size(device, bytes_per_image(extractor, terms, (side, side), settings.optimize, settings.precision))


def auto_batch_size(device: torch.device, per_image: int) -> int:
    """The largest batch of pictures of `per_image` bytes that fits in half the free memory, at most 64."""
    if device.type != "cuda":
        return max(1, min(_AUTO_CPU_BATCH, int(free_ram() * 0.5 // per_image)))
    free, _total = torch.cuda.mem_get_info(device)
    return max(1, min(64, int(free * 0.5 // per_image)))


def tune_for_device(extractor: FeatureExtractor, device: torch.device, compile_network: bool,
                    precision: str = "fp32") -> FeatureExtractor:
    """Channels-last convolutions on CUDA (with cuDNN autotuning) and for bf16 on the CPU, where
    oneDNN's bf16 kernels want that layout (measured: 0.103 s a VGG19 step at 256 px against 0.197 s
    NCHW; in fp32 the CPU gains only 8 %); torch.compile wherever asked
    (`FeatureExtractor.compile_forward` compiles the call every loss makes, and falls back to eager)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda" or precision in ("bf16", "fp16"):
        extractor = extractor.to(memory_format=torch.channels_last)
    if compile_network:
        extractor.compile_forward()
    return extractor
