"""Which device a run uses and which precision that means, decided once, before planning.

The plan needs the precision for its resume hashes (an output made in bf16 is not the one made
in fp32), the runner needs the device, and every worker must agree with both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DeviceUnavailable, EnvironmentProblem


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for a device that is absent is an environment error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(name, "no CUDA device is available; use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailable(name, f"only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


#: Whether `auto` turns bf16 on for a CPU with bf16 matrix units. Decided on pictures, not on the
#: loss (docs/benchmarks.md, "bf16 on the CPU"): the 4 photos × 4 paintings at 256 px and two
#: palettes scored within run-to-run noise of float32, and look the same side by side.
CPU_AUTO_BF16 = True


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a device runs at and why, in words the plan, report.json and the report page show."""

    precision: str  # fp32, bf16 or fp16
    reason: str  # "configured", "bf16: CPU has AMX (torch)", …


def cpu_bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's bf16 matrix units ("AMX", "AVX512-BF16") and who said so, or None without any.

    torch is asked first (`torch.cpu._is_amx_tile_supported`, `_is_avx512_bf16_supported`: what its
    oneDNN kernels will use); a torch without those probes falls back to the kernel's CPU flags.
    """
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if amx is not None and avx is not None:
        unit = "AMX" if amx() else ("AVX512-BF16" if avx() else None)
        return f"{unit} (torch)" if unit else None
    try:
        flags = {flag for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
                 for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None
    unit = "AMX" if {"amx_bf16", "amx_tile"} <= flags else ("AVX512-BF16" if "avx512_bf16" in flags else None)
    return f"{unit} ({cpuinfo})" if unit else None


def choose_precision(configured: str, device: torch.device) -> PrecisionChoice:
    """`auto`: bf16 autocast on CUDA (fp16 where it has no bf16); on a CPU bf16 only where it has
    bf16 matrix units *and* bf16 is proven on pictures there (`CPU_AUTO_BF16`); float32 elsewhere."""
    if configured != "auto":
        return PrecisionChoice(configured, "configured")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "bf16: CUDA")
        return PrecisionChoice("fp16", "fp16: CUDA without bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"fp32: {device.type}")
    units = cpu_bf16_units()
    if units is None:
        return PrecisionChoice("fp32", "fp32: CPU has no bf16 units")
    if not CPU_AUTO_BF16:
        return PrecisionChoice("fp32", f"fp32: CPU has {units}, but bf16 changes the pictures here")
    return PrecisionChoice("bf16", f"bf16: CPU has {units}")


def resolve_precision(configured: str, device: torch.device) -> str:
    """The precision alone (see `choose_precision` for the why)."""
    return choose_precision(configured, device).precision


def planned_precision(configured: str, device_name: str) -> PrecisionChoice:
    """The precision a run on `device_name` will use and why; unresolved only where the run cannot start."""
    try:
        return choose_precision(configured, resolve_device(device_name))
    except EnvironmentProblem:
        return PrecisionChoice(configured, "device unavailable")  # the run stops on it before any job
