"""Whatever goes wrong in one job, batch or style fails only its own items, with the cause.

The faults come from small plugins written into tmp_path (no test hook in stylepipe itself): a
loss term that breaks on one content photo only, a style source whose pictures cannot be made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from stylepipe.config.load import load_pipeline
from stylepipe.running.runner import run_pipeline

from conftest import sample

FAULTY_PLUGIN = '''
from typing import Literal

import torch

from stylepipe.losses import LossTerm, TermParams
from stylepipe.registry import register_loss, register_style_source
from stylepipe.extend.sources import ImageSource


class FaultyParams(TermParams):
    fail: Literal["keyerror", "nan"] = "keyerror"


@register_loss("faulty")
class Faulty(LossTerm):
    """Breaks on the first content photo it meets (recognised by its features), and only on it."""

    name = "faulty"
    side = "content"
    Params = FaultyParams
    victim = None

    @property
    def layers(self):
        return ["relu1_1"]

    def content_targets(self, features):
        return {"key": features["relu1_1"].sum(dim=(1, 2, 3))}

    def loss(self, image, features, content, style):
        key = round(float(content["key"].sum()), 3)
        if type(self).victim is None:
            type(self).victim = key
        if key != type(self).victim:
            return image.new_zeros(image.shape[0])
        if self.params.fail == "keyerror":
            raise KeyError("relu9_9")
        return image.flatten(1).mean(1) * float("nan")


@register_style_source("exploding")
class Exploding(ImageSource):
    name = "exploding"

    def images(self):
        raise ValueError("cannot make these pictures")
'''


pytestmark = pytest.mark.usefixtures("forget_plugins")  # conftest: each test's plugins are forgotten after it


def pipeline(tmp_path: Path, **settings) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "faulty.py").write_text(FAULTY_PLUGIN)
    data = {"plugins": [str(plugins)], "size": {"max_side": 32}, "optimize": {"steps": 2},
            "output": {"dir": str(tmp_path / "out")}, "cache": {"dir": str(tmp_path / "cache")}, **settings}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("fail", "cause"), [("keyerror", "KeyError: 'relu9_9'"), ("nan", "OptimizationError")])
def test_a_failing_loss_term_fails_only_the_job_it_fails_on(tmp_path: Path, photo_dir: Path, fail: str, cause: str) -> None:
    path = pipeline(tmp_path, content=[str(photo_dir)], styles=[str(sample("the_scream"))],
                    losses={"extra": [{"name": "faulty", "fail": fail}]})
    report = run_pipeline(load_pipeline(path))
    statuses = sorted(item.status for item in report.items)
    assert statuses == ["done", "done", "done", "failed"] and report.exit_code == 1
    (failed,) = [item for item in report.items if item.status == "failed"]
    assert cause in failed.error and failed.error.startswith(f"{failed.content}: ")


def test_a_style_source_that_raises_fails_only_its_style(tmp_path: Path) -> None:
    path = pipeline(tmp_path, content=[str(sample("chelsea"))],
                    styles=[str(sample("shipwreck")), {"source": "exploding", "path": str(sample("the_scream")), "name": "boom"}])
    report = run_pipeline(load_pipeline(path))
    by_style = {item.style: item for item in report.items}
    assert by_style["shipwreck"].status == "done"
    assert by_style["boom"].status == "failed" and report.exit_code == 1
    assert by_style["boom"].error == "style 'boom' failed: ValueError: cannot make these pictures"


def test_a_style_too_thin_for_the_network_fails_only_its_jobs(tmp_path: Path) -> None:
    strip = tmp_path / "strip.png"
    Image.open(sample("starry_night")).convert("RGB").resize((400, 12)).save(strip)
    path = pipeline(tmp_path, content=[str(sample("chelsea"))], styles=[str(sample("shipwreck")), str(strip)])
    report = run_pipeline(load_pipeline(path))
    by_style = {item.style: item for item in report.items}
    assert by_style["shipwreck"].status == "done" and by_style["strip"].status == "failed"
    assert by_style["strip"].error == ("style 'strip' failed: picture 1 is 32×1 px at the style size; every side needs "
                                       "at least 17 px: raise size.style_max_side or size.style_scale")
