"""Plugins that read the content photo's pixels (the docs' `brightness` term, run as written) and
plugin files whose bytes count in the resume fingerprint."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml
from PIL import Image

from stylepipe.config.load import load_pipeline
from stylepipe.core.objective import content_targets
from stylepipe.running.runner import make_plan, run_pipeline

from conftest import sample

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def brightness_source() -> str:
    """The `brightness` example of docs/plugins.md, exactly as the docs show it."""
    section = DOCS.read_text(encoding="utf-8").split("### A term that reads the content photo's pixels", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def project(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "brightness.py").write_text(brightness_source())
    Image.open(sample("chelsea")).convert("RGB").resize((40, 32)).save(tmp_path / "cat.png")
    data = {"content": ["cat.png"], "styles": [str(sample("the_scream"))], "plugins": ["plugins"],
            "losses": {"extra": [{"name": "brightness", "weight": 1000}]}, "size": {"max_side": 32},
            "optimize": {"steps": 2}, "output": {"dir": "out", "html": False}, "cache": {"enabled": False}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return tmp_path / "pipeline.yaml"


def test_a_content_term_gets_the_photos_pixels_at_the_working_size(tmp_path: Path, gatys, forget_plugins) -> None:
    plan = make_plan(load_pipeline(project(tmp_path)))
    term = next(term for term in plan.terms if term.name == "brightness")
    content = torch.rand(2, 3, 32, 40)
    targets = content_targets(gatys, plan.terms, content)
    assert torch.allclose(targets["brightness"]["mean"], content.mean(dim=(1, 2, 3)))
    assert "relu4_2" in targets["content"]  # the built-in content term still gets its features
    assert torch.allclose(term.loss(content, {}, targets["brightness"], {}), torch.zeros(2))


def test_the_docs_brightness_term_runs_end_to_end(tmp_path: Path, forget_plugins) -> None:
    (item,) = run_pipeline(load_pipeline(project(tmp_path))).items
    assert item.status == "done", item.error
    assert item.loss is not None and 0.0 <= item.loss["brightness"] < 0.01


def test_editing_a_folder_plugin_redoes_the_jobs_that_use_it(tmp_path: Path, forget_plugins) -> None:
    pipeline = project(tmp_path)
    run_pipeline(load_pipeline(pipeline))
    assert len(make_plan(load_pipeline(pipeline)).done) == 1
    plugin = tmp_path / "plugins" / "brightness.py"
    plugin.write_text(plugin.read_text() + "\n# a comment changes nothing here, but the file is what counts\n")
    edited = make_plan(load_pipeline(pipeline))
    assert edited.done == [] and edited.reasons[0] == "painting settings changed: terms"


def test_built_in_terms_keep_their_fingerprints() -> None:
    """A run without folder plugins hashes as before: upgrading redoes nothing."""
    from stylepipe.extend.terms import ContentLoss
    from stylepipe.plan.resume import _term_entry

    assert "code" not in _term_entry(ContentLoss())


def test_a_term_without_layers_gets_the_whole_pictures_when_tiled(tmp_path: Path, gatys, forget_plugins) -> None:
    from stylepipe.core.tiling import Tiling
    from stylepipe.core.tiling import content_targets as tiled_content_targets

    plan = make_plan(load_pipeline(project(tmp_path)))
    content = torch.rand(1, 3, 96, 96)
    tiled = tiled_content_targets(gatys, plan.terms, content, Tiling(core=32))
    assert torch.allclose(tiled["brightness"]["mean"], content.mean(dim=(1, 2, 3)))
    assert "relu4_2" in tiled["content"]
