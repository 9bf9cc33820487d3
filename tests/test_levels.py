"""The same painting at every size: the composition painted small, refined level by level, each
level's style targets taken from the style picture at that level's size (docs/sizes.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import stylepipe
from stylepipe.core.levels import COMPOSITION_SIDE, Level, Refine, composition_side, plan_levels
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets, unflatten
from stylepipe.io.images import load_image
from stylepipe.targets.cache import TargetCache

from conftest import sample


def test_an_output_about_the_composition_size_is_one_level() -> None:
    assert plan_levels(256) == [Level(256, 1.0, None)]
    assert plan_levels(300) == [Level(300, 1.0, None)]
    assert plan_levels(2048, refine=None) == [Level(2048, 1.0, None)]


def test_larger_outputs_are_painted_small_and_refined_by_the_factor() -> None:
    levels = plan_levels(2048)
    assert [level.side for level in levels] == [256, 512, 1024, 2048]
    assert [level.steps for level in levels] == [None, *Refine().steps[:3]]
    assert levels[0].is_composition and levels[-1].scale == 1.0
    assert [level.side for level in plan_levels(768)] == [256, 512, 768]  # the last step may be smaller
    assert [level.side for level in plan_levels(600)] == [256, 600]  # never a level just below the output
    sqrt2 = [level.side for level in plan_levels(1024, refine=Refine(factor=2 ** 0.5, steps=(10,)))]
    assert sqrt2 == [256, 362, 512, 724, 1024]


def test_the_stroke_knob_changes_the_composition_size_and_nothing_else() -> None:
    assert composition_side(1.0) == COMPOSITION_SIDE
    normal, coarse, fine = plan_levels(2048), plan_levels(2048, stroke=2.0), plan_levels(2048, stroke=0.5)
    assert (normal[0].side, coarse[0].side, fine[0].side) == (256, 128, 512)
    for levels in (normal, coarse, fine):
        assert levels[-1] == Level(2048, 1.0, Refine().steps_at(len(levels) - 2), "composition", Refine().anchor,
                                    Refine().anchor_pixels)
        assert all(b.side == round(a.side * 2) or b is levels[-1] for a, b in zip(levels, levels[1:]))
    # the same stroke gives the same composition, relative to the picture, at every output size
    assert [plan_levels(side, stroke=2.0)[0].side for side in (512, 1024, 4096)] == [128, 128, 128]


def test_style_detail_reaches_the_levels_above_the_composition_only() -> None:
    from stylepipe.plan.run_settings import level_sizings

    sizing = StyleSizing(2048, None, 0.75)
    levels = level_sizings(sizing, tuple(plan_levels(2048)))
    assert [(level.max_side, level.detail) for level in levels] == [(256, 1.0), (512, 0.75), (1024, 0.75), (2048, 0.75)]
    assert level_sizings(StyleSizing(256, None, 0.75), tuple(plan_levels(256))) == [StyleSizing(256, None, 1.0)]


def test_a_refine_level_holds_to_the_composition_unless_told_to_hold_to_the_photo(tmp_path: Path, gatys) -> None:
    """`optimize.refine.content`: by default a refine level's content term holds it to the picture
    painted so far (its start); `photo` holds it to the photo at the level's size instead (docs/sizes.md,
    The Scream at 1024 px). Judged where the content term looks: relu4_2."""
    import torch.nn.functional as F

    from stylepipe import Stylizer
    from stylepipe.core.geometry import resize

    common = {"device": "cpu", "cache_dir": tmp_path / "cache", "stroke": 4, "steps": 20, "precision": "fp32"}
    small = Stylizer(max_side=64, refine="off", **common)  # the composition alone: 64 px, its 20 steps
    photo, painting = sample("chelsea"), sample("the_scream")
    composition = small.stylize(photo, small.style(painting), as_tensor=True)
    pictures = {}
    for holds in ("composition", "photo"):
        stylizer = Stylizer(max_side=128, refine_steps=[15], refine_content=holds, **common)
        pictures[holds] = stylizer.stylize(photo, stylizer.style(painting), as_tensor=True)
    size = pictures["photo"].shape[-2:]
    start = resize(composition[None], tuple(size))  # what the level starts from
    the_photo = resize(load_image(photo).tensor[None], tuple(size))

    def relu4_2(picture: torch.Tensor) -> torch.Tensor:
        return gatys(picture, ["relu4_2"])["relu4_2"]

    with torch.no_grad():
        off = {holds: (F.mse_loss(relu4_2(picture[None]), relu4_2(start)).item(),
                       F.mse_loss(relu4_2(picture[None]), relu4_2(the_photo)).item())
               for holds, picture in pictures.items()}
    assert off["composition"][0] < off["photo"][0], off  # closer to the composition it refines
    assert off["photo"][1] < off["composition"][1], off  # closer to the photo when told to hold to it


def test_a_refine_level_holds_to_the_composition_s_look_as_much_as_its_anchor_says(tmp_path: Path, gatys) -> None:
    """`optimize.refine.anchor`: a refine level scaled back to the composition's size keeps the
    composition's Gram statistics (what the painting looks like at a glance); 0 leaves the level's
    own style term alone. Judged at the composition's size, on the style layers, against the
    composition as painted (measured: 1.38 summed relative distance without, 1.02 at the default 2)."""
    from stylepipe import Stylizer
    from stylepipe.core.geometry import resize
    from stylepipe.core.loss_fns import gram

    common = {"device": "cpu", "cache_dir": tmp_path / "cache", "stroke": 4, "steps": 20, "precision": "fp32"}
    small = Stylizer(max_side=64, refine="off", **common)  # the composition alone: 64 px, its 20 steps
    photo, painting = sample("chelsea"), sample("starry_night")
    composition = small.stylize(photo, small.style(painting), as_tensor=True)[None]
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

    def look(picture: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            features = gatys(resize(picture, tuple(composition.shape[-2:])), layers)
        return {layer: gram(value) for layer, value in features.items()}

    held = look(composition)
    drift = {}
    for anchor in (0.0, Refine().anchor):
        stylizer = Stylizer(max_side=128, refine_steps=[15], anchor=anchor, anchor_pixels=0.0, **common)  # the look's hold alone
        refined = look(stylizer.stylize(photo, stylizer.style(painting), as_tensor=True)[None])
        drift[anchor] = sum(((refined[l] - held[l]).norm() / held[l].norm()).item() for l in layers)
    assert drift[Refine().anchor] < 0.85 * drift[0.0], drift


def test_a_refine_level_scaled_back_down_stays_the_composition_as_much_as_its_pixel_hold_says(tmp_path: Path) -> None:
    """`optimize.refine.anchor_pixels`: a refine level adds detail that vanishes when the picture is
    scaled back to the composition's size; without the hold its style term, taken from the painting
    at its own scale, repaints the small picture too (at 1024 px, the painting's bright flecks:
    docs/sizes.md)."""
    from stylepipe import Stylizer
    from stylepipe.core.geometry import resize

    common = {"device": "cpu", "cache_dir": tmp_path / "cache", "stroke": 4, "steps": 20, "precision": "fp32"}
    small = Stylizer(max_side=64, refine="off", **common)
    photo, painting = sample("tubingen"), sample("starry_night")
    composition = small.stylize(photo, small.style(painting), as_tensor=True)[None]
    off = {}
    for hold in (0.0, Refine().anchor_pixels):
        stylizer = Stylizer(max_side=128, refine_steps=[15], anchor=0.0, anchor_pixels=hold, **common)  # the pixels' alone
        refined = stylizer.stylize(photo, stylizer.style(painting), as_tensor=True)[None]
        assert refined.shape[-1] == 128
        off[hold] = (resize(refined, tuple(composition.shape[-2:])) - composition).pow(2).mean().item()
    assert off[Refine().anchor_pixels] < 0.85 * off[0.0], off  # measured: 0.75 ×


def test_a_refine_level_takes_the_painting_near_its_file_size_without_the_file_s_pixel_noise(tmp_path: Path) -> None:
    """`size.style_detail`: a level that takes the painting at about its file's size sees it resampled
    through 3/4 of that size, so the file's own pixel noise (JPEG blocks, grain) is not painted as
    brushwork (at 512 px *The Starry Night*'s 512 px file laid 6.2 isolated dots per 10k px over the
    picture: docs/sizes.md). Outputs of the composition's size are painted as before, bit for bit."""
    from PIL import Image

    from stylepipe import Stylizer
    from stylepipe.core.loss_fns import tv_loss

    painting = tmp_path / "starry_corner.png"  # a 128 × 80 px file with the painting's own pixels
    with Image.open(sample("starry_night")) as full:
        full.convert("RGB").crop((0, 0, 128, 80)).save(painting)
    photo = sample("tubingen")
    common = {"device": "cpu", "cache_dir": tmp_path / "cache", "stroke": 4, "steps": 20, "precision": "fp32"}
    rough = {}
    for detail in (1.0, 0.75):
        stylizer = Stylizer(max_side=128, refine_steps=[15], style_detail=detail, **common)  # 64 px, then 128 px
        rough[detail] = tv_loss(stylizer.stylize(photo, stylizer.style(painting), as_tensor=True)[None]).item()
    assert rough[0.75] < 0.8 * rough[1.0], rough  # measured: 0.58 ×
    alone = []
    for detail in (1.0, 0.75):
        stylizer = Stylizer(max_side=64, style_detail=detail, **common)  # the composition is the output
        alone.append(stylizer.stylize(photo, stylizer.style(painting), as_tensor=True))
    assert torch.equal(alone[0], alone[1])


def test_an_anchor_adds_its_weighted_hold_to_the_total_and_leaves_the_reported_losses_alone(gatys) -> None:
    from stylepipe.core.geometry import resize
    from stylepipe.core.objective import ANCHOR_PART, Anchor, Objective, anchor_targets, content_targets
    from stylepipe.extend.terms import ContentLoss, StyleLoss, StyleParams

    photo = resize(load_image(sample("coffee")).tensor, (48, 64))[None]
    other = resize(load_image(sample("tubingen")).tensor, (48, 64))[None]
    terms = [ContentLoss(), StyleLoss(StyleParams(weight=200))]
    plain = Objective(gatys, terms, content_targets(gatys, terms, photo), anchor_targets(gatys, terms, other))
    small = (24, 32)

    def held_to(picture: torch.Tensor, weight: float = 3.0, pixel_weight: float = 0.0) -> Objective:
        scaled = resize(picture, small)
        return replace(plain, anchor=Anchor(small, anchor_targets(gatys, terms, scaled), weight, scaled, pixel_weight))

    at_itself, at_other = held_to(photo, pixel_weight=5.0), held_to(other)
    pixels_only = held_to(other, weight=0.0, pixel_weight=5.0)
    with torch.no_grad():
        base = plain.parts(photo)
        itself, apart, by_pixels = at_itself.parts(photo), at_other.parts(photo), pixels_only.parts(photo)
        looks_apart = 200 * plain._terms(resize(photo, small), {}, at_other.anchor.targets, terms[1:])["style"]
    assert ANCHOR_PART not in base and itself[ANCHOR_PART].item() < 1e-9 * apart[ANCHOR_PART].item()
    # 3 × 200 × the style distance of coffee from tubingen at 32 px
    assert apart[ANCHOR_PART].item() > 0 and torch.allclose(apart[ANCHOR_PART], 3.0 * looks_apart)
    mse = (resize(photo, small) - resize(other, small)).pow(2).mean()
    assert torch.allclose(by_pixels[ANCHOR_PART], 5.0 * 200 * mse)  # 5 × 200 × the pixels' mean squared difference
    assert torch.allclose(at_other.total(apart), plain.total(base) + apart[ANCHOR_PART])
    assert at_other.evaluate(photo) == plain.evaluate(photo)  # reports show the terms' own losses


def _pipeline(folder: Path, **size: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "content": [str(sample("chelsea"))],
        "styles": [str(sample("the_scream"))],
        "size": {"max_side": 128, "stroke": 4, **size},  # composition at 64 px, then 128 px
        "optimize": {"steps": 3, "refine": {"steps": [2]}},
        "output": {"dir": str(folder / "out"), "format": "png"},
        "cache": {"dir": str(folder / "cache")},
    }


def _plan_json(path: Path, *extra: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "stylepipe", "plan", str(path), "--json", *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_level_takes_its_targets_from_the_style_at_its_own_size_cached_per_size(tmp_path: Path, gatys) -> None:
    config = _pipeline(tmp_path)
    first = stylepipe.run(config)
    assert first.exit_code == 0 and first.count("done") == 1
    assert first.items[0].steps == 3 + 2  # the composition's steps, then the refine level's
    assert (first.targets_computed, first.targets_cache_hits) == (2, 0)  # one per level

    # the plan lists the levels, and a target per level with its own key, both now cached
    (tmp_path / "p.yaml").write_text(json.dumps(config))
    planned = _plan_json(tmp_path / "p.yaml")
    assert [(lv["side"], lv["composition"], lv["steps"], lv["style_side"]) for lv in planned["levels"]] == [
        (64, True, 3, 64), (128, False, 2, 128)]
    keys = [t["key"] for t in planned["style_targets"]]
    assert len(set(keys)) == 2 and all(t["cached"] for t in planned["style_targets"])

    # each cached target is the style picture's statistics at that level's size, nothing else
    from stylepipe.extend.terms import StyleLoss

    style = load_image(sample("the_scream")).tensor
    with TargetCache(tmp_path / "cache") as cache:
        cached = [unflatten(cache.get(key) or {}) for key in keys]
    direct = [compute_targets([WeightedImage(style, 1.0)], gatys, [StyleLoss()], StyleSizing(side, None),
                              torch.device("cpu"))["style"] for side in (64, 128)]

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return max(float((a[k] - b[k]).norm() / b[k].norm()) for k in b)

    for level, targets in enumerate(cached):  # the file is read once, shrunk for the largest size: ~3 % apart
        assert distance(targets["style"], direct[level]) < 0.05
        assert distance(targets["style"], direct[1 - level]) > 0.1  # the other size is another statistic

def test_a_second_run_computes_no_target_and_the_cache_keys_differ_per_size(tmp_path: Path, gatys) -> None:
    config = _pipeline(tmp_path)
    stylepipe.run(config)
    again = stylepipe.run(config, force=True)
    assert again.count("done") == 1
    assert (again.targets_computed, again.targets_cache_hits) == (0, 2)
    bigger = stylepipe.run(_pipeline(tmp_path, max_side=160), force=True)  # levels 64, 128, 160: one new size
    assert (bigger.targets_computed, bigger.targets_cache_hits) == (1, 2)


def test_an_output_of_the_composition_size_keeps_its_fingerprint(tmp_path: Path) -> None:
    """Single-scale outputs (256 px and the like) are what 1.2 made: finished ones are not redone,
    while an output that now gets levels is a new picture, redone."""
    from stylepipe.running.runner import load_checked, make_plan

    def fingerprint(**size: Any) -> str:
        refine = size.pop("refine", None)
        config = _pipeline(tmp_path, **size)
        if refine is not None:
            config["optimize"]["refine"] = refine
        return make_plan(load_checked(config)).jobs[0].fingerprint or ""

    small = fingerprint(max_side=64)  # stroke 4: the composition is the output
    assert small == fingerprint(max_side=64, refine="off") == fingerprint(max_side=64, stroke=1)
    assert fingerprint(max_side=128) != fingerprint(max_side=128, refine="off")
    assert fingerprint(max_side=128) != fingerprint(max_side=128, stroke=2)  # the composition moved: 128 px
    # size.style_detail reaches only the levels above the composition, and only there is it in the fingerprint
    assert small == fingerprint(max_side=64, style_detail=1.0)
    assert fingerprint(max_side=128) != fingerprint(max_side=128, style_detail=1.0)


def test_a_palette_gets_the_same_levels_above_its_coarse_to_fine_composition(tmp_path: Path, gatys) -> None:
    config = _pipeline(tmp_path)
    config.update(mode="palette", content=[])
    config["optimize"]["steps"] = 6  # the composition's own schedule: 3 coarse-to-fine sub-levels, 64 px the last
    report = stylepipe.run(config)
    assert report.exit_code == 0 and report.count("done") == 1
    assert report.items[0].steps == 6 + 2
    assert report.targets_computed == 2
    from PIL import Image

    with Image.open(report.items[0].output) as picture:
        assert max(picture.size) == 128
