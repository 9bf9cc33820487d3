"""`benchmarks/gpu.py --tiny` on the CPU, so the GPU benchmark never rots before its one GPU run."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT


@pytest.fixture()
def gpu_benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package, as `python -m benchmarks.gpu` finds it
    from benchmarks import gpu

    yield gpu


def test_tiny_run_writes_every_field(gpu_benchmark, tmp_path):
    payload = gpu_benchmark.main(["--tiny", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(payload["rows"]))
    assert saved["mode"] == "tiny" and saved["settings"]["size"] == 64 and saved["skipped"] == []
    names = [row["name"] for row in saved["rows"]]
    assert names == ["torch.optim.LBFGS fp32 ×1", "stylepipe fp32 ×1 (auto)", "stylepipe fp32 ×2"]
    flops = gpu_benchmark.vgg_step_flops(64, 64)
    assert 5e9 < flops < 6.5e9  # VGG19 to relu5_1 at 64², forward + backward: 1/64 of the 379 GFLOP at 512²
    for row in saved["rows"]:
        assert row["status"] == "ok" and row["reason"] is None and row["step_s"] > 0
        assert row["images_per_hour"] == pytest.approx(3600 * row["batch"] / (row["step_s"] * 500))
        assert row["tflops"] * 1e12 * row["step_s"] / row["batch"] == pytest.approx(flops)
        assert row["pct_of_bf16_peak"] == pytest.approx(100 * row["tflops"] / 989)
        assert (row["speedup_vs_baseline"] is None) == (row["solver"] == "torch.optim.LBFGS")
        assert row["peak_memory_gib"] is None  # the CPU has no allocator counter
    markdown = (tmp_path / "gpu.md").read_text()
    assert "stylepipe fp32 ×2" in markdown and "extrapolated" in markdown and "≥ 5000 images/h" in markdown


def test_a_spent_budget_skips_and_lists_the_rest(gpu_benchmark, tmp_path):
    out = tmp_path / "result.json"
    gpu_benchmark.main(["--tiny", "--out", str(out), "--budget-s", "0", "--precisions", "bf16,fp32"])
    saved = json.loads(out.read_text())
    assert [row["status"] for row in saved["rows"]] == ["skipped"] * 5
    assert saved["skipped"] == [row["name"] for row in saved["rows"]] and "budget" in saved["rows"][0]["reason"]
    assert out.with_suffix(".md").exists()


def test_a_compiler_failure_still_reports_uncompiled_numbers(gpu_benchmark, tmp_path, monkeypatch):
    def broken(function, **_):
        def compiled(*args):
            raise RuntimeError("no C++ compiler found")
        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    payload = gpu_benchmark.main(["--tiny", "--out", str(tmp_path), "--compile", "on", "--batches", "1"])
    compiled = [row for row in payload["rows"] if row["compiled"]]
    assert [row["name"] for row in compiled] == ["stylepipe fp32 ×1 (auto) compiled"]
    assert compiled[0]["status"] == "ok (compile failed: ran uncompiled)" and "no C++ compiler" in compiled[0]["reason"]
    assert compiled[0]["step_s"] > 0
