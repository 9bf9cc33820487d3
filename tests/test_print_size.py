"""Print sizes in bounded memory: when a batch is tiled, what that costs in pictures (nothing), and
how `size.tile` and `limits.max_memory_mb` reach the run (real network, real pictures)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylepipe.cli.app import app
from stylepipe.config.load import load_pipeline
from stylepipe.core.errors import ConfigError
from stylepipe.core.optimize import OptimizeSettings
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.core.tiling import Tiling
from stylepipe.extend.plugins import load_plugin_file
from stylepipe.extend.registries import LOSSES
from stylepipe.extend.terms import ContentLoss, StyleLoss, TotalVariation
from stylepipe.io.images import load_image
from stylepipe.plan.run_settings import levels_of
from stylepipe.running.budget import plan_memory, style_tiling
from stylepipe.running.runner import make_plan

from conftest import ROOT, sample

runner = CliRunner()
TERMS = [ContentLoss(), StyleLoss(), TotalVariation()]


def test_style_targets_measured_on_tiles_equal_the_whole_pictures(gatys, forget_plugins) -> None:
    load_plugin_file(ROOT / "plugins" / "mean_std_loss.py")
    terms = [StyleLoss(), LOSSES.get("mean_std")()]
    picture = WeightedImage(load_image(sample("starry_night")).tensor, 1.0)
    sizing = StyleSizing(240, None)
    whole = compute_targets([picture], gatys, terms, sizing, torch.device("cpu"))
    tiled = compute_targets([picture], gatys, terms, sizing, torch.device("cpu"), tile_for=lambda size: Tiling(64))
    assert whole.keys() == tiled.keys() == {"style", "mean_std"}
    for name in whole:
        assert whole[name].keys() == tiled[name].keys()
        for key, value in whole[name].items():
            torch.testing.assert_close(tiled[name][key], value, rtol=1e-4, atol=1e-6, msg=f"{name} {key}")


def test_auto_tiles_only_what_would_not_fit(gatys) -> None:
    settings = OptimizeSettings("lbfgs", steps=50)
    roomy = plan_memory(gatys, TERMS, (768, 1024), 1, settings, "auto", 64 << 30)
    assert roomy.tiling is None and roomy.lbfgs_history == 49 and roomy.note is None
    tight = plan_memory(gatys, TERMS, (768, 1024), 1, settings, "auto", 2 << 30)
    assert tight.tiling is not None and tight.fits and "tiled" in (tight.note or "")
    looser = plan_memory(gatys, TERMS, (768, 1024), 1, settings, "auto", 3 << 30)
    assert looser.tiling is not None and looser.tiling.core >= tight.tiling.core, "more memory, larger tiles"
    assert plan_memory(gatys, TERMS, (768, 1024), 1, settings, 256, 64 << 30).tiling == Tiling(256)
    off = plan_memory(gatys, TERMS, (3072, 4096), 1, settings, "off", 2 << 30)
    assert off.tiling is None and not off.fits and "may fail" in (off.note or "")


def test_the_lbfgs_history_is_cut_only_when_tiles_are_not_enough(gatys) -> None:
    settings = OptimizeSettings("lbfgs", steps=50)
    plan = plan_memory(gatys, TERMS, (3072, 4096), 1, settings, "auto", 4 << 30)
    assert plan.tiling is not None and plan.fits
    assert 1 <= plan.lbfgs_history < 49 and "history cut from 49" in (plan.note or "")
    kept = plan_memory(gatys, TERMS, (3072, 4096), 1, settings, "auto", 20 << 30)
    assert kept.tiling is not None and kept.lbfgs_history == 49, "tiles come first, history last"


def test_style_pictures_are_tiled_by_the_same_rule(gatys) -> None:
    tile_for = style_tiling(gatys, TERMS, "auto", 256 << 20)
    assert tile_for((256, 256)) is None
    assert tile_for((3072, 4096)) is not None
    assert style_tiling(gatys, TERMS, "off", 1)((3072, 4096)) is None
    assert style_tiling(gatys, TERMS, 512, 64 << 30)((600, 800)) == Tiling(512)
    assert style_tiling(gatys, TERMS, 512, 64 << 30)((300, 400)) is None


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(sample("tubingen"), root / "tubingen.jpg")
    shutil.copy(sample("starry_night"), root / "starry_night.jpg")
    (root / "pipeline.yaml").write_text(textwrap.dedent("""
        content: tubingen.jpg
        styles: starry_night.jpg
        size: {max_side: 448}
        optimize: {steps: 2, refine: {steps: [2]}}
        output: {format: png, html: false}
    """), encoding="utf-8")
    return root


def _run(project: Path, name: str, *settings: str) -> dict:
    args = ["run", str(project / "pipeline.yaml"), "-o", str(project / name), "--report", str(project / f"{name}.json")]
    for setting in settings:
        args += ["--set", setting]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((project / f"{name}.json").read_text())["items"][0]


def test_a_memory_limit_tiles_the_run_and_the_picture_is_the_same(project: Path) -> None:
    whole = _run(project, "whole", "size.tile=off")
    tiled = _run(project, "tiled", "limits.max_memory_mb=256")
    assert whole["status"] == tiled["status"] == "done"
    assert whole["note"] is None and "tiled" in tiled["note"], tiled["note"]
    a = np.asarray(Image.open(whole["output"]), dtype=np.int16)
    b = np.asarray(Image.open(tiled["output"]), dtype=np.int16)
    assert a.shape == b.shape == (336, 448, 3)
    levels = levels_of(load_pipeline(project / "pipeline.yaml").config)
    assert [level.side for level in levels] == [256, 448], "the tiles are tried at a refine level too"
    assert np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.01, "tiles give the whole picture's gradient"
    assert tiled["loss"]["style"] == pytest.approx(whole["loss"]["style"], rel=1e-3)


def test_yaml_off_is_off(project: Path) -> None:
    path = project / "pipeline.yaml"
    path.write_text(path.read_text() + "limits: {max_memory_mb: 1024}\n", encoding="utf-8")
    path.write_text(path.read_text().replace("size: {max_side: 448}", "size: {max_side: 448, tile: off}"))
    assert load_pipeline(path).config.size.tile == "off"  # YAML reads a bare off as false
    assert load_pipeline(path, ["size.tile=on"]).config.size.tile == "auto"


EDGES = '''
from stylepipe.losses import LossTerm
from stylepipe.registry import register_loss


@register_loss("edges")
class Edges(LossTerm):
    """A network term that reads a mean over positions, without the tiling protocol."""

    name = "edges"

    @property
    def layers(self):
        return ["relu2_1"]

    def loss(self, image, features, content, style):
        return features["relu2_1"].flatten(1).mean(dim=1)
'''


def test_a_fixed_tile_with_a_term_that_cannot_be_tiled_is_a_config_error(project: Path, forget_plugins) -> None:
    (project / "plugins").mkdir()
    (project / "plugins" / "edges.py").write_text(EDGES, encoding="utf-8")
    path = project / "pipeline.yaml"
    path.write_text(path.read_text() + "plugins: [plugins]\nlosses: {extra: [{name: edges, weight: 1}]}\n")
    assert make_plan(load_pipeline(path)).jobs, "with auto the term only turns tiling off"
    path.write_text(path.read_text().replace("size: {max_side: 448}", "size: {max_side: 448, tile: 128}"))
    with pytest.raises(ConfigError, match=r"pipeline\.yaml:\d+:\d+: size\.tile: loss term 'edges'.*tile by tile"):
        make_plan(load_pipeline(path))
    with pytest.raises(ConfigError, match=r"--set: size\.tile: loss term 'edges'"):
        make_plan(load_pipeline(path, ["size.tile=256"]))
