"""The Python API: `from stylepipe import Stylizer, run`, keyword settings checked as the YAML is,
the CLI's cache keys and pixels, and the doctests of the public modules.

The acceptance script runs in fresh processes (twice: the second computes no target) and the
CLI then makes the same pictures from the same cache; everything else runs in this process at
32 px and 2 steps.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import stylepipe
from stylepipe import ConfigError, Style, Stylizer
from stylepipe.cli.app import app
from stylepipe.config.keywords import STYLIZER_SECTIONS, keywords
from stylepipe.config.load import load_pipeline

from conftest import CONTENT, ROOT, sample

TINY = {"max_side": 32, "steps": 2}


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with photos/ (three sample photos) and painting.jpg."""
    (tmp_path / "photos").mkdir()
    for path in CONTENT[:3]:
        shutil.copy(path, tmp_path / "photos" / path.name)
    shutil.copy(sample("starry_night"), tmp_path / "painting.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(**TINY)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


# --- the acceptance script --------------------------------------------------------------------------

SCRIPT = """
import json, sys
from pathlib import Path

from PIL import Image

from stylepipe import Stylizer

s = Stylizer(cache_dir="cache", max_side=64, steps=3)
style = s.style("painting.jpg")
paths = sorted(Path("photos").glob("*.jpg"))
photos = [Image.open(path) for path in paths]
styled = s.stylize(photos, style)
assert len(styled) == 3 and all(isinstance(picture, Image.Image) for picture in styled), styled
out = Path(sys.argv[1])
out.mkdir()
for path, picture in zip(paths, styled):
    picture.save(out / f"{path.stem}.png")
print(json.dumps({"computed": s.targets_computed, "hits": s.targets_cache_hits, "cached": style.cached}))
"""


def test_a_script_styles_three_photos_a_second_process_computes_nothing_and_the_cli_agrees(folder: Path) -> None:
    (folder / "script.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    for name in ("api-1", "api-2"):
        proc = subprocess.run([sys.executable, "script.py", name], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0] == {"computed": 1, "hits": 0, "cached": False}
    assert runs[1] == {"computed": 0, "hits": 1, "cached": True}  # a new process: the disk cache had it

    (folder / "pipeline.yaml").write_text(yaml.safe_dump({
        "content": ["photos/"], "styles": ["painting.jpg"], "size": {"max_side": 64}, "optimize": {"steps": 3},
        "output": {"dir": "cli", "format": "png", "html": False}, "cache": {"dir": "cache"}}))
    result = CliRunner().invoke(app, ["run", "pipeline.yaml", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["style_targets"] == {"computed": 0, "cache_hits": 1}  # the API's cache key is the CLI's
    for path in sorted((folder / "photos").glob("*.jpg")):
        cli = pixels(folder / "cli" / f"{path.stem}__painting.png")
        for name in ("api-1", "api-2"):
            assert np.array_equal(pixels(folder / name / f"{path.stem}.png"), cli), (name, path.name)


# --- the public names ---------------------------------------------------------------------------------


def test_import_stylepipe_is_light_and_every_public_name_resolves() -> None:
    code = ("import sys, stylepipe; assert 'torch' not in sys.modules, 'import stylepipe pulled in torch'; "
            "from stylepipe import *; print(len(stylepipe.__all__))")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert set(stylepipe.__all__) == {"__version__", *stylepipe._EXPORTS}
    for name in stylepipe._EXPORTS:
        assert getattr(stylepipe, name) is getattr(importlib.import_module(stylepipe._EXPORTS[name]), name)
    with pytest.raises(AttributeError, match="no attribute 'Stylise'"):
        stylepipe.Stylise  # noqa: B018
    assert (ROOT / "stylepipe" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()


def test_plugins_import_only_from_stylepipe() -> None:
    for path in sorted((ROOT / "plugins").glob("*.py")):
        imports = re.findall(r"^from (stylepipe\S*) import", path.read_text(), flags=re.M)
        assert imports and set(imports) == {"stylepipe"}, (path.name, imports)


@pytest.mark.parametrize("module", ["stylepipe.api", "stylepipe.config.keywords", "stylepipe.ray_data"])
def test_doctests(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0 and result.failed == 0, result


# --- keyword settings ---------------------------------------------------------------------------------


def _yaml_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text("content: a.jpg\nstyles: b.jpg\n" + textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    return str(info.value).split(": ", 1)[1]  # without `pipeline.yaml:3:12`


@pytest.mark.parametrize(("settings", "yaml_text"), [
    ({"max_side": 10}, "size: {max_side: 10}"),
    ({"optimize": {"stesp": 3}}, "optimize: {stesp: 3}"),
    ({"pooling": "mx"}, "network: {pooling: mx}"),
    ({"style_layers": ["relu1_1", "rleu2_1"]}, "losses: {style: {layers: [relu1_1, rleu2_1]}}"),
    ({"losses": {"style": {"wieght": 3}}}, "losses: {style: {wieght: 3}}"),
])
def test_a_mistake_in_python_reads_as_the_same_mistake_in_yaml(tmp_path: Path, settings: dict, yaml_text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Stylizer(**settings)
    where, message = str(info.value).split(": ", 1)
    assert where == f"Stylizer({next(iter(settings))}=…)"
    assert message == _yaml_error(tmp_path, yaml_text)


def test_keywords_name_keys_by_their_last_parts_and_refuse_ambiguity() -> None:
    with pytest.raises(ConfigError, match=re.escape("Stylizer(stesp=…): stesp: Extra inputs are not permitted "
                                                    "(did you mean `steps`?)")):
        Stylizer(stesp=3)
    with pytest.raises(ConfigError) as info:
        Stylizer(weight=3, layers=["relu1_1"])  # both reported at once
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Stylizer(weight=…): weight is ambiguous: it may be losses.content.weight, "
                               "losses.style.weight or losses.tv.weight; write content_weight, style_weight or tv_weight")
    assert lines[1].startswith("Stylizer(layers=…): layers is ambiguous")
    with pytest.raises(ConfigError, match=r"Stylizer\(content=…\): losses\.content: Input should be a valid dictionary"):
        Stylizer(content=["photo.jpg"])  # in a Stylizer, `content` is the content loss


def test_the_settings_reach_the_run_settings_and_terms_as_from_a_file(tmp_path: Path) -> None:
    stylizer = Stylizer(max_side=48, steps=7, style_weight=300, losses={"tv": {"weight": 0}, "style": {"layers": ["relu1_1"]}},
                        pyramid={"levels": 2}, seed=4, **{"optimize.noise": 0.5})
    settings = stylizer.settings
    assert (settings.size_max_side, settings.optimize.steps, settings.seed, settings.noise, settings.pyramid.levels) == (48, 7, 4, 0.5, 2)
    terms = {term.name: term for term in stylizer._setup.terms}
    assert set(terms) == {"content", "style"}  # TV at weight 0 is off, as in a file
    assert terms["style"].weight == 300 and list(terms["style"].layers) == ["relu1_1"]  # merged, not replaced
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump({"content": "a.jpg", "styles": "b.jpg", "size": {"max_side": 48},
                                    "optimize": {"steps": 7, "seed": 4, "noise": 0.5, "pyramid": {"levels": 2}},
                                    "losses": {"style": {"weight": 300, "layers": ["relu1_1"]}, "tv": {"weight": 0}},
                                    "cache": {"enabled": False}}))
    from stylepipe.plan.run_settings import run_settings

    assert run_settings(load_pipeline(path)) == settings


def test_the_keyword_table_in_the_docs_is_the_rule_applied() -> None:
    text = (ROOT / "docs" / "library.md").read_text()
    table = text.split("<!-- stylizer-keywords -->")[1].split("<!-- /stylizer-keywords -->")[0]
    cells = re.findall(r"\| `([^`]+)` \| `([^`]+)` ", table.replace("` | `", "` | `"))
    pairs = re.findall(r"`([\w.]+)` \| `([\w.]+)`", table)
    assert dict(pairs) == keywords(STYLIZER_SECTIONS), "regenerate the table from stylepipe.config.keywords.keywords()"
    assert cells


# --- pictures in, pictures out ------------------------------------------------------------------------


def test_inputs_of_every_kind_give_answers_of_their_kind(stylizer: Stylizer, folder: Path) -> None:
    style = stylizer.style("painting.jpg")
    photo = CONTENT[0]
    as_pil = stylizer.stylize(Image.open(photo), style)
    assert isinstance(as_pil, Image.Image) and max(as_pil.size) == 32
    from_path = stylizer.stylize(str(photo), style)
    assert np.array_equal(np.asarray(from_path), np.asarray(as_pil))  # a path and Image.open(path): the same pixels
    array = np.asarray(Image.open(photo).convert("RGB"))
    assert isinstance(stylizer.stylize([array], style)[0], Image.Image)
    tensor = torch.rand(3, 40, 50)
    out = stylizer.stylize(tensor, style)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 26, 32) and 0 <= out.min() and out.max() <= 1
    batch = stylizer.stylize(torch.rand(2, 3, 40, 50), style, as_tensor=True)
    assert batch.shape == (2, 3, 26, 32)
    assert isinstance(stylizer.stylize(tensor, style, as_tensor=False), Image.Image)
    assert stylizer.stylize([], style) == []
    with pytest.raises(ValueError, match=r"picture 0: pixels range over .*give RGB in \[0, 1\], not normalised"):
        stylizer.stylize(torch.randn(3, 40, 40) * 3, style)
    with pytest.raises(TypeError, match="expected a PIL image"):
        stylizer.stylize([42], style)
    with pytest.raises(stylepipe.StylepipeError, match="every side needs at least 17 px"):
        stylizer.stylize(torch.rand(3, 8, 200), style)


def test_pictures_of_one_size_go_in_batches_and_a_call_can_change_settings(folder: Path, monkeypatch) -> None:
    from stylepipe import api

    calls: list[tuple[int, int]] = []
    real = api.stylize_batch

    def counting(ctx, content, size, style, *args, **kwargs):
        calls.append((len(content), ctx.settings.optimize.steps))
        return real(ctx, content, size, style, *args, **kwargs)

    monkeypatch.setattr(api, "stylize_batch", counting)
    stylizer = Stylizer(batch_size=2, **TINY)
    pictures = [torch.rand(3, 32, 32) for _ in range(3)] + [torch.rand(3, 20, 32)]
    out = stylizer.stylize(pictures, "painting.jpg")
    assert [tuple(o.shape) for o in out] == [(3, 32, 32)] * 3 + [(3, 20, 32)]  # in input order
    assert calls == [(2, 2), (1, 2), (1, 2)]
    stylizer.stylize(pictures[:1], "painting.jpg", steps=1)
    assert calls[-1] == (1, 1) and stylizer.settings.optimize.steps == 2  # for that call only
    with pytest.raises(ConfigError, match=r"stylize\(device=…\): network.device is set when the Stylizer is made"):
        stylizer.stylize(pictures[:1], "painting.jpg", device="cpu")


# --- styles -------------------------------------------------------------------------------------------


def test_styles_of_every_kind_and_their_keys(folder: Path) -> None:
    from stylepipe.targets.keys import target_key

    stylizer = Stylizer(**TINY)
    before = stylizer.targets_computed
    by_path = stylizer.style("painting.jpg")
    again = stylizer.style(Path("painting.jpg"))
    assert (by_path.label, by_path.cached, again.cached, again.key) == ("painting", False, True, by_path.key)
    tiled = stylizer.style({"source": "tiled", "path": "painting.jpg", "grid": 2})
    assert tiled.label == "painting-tiled2" and tiled.key != by_path.key
    assert stylizer.style({"path": "painting.jpg", "grid": 2}).key == tiled.key  # `grid` means tiled, as in YAML
    blend = stylizer.style([("painting.jpg", 2.0), (str(sample("shipwreck")), 1.0)], name="mix")
    assert blend.label == "mix" and blend.source.name == "blend"
    in_memory = stylizer.style(Image.open("painting.jpg"))
    assert in_memory.source.name == "pictures" and stylizer.style(Image.open("painting.jpg")).cached
    mixed = stylizer.style([(Image.open("painting.jpg"), 1.0), ("painting.jpg", 1.0)])
    assert mixed.source.name == "pictures"
    assert stylizer.targets_computed - before == 5
    # a Style from elsewhere is used as it is when its key fits these settings, else recomputed
    assert stylizer.style(by_path) is by_path
    other = Stylizer(max_side=32, steps=2, style_scale=2)
    moved = other.style(by_path)
    assert moved.key != by_path.key and other.targets_computed == 1
    assert moved.key == target_key(by_path.fingerprint, other._context.extractor.fingerprint(), other._setup.terms,
                                   other._setup.sizing)
    with pytest.raises(ConfigError, match=r"Stylizer.style\(\): style.gird: Extra inputs are not permitted "
                                          r"\(did you mean `grid`\?\)"):
        stylizer.style({"source": "tiled", "path": "painting.jpg", "gird": 2})
    with pytest.raises(ConfigError, match=r"Stylizer.style\(\): style.path: file not found: .*missing.jpg"):
        stylizer.style("missing.jpg")
    with pytest.raises(ConfigError, match="names 3 pictures; give one, or blend them"):
        stylizer.style("photos/")


def test_a_style_pickles_with_its_targets(stylizer: Stylizer, folder: Path) -> None:
    import pickle

    style = stylizer.style("painting.jpg")
    copy = pickle.loads(pickle.dumps(style))
    assert isinstance(copy, Style) and copy.key == style.key
    for term, parts in style.targets.items():
        for name, tensor in parts.items():
            assert torch.equal(copy.targets[term][name], tensor) and tensor.device.type == "cpu"


# --- stylepipe.run ------------------------------------------------------------------------------------


def test_run_returns_the_report_for_a_file_or_a_dict(folder: Path) -> None:
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({
        "content": ["photos/"], "styles": ["painting.jpg"], "output": {"dir": "out", "html": False}, "cache": {"dir": "cache"}}))
    report = stylepipe.run("pipeline.yaml", **TINY)
    assert isinstance(report, stylepipe.RunReport)
    assert (report.exit_code, report.count("done"), report.targets_computed) == (0, 3, 1)
    assert json.loads((folder / "out" / "report.json").read_text())["summary"]["done"] == 3
    again = stylepipe.run(folder / "pipeline.yaml", **TINY)
    assert again.count("skipped") == 3 and again.targets_computed == 0
    one = stylepipe.run({"content": ["photos/"], "styles": ["painting.jpg"], "cache": {"enabled": False}},
                        output_dir="dict-out", max_jobs=1, sets=["output.html=false"], **TINY)
    assert one.count("done") == 1 and len(one.remaining) == 2 and (folder / "dict-out" / "report.json").is_file()
    with pytest.raises(ConfigError, match=re.escape("run(steps=…): optimize.steps: Input should be greater than or equal to 1")):
        stylepipe.run("pipeline.yaml", steps=0)
    with pytest.raises(ConfigError, match=re.escape("<dict>: styles.0.path: file not found")):
        stylepipe.run({"content": ["photos/"], "styles": ["nope.jpg"]})


# --- progress ------------------------------------------------------------------------------------------


def test_stylize_reports_progress_to_a_callback_or_a_bar(tmp_path: Path, capsys) -> None:
    seen: list[tuple[int, int, float]] = []
    with Stylizer(max_side=32, steps=3, cache_dir=tmp_path / "cache") as stylizer:
        style = stylizer.style(sample("the_scream"))
        photo = Image.open(sample("chelsea")).convert("RGB")
        stylizer.stylize(photo, style, progress=lambda step, steps, loss: seen.append((step, steps, loss)))
        assert [s for s, _, _ in seen] == [1, 2, 3] and {n for _, n, _ in seen} == {3}
        assert all(isinstance(loss, float) and loss > 0 for _, _, loss in seen)
        assert stylizer.stylize(photo, style, progress=True).size == (32, 22)
        with pytest.raises(TypeError, match="progress"):
            stylizer.stylize(photo, style, progress="yes")  # type: ignore[arg-type]
