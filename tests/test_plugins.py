"""The two example plugins shipped in plugins/, loaded the way a user's pipeline loads them.

mean_std is checked against a direct torch computation; folder against an explicit equal-weight
blend. Then one real end-to-end run (the real vgg19-gatys network, 48 px, 5 steps) and the CLI.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.config.load import load_pipeline
from stylepipe.core.errors import ConfigError
from stylepipe.core.network import FeatureExtractor, random_weights
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.plugins import load_plugin_folders
from stylepipe.extend.registries import LOSSES, STYLE_SOURCES, register_builtins
from stylepipe.extend.sources import StyleContext
from stylepipe.extend.terms import StyleLoss
from stylepipe.io.hashing import sha256_file
from stylepipe.io.images import load_image
from stylepipe.running.runner import make_plan, run_pipeline
from stylepipe.targets.frames import decode_tensors, encode_tensors

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
SAMPLES = ROOT / "samples"
DEFAULT_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore LOSSES / STYLE_SOURCES after each test and forget the imported plugin modules."""
    registries = (LOSSES, STYLE_SOURCES)
    saved = [(registry, registry.snapshot(), registry._entry_points_loaded) for registry in registries]
    modules_before = set(sys.modules)
    real = importlib.metadata.entry_points

    def entry_points(**params):  # no installed stylepipe plugins; torch & co. see the real ones
        group = params.get("group")
        if isinstance(group, str) and group.startswith("stylepipe."):
            return importlib.metadata.EntryPoints(())
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    for registry in registries:
        registry._entry_points_loaded = False
    yield
    for registry, snapshot, loaded in saved:
        registry.restore(snapshot)
        registry._entry_points_loaded = loaded
    for name in set(sys.modules) - modules_before:
        if name.startswith("stylepipe_plugins."):
            del sys.modules[name]


@pytest.fixture()
def plugins() -> SimpleNamespace:
    """The shipped plugin folder, loaded through the registry like `plugins: [plugins/]` does."""
    register_builtins()
    loaded = load_plugin_folders([PLUGINS])
    assert [path.name for path in loaded] == ["folder_style.py", "mean_std_loss.py"]
    return SimpleNamespace(MeanStd=LOSSES.get("mean_std"), Folder=STYLE_SOURCES.get("folder"))


@pytest.fixture(scope="module")
def tiny_net() -> FeatureExtractor:
    return FeatureExtractor(random_weights(0))


def direct_mean_std(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) → per-channel mean and std over H×W, with AdaIN's 1e-5 under the root."""
    mean = features.mean(dim=(2, 3))
    std = torch.sqrt(features.var(dim=(2, 3), unbiased=False) + 1e-5)
    return mean, std


def random_features(batch: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"relu1_1": (4, 6, 5), "relu2_1": (3, 4, 3), "relu3_1": (5, 3, 2), "relu4_1": (2, 2, 2)}
    return {
        layer: torch.rand(batch, c, h, w, generator=generator) * (1 + i) + i
        for i, (layer, (c, h, w)) in enumerate(shapes.items())
    }


# --- mean_std ------------------------------------------------------------------------------------


def test_mean_std_params_defaults_and_validation(plugins: SimpleNamespace) -> None:
    term = plugins.MeanStd()
    assert (term.name, term.side, term.weight, list(term.layers)) == ("mean_std", "style", 100.0, DEFAULT_LAYERS)
    assert plugins.MeanStd(plugins.MeanStd.Params(weight=3, layers=["relu2_1"])).weight == 3.0
    with pytest.raises(ValidationError, match="unknown VGG19 layer"):
        plugins.MeanStd.Params(layers=["relu9_9"])
    with pytest.raises(ValidationError, match="at least one layer"):
        plugins.MeanStd.Params(layers=[])
    with pytest.raises(ValidationError, match="layerz"):
        plugins.MeanStd.Params(layerz=["relu1_1"])
    with pytest.raises(ValidationError):
        plugins.MeanStd.Params(weight=-1)


def test_mean_std_targets_are_the_style_features_channel_statistics(plugins: SimpleNamespace) -> None:
    features = random_features(1, seed=0)
    targets = plugins.MeanStd().style_targets(features)

    assert sorted(targets) == sorted(f"{layer}.{stat}" for layer in DEFAULT_LAYERS for stat in ("mean", "std"))
    for layer in DEFAULT_LAYERS:
        mean, std = direct_mean_std(features[layer])
        channels = features[layer].shape[1]
        assert targets[f"{layer}.mean"].shape == targets[f"{layer}.std"].shape == (channels,)
        torch.testing.assert_close(targets[f"{layer}.mean"], mean[0])
        torch.testing.assert_close(targets[f"{layer}.std"], std[0])
        # It is the ordinary (population) standard deviation, up to the tiny epsilon.
        torch.testing.assert_close(targets[f"{layer}.std"], features[layer][0].flatten(1).std(dim=1, unbiased=False), atol=1e-4, rtol=0)


def test_mean_std_targets_are_plain_cacheable_tensors(plugins: SimpleNamespace) -> None:
    features = {layer: value.requires_grad_(True) for layer, value in random_features(1, seed=1).items()}
    targets = plugins.MeanStd().style_targets(features)
    assert all(isinstance(value, torch.Tensor) and not value.requires_grad for value in targets.values())
    restored = decode_tensors(encode_tensors(targets))
    assert restored.keys() == targets.keys()
    for key, value in targets.items():
        torch.testing.assert_close(restored[key], value)


def test_mean_std_fingerprint_follows_layers_not_weight(plugins: SimpleNamespace) -> None:
    Params = plugins.MeanStd.Params
    base = plugins.MeanStd().fingerprint()
    assert base["term"] == "mean_std"
    assert plugins.MeanStd(Params(weight=5)).fingerprint() == base
    assert plugins.MeanStd(Params(layers=["relu1_1"])).fingerprint() != base


def test_mean_std_loss_matches_a_direct_computation(plugins: SimpleNamespace) -> None:
    term = plugins.MeanStd()
    style = term.style_targets(random_features(1, seed=2))
    features = random_features(3, seed=3)

    loss = term.loss(torch.zeros(3, 3, 8, 8), features, {}, style)

    expected = torch.zeros(3)
    for b in range(3):
        per_layer = []
        for layer in DEFAULT_LAYERS:
            mean, std = direct_mean_std(features[layer][b : b + 1])
            mse_mean = ((mean[0] - style[f"{layer}.mean"]) ** 2).mean()
            mse_std = ((std[0] - style[f"{layer}.std"]) ** 2).mean()
            per_layer.append(mse_mean + mse_std)
        expected[b] = sum(per_layer) / len(per_layer)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, expected)
    assert bool((loss > 0).all())


def test_mean_std_loss_is_zero_on_the_style_itself(plugins: SimpleNamespace) -> None:
    term = plugins.MeanStd()
    features = random_features(1, seed=4)
    style = term.style_targets(features)
    batch = {layer: value.expand(2, -1, -1, -1) for layer, value in features.items()}
    loss = term.loss(torch.zeros(2, 3, 8, 8), batch, {}, style)
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, torch.zeros(2), atol=1e-10, rtol=0)


def test_mean_std_loss_treats_each_image_of_a_batch_on_its_own(plugins: SimpleNamespace) -> None:
    term = plugins.MeanStd(plugins.MeanStd.Params(layers=["relu1_1", "relu3_1"]))
    style = term.style_targets(random_features(1, seed=5))
    features = {layer: value.requires_grad_(True) for layer, value in random_features(3, seed=6).items()}
    image = torch.zeros(3, 3, 8, 8)

    batched = term.loss(image, features, {}, style)
    for b in range(3):
        alone = term.loss(image[b : b + 1], {k: v[b : b + 1] for k, v in features.items()}, {}, style)
        torch.testing.assert_close(batched[b : b + 1], alone)

    # Image 1's loss has no gradient with respect to images 0 and 2.
    batched[1].backward()
    for layer in ("relu1_1", "relu3_1"):
        grad = features[layer].grad
        assert grad[1].abs().sum() > 0
        assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_mean_std_gradient_is_finite_on_a_dead_channel(plugins: SimpleNamespace) -> None:
    term = plugins.MeanStd(plugins.MeanStd.Params(layers=["relu1_1"]))
    style = term.style_targets({"relu1_1": torch.rand(1, 4, 5, 5) + 0.5})
    dead = torch.zeros(1, 4, 5, 5, requires_grad=True)  # a ReLU channel that never fires
    term.loss(torch.zeros(1, 3, 5, 5), {"relu1_1": dead}, {}, style).sum().backward()
    assert torch.isfinite(dead.grad).all()


# --- folder --------------------------------------------------------------------------------------


def save_picture(path: Path, height: int, width: int, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def context_for(base: Path) -> StyleContext:
    return StyleContext(base, lambda path: load_image(path), sha256_file)


@pytest.fixture()
def art(tmp_path: Path) -> Path:
    """A folder of three small pictures plus things that are not pictures of the style."""
    folder = tmp_path / "art"
    folder.mkdir()
    save_picture(folder / "b.png", 40, 30, seed=1)
    save_picture(folder / "a.jpg", 32, 44, seed=2)
    save_picture(folder / "C.PNG", 36, 36, seed=3)
    (folder / "notes.txt").write_text("not a picture")
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork, not a JPEG")
    (folder / "sub").mkdir()
    save_picture(folder / "sub" / "deeper.png", 20, 20, seed=4)
    return folder


def test_folder_lists_its_pictures_sorted_with_the_folder_as_label(plugins: SimpleNamespace, art: Path) -> None:
    source = plugins.Folder(plugins.Folder.Params(path="art"), context_for(art.parent))
    assert source.files() == [art / "C.PNG", art / "a.jpg", art / "b.png"]
    assert source.label == "art"
    assert plugins.Folder(plugins.Folder.Params(path="art/"), context_for(art.parent), "monet").label == "monet"
    fingerprint = source.fingerprint()
    assert fingerprint["source"] == "folder"
    assert fingerprint["files"] == [sha256_file(path) for path in source.files()]


def test_folder_order_is_by_name_whatever_the_directory_order(plugins: SimpleNamespace, tmp_path: Path) -> None:
    names = [f"{stem}.png" for stem in "qdxmbkzaht"]  # created shuffled; files() never reads them
    (tmp_path / "many").mkdir()
    for name in names:
        (tmp_path / "many" / name).touch()
    source = plugins.Folder(plugins.Folder.Params(path="many"), context_for(tmp_path))
    assert [path.name for path in source.files()] == sorted(names)


def test_folder_images_are_equally_weighted_and_tiled_on_request(plugins: SimpleNamespace, art: Path) -> None:
    pictures = plugins.Folder(plugins.Folder.Params(path=str(art)), context_for(Path("/nonexistent"))).images()
    assert [p.weight for p in pictures] == [pytest.approx(1 / 3)] * 3
    for picture, name in zip(pictures, ["C.PNG", "a.jpg", "b.png"]):
        torch.testing.assert_close(picture.image, load_image(art / name).tensor)

    tiled = plugins.Folder(plugins.Folder.Params(path="art", grid=2), context_for(art.parent)).images()
    assert [p.size for p in tiled] == [(72, 72), (64, 88), (80, 60)] and {p.grid for p in tiled} == {2}
    assert [tuple(p.image.shape) for p in tiled] == [(3, 36, 36), (3, 32, 44), (3, 40, 30)]  # tiled only once resized
    with pytest.raises(ValidationError):
        plugins.Folder.Params(path="art", grid=0)


def test_folder_targets_are_the_equal_weight_blend_of_its_pictures(
    plugins: SimpleNamespace, art: Path, tiny_net: FeatureExtractor
) -> None:
    source = plugins.Folder(plugins.Folder.Params(path="art"), context_for(art.parent))
    terms = [StyleLoss(), plugins.MeanStd()]
    sizing = StyleSizing(40, None)

    blended = compute_targets(source.images(), tiny_net, terms, sizing, CPU)

    singles = [
        compute_targets([WeightedImage(load_image(path).tensor, 1.0)], tiny_net, terms, sizing, CPU)
        for path in sorted(p for p in art.iterdir() if p.suffix.lower() in (".png", ".jpg") and not p.name.startswith("."))
    ]
    assert len(singles) == 3
    assert set(blended) == {"style", "mean_std"}
    for term, tensors in blended.items():
        assert tensors.keys() == singles[0][term].keys()
        for key, value in tensors.items():
            expected = sum(single[term][key] for single in singles) / 3
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
            # …and the pictures really differ, so leaving one out would show.
            assert not torch.allclose(singles[0][term][key], singles[1][term][key])


def test_an_empty_folder_is_a_config_error_naming_it(plugins: SimpleNamespace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("pictures go here")
    source = plugins.Folder(plugins.Folder.Params(path="empty"), context_for(tmp_path))
    with pytest.raises(ConfigError, match=r"style folder has no pictures \(\.jpg, \.png") as info:
        source.files()
    assert str(info.value).startswith(f"{empty}: ")
    with pytest.raises(ConfigError, match=r"style folder not found"):
        plugins.Folder(plugins.Folder.Params(path="missing"), context_for(tmp_path)).files()


def test_an_empty_folder_stops_the_plan_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    shutil.copy(SAMPLES / "content" / "chelsea.jpg", tmp_path / "chelsea.jpg")
    (tmp_path / "pipeline.yaml").write_text(f"content: chelsea.jpg\nstyles:\n  - source: folder\n    path: empty\nplugins: [{PLUGINS}]\n")
    with pytest.raises(ConfigError) as info:
        make_plan(load_pipeline(tmp_path / "pipeline.yaml"))
    assert exit_code_for(info.value) == 2
    assert str(info.value).startswith(f"{tmp_path / 'pipeline.yaml'}:3:5: styles.0: {tmp_path / 'empty'}: style folder has no pictures")


# --- end to end ----------------------------------------------------------------------------------


def write_pipeline(tmp_path: Path, extra: str = "- name: mean_std\n      weight: 100") -> Path:
    """chelsea × a `folder` style of two sample paintings, tiny and short, with the plugins."""
    shutil.copy(SAMPLES / "content" / "chelsea.jpg", tmp_path / "chelsea.jpg")
    (tmp_path / "painters").mkdir(exist_ok=True)
    for name in ("starry_night.jpg", "the_scream.jpg"):
        shutil.copy(SAMPLES / "styles" / name, tmp_path / "painters" / name)
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""\
content: [chelsea.jpg]
styles:
  - source: folder
    path: painters
plugins: [{PLUGINS}]
losses:
  extra:
    {extra}
size: {{max_side: 48}}
optimize: {{steps: 5}}
cache: {{dir: {tmp_path / "cache"}}}
"""
    )
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("stylepipe")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "stylepipe"]
    # rich sizes tables to 80 columns when stdout is not a terminal and cuts long origins with
    # "…"; a wide COLUMNS keeps this test independent of where the repository lives.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(command + list(args), cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_end_to_end_run_with_both_plugins(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path)

    report = run_pipeline(load_pipeline(pipeline))

    (item,) = report.items
    assert item.status == "done", item.error
    assert item.style == "painters"
    assert item.loss is not None and item.loss["mean_std"] > 0 and np.isfinite(item.loss["mean_std"])
    assert item.loss["style"] is not None
    output = Path(item.output)
    assert output == tmp_path / "outputs" / "chelsea__painters.jpg" and output.is_file()
    assert max(Image.open(output).size) == 48
    assert report.targets_computed == 1
    saved = json.loads((tmp_path / "outputs" / "report.json").read_text())
    assert saved["items"][0]["loss"]["mean_std"] == pytest.approx(item.loss["mean_std"])

    # The folder's pictures are part of the output's hash: unchanged → skipped, a new one → redo.
    assert [i.status for i in run_pipeline(load_pipeline(pipeline)).items] == ["skipped"]
    shutil.copy(SAMPLES / "styles" / "shipwreck.jpg", tmp_path / "painters" / "shipwreck.jpg")
    plan = make_plan(load_pipeline(pipeline))
    assert len(plan.todo) == 1 and len(plan.jobs[0].style.files()) == 3


def test_cli_plugins_list_shows_the_plugin_files_as_origin(tmp_path: Path) -> None:
    result = cli("plugins", "list", str(write_pipeline(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["loss", "term", "mean_std", str(PLUGINS / "mean_std_loss.py")] in rows
    assert ["style", "source", "folder", str(PLUGINS / "folder_style.py")] in rows
    assert ["loss", "term", "style", "built-in"] in rows


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_validate_names_an_unknown_plugin_loss_and_its_line(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, extra="- name: nosuch")
    result = cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = _error_lines(result)
    row = _line_of(pipeline, "name: nosuch")
    assert line.startswith(f"error: pipeline.yaml:{row}:13: losses.extra.0.name: unknown loss term 'nosuch'")
    assert "available: content, mean_std, style, tv" in line


def test_validate_names_a_wrong_plugin_parameter_and_its_line(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, extra="- name: mean_std\n      layerz: [relu1_1]")
    result = cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = _error_lines(result)
    row = _line_of(pipeline, "layerz:")
    assert line == f"error: pipeline.yaml:{row}:7: losses.extra.0.layerz: Extra inputs are not permitted (did you mean `layers`?)"
