"""Which device a run uses and which precision that means, decided once, before planning.

The plan needs the precision for its resume hashes (an output made in bf16 is not the one made
in fp32), the runner needs the device, and every worker must agree with both.
"""

from __future__ import annotations

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


def resolve_precision(configured: str, device: torch.device) -> str:
    """`auto` means bf16 autocast on CUDA (where it is measured faster) and float32 elsewhere."""
    if configured != "auto":
        return configured
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def planned_precision(configured: str, device_name: str) -> str:
    """The precision a run on `device_name` will use; unresolved only where the run cannot start."""
    try:
        return resolve_precision(configured, resolve_device(device_name))
    except EnvironmentProblem:
        return configured  # the run stops on the missing device before any job
