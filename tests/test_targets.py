"""Style sources and their targets: tiling, blending, cache keys and the compute-once store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stylepipe.core.geometry import tile
from stylepipe.core.network import FeatureExtractor, random_weights
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets, flatten, unflatten
from stylepipe.extend.sources import (
    BlendParams,
    BlendSource,
    ImageParams,
    ImageSource,
    StyleContext,
    TiledParams,
    TiledSource,
)
from stylepipe.extend.terms import ContentLoss, StyleLoss, StyleParams
from stylepipe.io.hashing import sha256_file
from stylepipe.io.images import load_image
from stylepipe.targets.cache import TargetCache
from stylepipe.targets.keys import target_key
from stylepipe.targets.store import TargetStore

from conftest import sample

CPU = torch.device("cpu")
SIZING = StyleSizing(48, None)
TERMS = [ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1", "relu3_1"]))]


@pytest.fixture(scope="module")
def net() -> FeatureExtractor:
    return FeatureExtractor(random_weights(0), "avg")


def _context(base: Path) -> StyleContext:
    return StyleContext(base, lambda p: load_image(p), sha256_file)


def test_tiling_repeats_the_picture():
    picture = load_image(sample("starry_night")).tensor
    tiled = tile(picture, 3)
    h, w = picture.shape[1:]
    assert tiled.shape == (3, 3 * h, 3 * w)
    assert torch.equal(tiled[:, h : 2 * h, 2 * w :], picture)


def test_targets_are_grams_of_the_resized_style(net):
    picture = load_image(sample("the_scream")).tensor
    targets = compute_targets([WeightedImage(picture, 1.0)], net, TERMS, SIZING, CPU)
    assert set(targets) == {"style"}  # content terms have no style targets
    assert set(targets["style"]) == {"relu1_1", "relu2_1", "relu3_1"}
    assert targets["style"]["relu2_1"].shape == (128, 128)
    assert torch.allclose(targets["style"]["relu1_1"], targets["style"]["relu1_1"].T, atol=1e-6)


def test_blend_is_the_weighted_mean_of_targets(net, tmp_path):
    a, b = sample("the_scream"), sample("shipwreck")
    source = BlendSource(BlendParams(styles=[{"path": str(a), "weight": 3}, {"path": str(b), "weight": 1}]), _context(tmp_path))
    blended = compute_targets(source.images(), net, TERMS, SIZING, CPU)
    ta = compute_targets([WeightedImage(load_image(a).tensor, 1.0)], net, TERMS, SIZING, CPU)
    tb = compute_targets([WeightedImage(load_image(b).tensor, 1.0)], net, TERMS, SIZING, CPU)
    for layer in ("relu1_1", "relu3_1"):
        assert torch.allclose(blended["style"][layer], 0.75 * ta["style"][layer] + 0.25 * tb["style"][layer], atol=1e-6)
    assert source.label == "the_scream+shipwreck"


def test_tiled_source_changes_the_texture_scale(net, tmp_path):
    path = sample("chelsea")
    plain = compute_targets(ImageSource(ImageParams(path=str(path)), _context(tmp_path)).images(), net, TERMS, SIZING, CPU)
    tiled_source = TiledSource(TiledParams(path=str(path), grid=3), _context(tmp_path))
    tiled = compute_targets(tiled_source.images(), net, TERMS, SIZING, CPU)
    assert tiled_source.label == "chelsea-tiled3"
    assert not torch.allclose(plain["style"]["relu3_1"], tiled["style"]["relu3_1"], rtol=0.05)


def test_tiles_are_made_at_the_style_size_not_at_full_resolution(net, tmp_path, monkeypatch):
    """grid 16 on a 12 MP photo tiled first would be ~37 GB of float32: tile after resizing."""
    from PIL import Image

    import stylepipe.core.target_fns as targets_module

    path = tmp_path / "cat.png"  # small, so that the full-size reference below stays cheap
    Image.open(sample("chelsea")).convert("RGB").resize((96, 64)).save(path)
    source = TiledSource(TiledParams(path=str(path), grid=16), _context(tmp_path))
    picture = load_image(path).tensor
    (weighted,) = source.images()
    assert weighted.image.shape == picture.shape and weighted.size == (16 * picture.shape[1], 16 * picture.shape[2])
    tiled_shapes = []
    monkeypatch.setattr(targets_module, "tile", lambda image, grid: tiled_shapes.append(tuple(image.shape)) or tile(image, grid))
    targets = compute_targets([weighted], net, TERMS, SIZING, CPU)
    assert tiled_shapes and max(tiled_shapes[0]) <= SIZING.max_side // 16 + 1  # one small tile, repeated
    reference = compute_targets([WeightedImage(tile(load_image(path).tensor, 16), 1.0)], net, TERMS, SIZING, CPU)
    for layer in ("relu1_1", "relu2_1"):  # the same texture, up to resampling at the tiles' seams
        assert torch.allclose(targets["style"][layer], reference["style"][layer], rtol=0.1, atol=1e-3)


def test_style_detail_resamples_only_a_picture_taken_near_its_file_size(net):
    """`size.style_detail`: a small style file's pixel noise is not brushwork. Taken at no more than
    `detail` × its file size, a picture is resized as always (the same targets, bit for bit); taken
    larger, it is resampled through that size first, so its finest detail and its statistics change."""
    from stylepipe.core.loss_fns import tv_loss

    style = load_image(sample("starry_night")).tensor  # the file is 512 × 320 px
    sharp, soft = StyleSizing(512, None), StyleSizing(512, None, 0.75)
    assert torch.equal(sharp.resample(style, (320, 512)), style)
    softened = soft.resample(style, (320, 512))
    assert softened.shape == style.shape
    assert tv_loss(softened[None]).item() < 0.6 * tv_loss(style[None]).item()  # measured: 0.33 ×

    def targets(sizing: StyleSizing) -> dict[str, torch.Tensor]:
        return compute_targets([WeightedImage(style, 1.0)], net, TERMS, sizing, CPU)["style"]

    at_half = targets(StyleSizing(256, None)), targets(StyleSizing(256, None, 0.75))  # 256 px ≤ 0.75 × 512
    assert all(torch.equal(at_half[0][k], at_half[1][k]) for k in at_half[0])
    full = targets(sharp), targets(soft)
    assert all(not torch.equal(full[0][k], full[1][k]) for k in full[0])


def test_flatten_round_trip():
    targets = {"style": {"relu1_1": torch.ones(2, 2)}, "mean_std": {"relu1_1.mean": torch.zeros(3)}}
    again = unflatten(flatten(targets))
    assert again.keys() == targets.keys() and torch.equal(again["style"]["relu1_1"], torch.ones(2, 2))


def test_cache_key_follows_everything_that_changes_targets(net, tmp_path):
    style_file = tmp_path / "style.jpg"
    shutil.copy(sample("shipwreck"), style_file)
    ctx = _context(tmp_path)
    fp = net.fingerprint()

    def key(params=None, terms=TERMS, sizing=SIZING, network=fp):
        return target_key(ImageSource(params or ImageParams(path="style.jpg"), ctx), network, terms, sizing)

    base = key()
    assert base.startswith("gram/v1/") and base == key()
    assert key(terms=[ContentLoss(), StyleLoss(StyleParams(layers=["relu1_1", "relu2_1", "relu3_1"], weight=5))]) == base
    assert key(terms=[StyleLoss(StyleParams(layers=["relu1_1"]))]) != base
    assert key(sizing=StyleSizing(64, None)) != base
    assert key(sizing=StyleSizing(48, None, 1.0)) == base  # every pixel: the key of earlier versions
    assert key(sizing=StyleSizing(48, None, 0.75)) != base  # size.style_detail changes the targets
    assert key(network=dict(fp, pooling="max")) != base
    assert key(network=dict(fp, weights_sha256="other")) != base
    tiled = target_key(TiledSource(TiledParams(path="style.jpg", grid=2), ctx), fp, TERMS, SIZING)
    assert tiled != base
    shutil.copy(sample("starry_night"), style_file)  # same name, new bytes
    assert key() != base


def test_store_computes_each_style_once_and_reuses_the_disk_cache(net, tmp_path):
    source = ImageSource(ImageParams(path=str(sample("the_scream"))), _context(tmp_path))
    with TargetCache(tmp_path / "cache") as cache:
        store = TargetStore(cache, net, TERMS, SIZING, CPU)
        first = store.get(source)
        second = store.get(source)
        assert (store.computed, store.cache_hits) == (1, 1)
    with TargetCache(tmp_path / "cache") as cache:  # a later run, a new process's view
        store = TargetStore(cache, net, TERMS, SIZING, CPU)
        third = store.get(source)
        assert (store.computed, store.cache_hits) == (0, 1)
        assert cache.stats.disk_hits == 1
    for layer in first["style"]:
        assert torch.equal(first["style"][layer], second["style"][layer])
        assert torch.equal(first["style"][layer], third["style"][layer])
