"""The device path without a device: compiled forward, auto batch size, Ray batching."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from stylepipe.core.geometry import resize
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, optimize
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.terms import ContentLoss, StyleLoss, StyleParams
from stylepipe.io.images import load_image

from conftest import sample

CPU = torch.device("cpu")


@pytest.fixture()
def small_problem(gatys):
    """A 32 px content photo and a two-layer objective on the real network."""
    content = resize(load_image(sample("chelsea")).tensor, (32, 32))[None]
    terms = [ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1"]))]
    style = compute_targets([WeightedImage(load_image(sample("shipwreck")).tensor, 1.0)], gatys, terms, StyleSizing(32, None), CPU)
    return content, Objective(gatys, terms, content_targets(gatys, terms, content), style)


@pytest.fixture()
def fresh_extractor(gatys):
    """The session network, with compile state restored afterwards."""
    yield gatys
    gatys._compiled, gatys.compile_error = None, None


def test_the_compiled_callable_is_the_one_every_step_calls(fresh_extractor, small_problem, monkeypatch):
    calls: list[tuple] = []

    def fake_compile(function, **_):
        def compiled(*args):
            calls.append(args[1:])
            return function(*args)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    content, objective = small_problem
    eager = optimize(content, objective, OptimizeSettings(steps=3)).image
    fresh_extractor.compile_forward()
    compiled = optimize(content, objective, OptimizeSettings(steps=3)).image
    assert len(calls) == 3 and calls[0] == (("relu1_1", "relu2_1", "relu4_2"), 22)  # taps, index of the last
    assert torch.equal(compiled, eager)


def test_a_compile_failure_in_the_forward_falls_back_to_eager(fresh_extractor, small_problem, monkeypatch, caplog):
    def broken_compile(function, **_):
        def compiled(*args):
            raise RuntimeError("inductor: no working C++ compiler\nlong trace")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    content, objective = small_problem
    eager = optimize(content, objective, OptimizeSettings(steps=3)).image
    fresh_extractor.compile_forward()
    result = optimize(content, objective, OptimizeSettings(steps=3)).image
    assert torch.equal(result, eager)
    assert not fresh_extractor.compiled and fresh_extractor.compile_error == "RuntimeError: inductor: no working C++ compiler"
    assert "running the network uncompiled" in caplog.text


class _FailingBackward(torch.autograd.Function):
    """Identity forward whose backward fails, as a backward graph that will not compile does."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backend compiler failed in the backward graph")


def test_a_compile_failure_in_the_backward_falls_back_and_redoes_the_pass(fresh_extractor, small_problem, monkeypatch):
    def backward_breaks(function, **_):
        def compiled(*args):
            return {name: _FailingBackward.apply(value) for name, value in function(*args).items()}
        return compiled

    monkeypatch.setattr(torch, "compile", backward_breaks)
    content, objective = small_problem
    eager = optimize(content, objective, OptimizeSettings(steps=3))
    fresh_extractor.compile_forward()
    result = optimize(content, objective, OptimizeSettings(steps=3))
    assert torch.equal(result.image, eager.image) and result.steps == 3
    assert "backward graph" in fresh_extractor.compile_error


def test_torch_compile_traces_the_tapped_forward(fresh_extractor, small_problem):
    """Real dynamo + AOTAutograd (the inductor backend needs minutes of C++ compiling on a CPU)."""
    content, objective = small_problem
    eager = optimize(content, objective, OptimizeSettings(steps=3))
    fresh_extractor._compiled = torch.compile(fresh_extractor._run, backend="aot_eager")
    compiled = optimize(content, objective, OptimizeSettings(steps=3))
    assert fresh_extractor.compiled and fresh_extractor.compile_error is None
    assert torch.allclose(compiled.image, eager.image, atol=1e-5)


def test_auto_batch_size_counts_the_lbfgs_history(monkeypatch, gatys):
    from stylepipe.running.budget import bytes_per_image
    from stylepipe.running.context import auto_batch_size

    terms = [ContentLoss(), StyleLoss()]
    lbfgs, adam = OptimizeSettings(steps=500), OptimizeSettings("adam", steps=500)
    history = 2 * 50 * 3 * 4  # bytes per pixel: s and y, 50 pairs, 3 channels, float32
    per_image = bytes_per_image(gatys, terms, (512, 512), lbfgs)
    assert per_image - bytes_per_image(gatys, terms, (512, 512), adam) >= history * 512 * 512
    assert bytes_per_image(gatys, terms, (64, 64), OptimizeSettings(steps=5)) < bytes_per_image(gatys, terms, (64, 64), lbfgs)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 << 30, 80 << 30))
    batch = auto_batch_size(torch.device("cuda"), per_image)
    assert batch == int((40 << 30) // per_image) and 25 <= batch <= 40


def _context(batch_size, resolved):
    return SimpleNamespace(settings=SimpleNamespace(batch_size=batch_size), batch_size=resolved)


def test_ray_batches_like_the_local_executor():
    from stylepipe.running.executors.ray import AUTO_GPU_JOBS_PER_CALL, jobs_per_call

    assert jobs_per_call(_context(4, 4), use_gpu=True, jobs=100, workers=2) == 8  # two device batches, as local
    assert jobs_per_call(_context("auto", 1), use_gpu=True, jobs=1000, workers=4) == AUTO_GPU_JOBS_PER_CALL
    assert jobs_per_call(_context("auto", 1), use_gpu=True, jobs=40, workers=4) == 10  # every worker busy
    assert jobs_per_call(_context("auto", 1), use_gpu=False, jobs=100, workers=2) == 1  # CPU: one image per batch
    assert jobs_per_call(_context(1, 1), use_gpu=True, jobs=100, workers=2) == 1  # a lost call costs one job only
