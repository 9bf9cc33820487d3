"""One memory model: batch sizes and tiles both read `core.memory`, per precision."""

from __future__ import annotations

import pytest
import torch

import stylepipe.core.memory as memory
from stylepipe.core.memory import MemoryModel, model_for, network_bytes
from stylepipe.core.optimize import OptimizeSettings
from stylepipe.extend.terms import ContentLoss, StyleLoss
from stylepipe.running.budget import bytes_per_image, plan_memory
from stylepipe.running.context import resolve_batch_size

LBFGS = OptimizeSettings(steps=100)


def test_batch_size_and_tiles_both_follow_the_one_memory_model(gatys, monkeypatch: pytest.MonkeyPatch) -> None:
    terms = [ContentLoss(), StyleLoss()]
    settings = type("S", (), {"size_max_side": 1024, "size_max_pixels": None, "optimize": LBFGS, "precision": "fp32"})()
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (64 << 30, 80 << 30))
    cuda = torch.device("cuda")
    budget = bytes_per_image(gatys, terms, (1024, 1024), LBFGS)  # exactly one untiled picture fits
    assert plan_memory(gatys, terms, (1024, 1024), 1, LBFGS, "auto", budget).tiling is None
    batch = resolve_batch_size("auto", cuda, settings, gatys, terms)  # type: ignore[arg-type]

    # the network pass now needs twice the bytes per value: fewer pictures a batch, and tiles
    monkeypatch.setitem(memory.MODELS, ("cpu", "fp32"), MemoryModel(whole=10.0, tiled=14.0))
    assert bytes_per_image(gatys, terms, (1024, 1024), LBFGS) > budget
    assert resolve_batch_size("auto", cuda, settings, gatys, terms) < batch  # type: ignore[arg-type]
    assert plan_memory(gatys, terms, (1024, 1024), 1, LBFGS, "auto", budget).tiling is not None


def test_the_model_is_per_precision_and_device() -> None:
    assert model_for("cpu", "fp16") == model_for("cpu", "bf16")
    assert model_for("cuda", "fp32") == model_for("cpu", "fp32")  # CUDA unmeasured: the CPU's numbers
    assert network_bytes(1000, "bf16") < network_bytes(1000, "fp32")  # bf16 activations, float32 block 1 and losses
    assert network_bytes(1000, tiled=True) > network_bytes(1000)


def test_bf16_plans_less_memory_for_the_same_picture(gatys) -> None:
    terms = [ContentLoss(), StyleLoss()]
    fp32 = plan_memory(gatys, terms, (512, 512), 1, LBFGS, "off", 1 << 40).estimate
    bf16 = plan_memory(gatys, terms, (512, 512), 1, LBFGS, "off", 1 << 40, precision="bf16").estimate
    assert bf16 < fp32
