"""Which precision `auto` picks, why, and what the bf16 path keeps in float32."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

import stylepipe.core.device as device_module
from stylepipe.config.load import load_pipeline
from stylepipe.core.device import choose_precision, cpu_bf16_units
from stylepipe.core.geometry import resize
from stylepipe.core.network import FeatureExtractor, random_weights
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.io.images import load_image
from stylepipe.losses import ContentLoss, StyleLoss
from stylepipe.plan.build import build_plan
from stylepipe.report.record import key_settings
from stylepipe.running.context import tune_for_device

from conftest import sample

CPU = torch.device("cpu")


def _units(monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


def test_torch_is_asked_which_bf16_units_the_cpu_has(monkeypatch: pytest.MonkeyPatch) -> None:
    _units(monkeypatch, amx=True, avx512_bf16=True)
    assert cpu_bf16_units() == "AMX (torch)"
    _units(monkeypatch, amx=False, avx512_bf16=True)
    assert cpu_bf16_units() == "AVX512-BF16 (torch)"
    _units(monkeypatch, amx=False, avx512_bf16=False)
    assert cpu_bf16_units() is None


def test_without_torch_probes_the_cpu_flags_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_units(cpuinfo) == f"AMX ({cpuinfo})"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert cpu_bf16_units(cpuinfo) == f"AVX512-BF16 ({cpuinfo})"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert cpu_bf16_units(cpuinfo) is None
    assert cpu_bf16_units(tmp_path / "absent") is None


def test_auto_on_a_cpu_follows_its_bf16_units_and_the_picture_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    _units(monkeypatch, amx=True, avx512_bf16=True)
    monkeypatch.setattr(device_module, "CPU_AUTO_BF16", True)
    assert choose_precision("auto", CPU) == device_module.PrecisionChoice("bf16", "bf16: CPU has AMX (torch)")
    _units(monkeypatch, amx=False, avx512_bf16=False)
    assert choose_precision("auto", CPU) == device_module.PrecisionChoice("fp32", "fp32: CPU has no bf16 units")
    # units present, but bf16 not proven on pictures here: float32, and the plan says why
    _units(monkeypatch, amx=True, avx512_bf16=True)
    monkeypatch.setattr(device_module, "CPU_AUTO_BF16", False)
    choice = choose_precision("auto", CPU)
    assert choice.precision == "fp32" and "AMX" in choice.reason
    assert choose_precision("bf16", CPU) == device_module.PrecisionChoice("bf16", "configured")
    assert choose_precision("fp32", CPU).precision == "fp32"


def _project(root: Path) -> Path:
    (root / "photos").mkdir(parents=True)
    data = {"content": [str(sample("chelsea"))], "styles": [str(sample("the_scream"))], "size": {"max_side": 32},
            "optimize": {"steps": 1}, "output": {"dir": "out"}, "cache": {"dir": "cache"}}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return root / "pipeline.yaml"


def test_the_plan_and_the_report_say_which_precision_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from stylepipe.cli.app import app

    _units(monkeypatch, amx=True, avx512_bf16=True)
    monkeypatch.setattr(device_module, "CPU_AUTO_BF16", True)
    pipeline = _project(tmp_path)
    plan = build_plan(load_pipeline(pipeline), weights_id="w")
    assert (plan.settings.precision, plan.settings.precision_reason) == ("bf16", "bf16: CPU has AMX (torch)")
    shown = key_settings(plan.settings, [])
    assert (shown["precision"], shown["precision_reason"]) == ("bf16", "bf16: CPU has AMX (torch)")
    result = CliRunner().invoke(app, ["plan", str(pipeline), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["precision"], data["precision_reason"]) == ("bf16", "bf16: CPU has AMX (torch)")
    text = CliRunner().invoke(app, ["plan", str(pipeline)]).stdout
    assert "precision: bf16 (bf16: CPU has AMX (torch))" in text
    # no units: float32, and the resume hash tells the two apart
    _units(monkeypatch, amx=False, avx512_bf16=False)
    plain = build_plan(load_pipeline(pipeline), weights_id="w")
    assert (plain.settings.precision, plain.settings.precision_reason) == ("fp32", "fp32: CPU has no bf16 units")
    assert plain.jobs[0].fingerprint != plan.jobs[0].fingerprint


def test_the_bf16_path_keeps_the_first_block_and_the_losses_in_float32(gatys) -> None:
    content = resize(load_image(sample("coffee")).tensor, (32, 48))[None]
    terms = [ContentLoss(), StyleLoss()]
    style = compute_targets([WeightedImage(load_image(sample("shipwreck")).tensor, 1.0)], gatys, terms,
                            StyleSizing(48, None), CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = gatys(content, ["relu1_1", "relu2_1", "relu4_2"])
    assert features["relu1_1"].dtype == torch.float32  # pixels steps below 1/256 stay visible
    assert features["relu2_1"].dtype == torch.bfloat16 and features["relu4_2"].dtype == torch.bfloat16
    objective = Objective(gatys, terms, content_targets(gatys, terms, content), style, precision="bf16")
    image = content.clone().requires_grad_(True)
    parts = objective.parts(image)
    assert all(value.dtype == torch.float32 for value in parts.values())
    objective.total(parts).sum().backward()
    assert image.grad is not None and image.grad.dtype == torch.float32 and torch.isfinite(image.grad).all()
    fp32 = Objective(gatys, terms, objective.content, style).parts(content)
    assert parts["style"].item() == pytest.approx(fp32["style"].item(), rel=0.05)  # within bf16's 8 bits
    assert fp32["content"].item() == 0 and parts["content"].item() < 1e-3 * parts["style"].item()


def test_bf16_on_the_cpu_runs_channels_last() -> None:
    conv = tune_for_device(FeatureExtractor(random_weights()), CPU, compile_network=False, precision="bf16").trunk.layers[2]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    conv = tune_for_device(FeatureExtractor(random_weights()), CPU, compile_network=False).trunk.layers[2]
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_convolutions_keep_their_cast_weights_and_compute_the_same(gatys) -> None:
    # Autocast would cast every weight anew at each call; the kept bf16 copies must change nothing.
    extractor = tune_for_device(copy.deepcopy(gatys), CPU, compile_network=False, precision="bf16")
    taps = ["relu1_1", "relu3_1", "relu5_1"]
    image = resize(load_image(sample("coffee")).tensor, (40, 56))[None].contiguous()

    def features_and_gradient() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        pixels = image.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = extractor(pixels, taps)
        sum(value.float().pow(2).mean() for value in features.values()).backward()
        assert pixels.grad is not None
        return {name: value.detach() for name, value in features.items()}, pixels.grad

    kept, kept_grad = features_and_gradient()
    assert extractor._cast and all(conv.weight.dtype == torch.bfloat16 for conv in next(iter(extractor._cast.values())).values())
    extractor._cast.clear()
    extractor._cast[(torch.bfloat16, CPU)] = {}  # no kept copies: autocast casts the fp32 weights
    cast, cast_grad = features_and_gradient()
    extractor._cast.clear()
    assert all(torch.equal(kept[name], cast[name]) for name in taps) and torch.equal(kept_grad, cast_grad)
    assert next(extractor.parameters()).dtype == torch.float32  # the network itself stays float32
