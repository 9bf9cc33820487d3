"""report.html without a browser: when it is written, what it merges, thumbnails, loss curves.

The browser checks (console errors, images, escaping as the browser sees it) are in
test_report_page.py; these run the real pipeline at tiny sizes and read the page's HTML.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from stylepipe.cli.app import app
from stylepipe.config.load import load_pipeline
from stylepipe.core.geometry import resize
from stylepipe.core.objective import content_targets
from stylepipe.core.optimize import OptimizeSettings, optimize
from stylepipe.extend.terms import ContentLoss, StyleLoss
from stylepipe.io.images import load_image
from stylepipe.report.curves import loss_curves
from stylepipe.report.history import LossHistory, RecordingObjective
from stylepipe.report.page import build_sheet, render_page
from stylepipe.report.thumbnails import THUMB_DIR
from stylepipe.running.runner import run_pipeline
from stylepipe.running.schedule import Shard

from conftest import sample

cli = CliRunner()


def write_pipeline(root: Path, contents: list[str], styles: list[str], **extra) -> Path:
    data = {"content": contents, "styles": styles, "size": {"max_side": 32}, "optimize": {"steps": 3},
            "cache": {"dir": str(root / "cache")}, "output": {"dir": str(root / "out")}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value}
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cells(page: Path) -> list[str]:
    """The status of every job cell on the page, in page order."""
    return re.findall(r'data-status="(\w+)"', page.read_text())


def test_interrupted_run_still_writes_the_page(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("chelsea")), str(sample("coffee"))], [str(sample("shipwreck"))],
                              optimize={"batch_size": 1})

    class StopAfterOne:
        def __getattr__(self, name):
            return lambda *args: None

        def job_finished(self, job, item):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(pipeline), events=StopAfterOne())
    page = tmp_path / "out" / "report.html"
    assert sorted(cells(page)) == ["done", "remaining"]
    assert not list((tmp_path / "out").glob(".report.html.*.part"))


def test_output_html_false_writes_no_page(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("coffee"))], [str(sample("shipwreck"))], output={"html": False})
    run_pipeline(load_pipeline(pipeline))
    assert (tmp_path / "out" / "report.json").is_file()
    assert not (tmp_path / "out" / "report.html").exists()


def test_shards_share_one_page_and_the_report_command_rebuilds_it(tmp_path: Path, monkeypatch) -> None:
    contents = [str(sample(name)) for name in ("chelsea", "coffee", "astronaut")]
    pipeline = write_pipeline(tmp_path, contents, [str(sample("shipwreck"))])
    out = tmp_path / "out"
    first = run_pipeline(load_pipeline(pipeline), shard=Shard(0, 2))
    second = run_pipeline(load_pipeline(pipeline), shard=Shard(1, 2))
    assert len(first.items) + len(second.items) == 3 and first.items and second.items
    assert sorted(cells(out / "report.html")) == ["done"] * 3  # the last shard's page shows both

    (out / "report.html").unlink()
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = cli.invoke(app, ["report", str(out), "--open"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str((out / "report.html").resolve())
    assert opened == [(out / "report.html").resolve().as_uri()]
    assert sorted(cells(out / "report.html")) == ["done"] * 3

    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "no report.json" in result.stderr


def test_thumbnails_are_made_once_and_skipped_jobs_keep_their_numbers(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("coffee"))], [str(sample("starry_night"))])
    out = tmp_path / "out"
    run_pipeline(load_pipeline(pipeline))
    thumbs = {path: path.stat().st_mtime_ns for path in (out / ".stylepipe" / THUMB_DIR).iterdir()}
    assert len(thumbs) == 3  # content photo, style picture, output
    first_page = (out / "report.html").read_text()

    again = run_pipeline(load_pipeline(pipeline))  # every job skipped
    assert [item.status for item in again.items] == ["skipped"]
    assert {path: path.stat().st_mtime_ns for path in (out / ".stylepipe" / THUMB_DIR).iterdir()} == thumbs
    page = (out / "report.html").read_text()
    assert cells(out / "report.html") == ["skipped"]
    # report.json now only says "skipped"; the losses and the curve come from the output's sidecar
    assert page.count('<svg class="curve"') == first_page.count('<svg class="curve"') == 1
    assert re.search(r'class="loss">content [0-9.e+-]+ · style [0-9.e+-]+ · total', page)


def test_jobs_without_a_photo_or_a_style_have_their_row_and_column(tmp_path: Path) -> None:
    """Palettes and style reconstructions report `content: null`, content reconstructions `style: null`."""
    report = {"items": [
        {"content": None, "style": "starry_night", "output": None, "status": "failed", "error": "a palette", "job": 0},
        {"content": "/photos/cat.jpg", "style": None, "output": None, "status": "failed", "error": "a rebuild", "job": 1}]}
    html = render_page(build_sheet([report], tmp_path, tmp_path))
    assert "(no content photo)" in html and "cat.jpg" in html and "a palette" in html and "a rebuild" in html


def test_names_and_messages_are_escaped(tmp_path: Path) -> None:
    report = {"items": [{"content": "/photos/<script>.jpg", "style": 'x" onmouseover="alert(1)', "output": None,
                         "status": "failed", "error": "<b>bold</b> & broken", "job": 0}]}
    html = render_page(build_sheet([report], tmp_path, tmp_path))
    assert "<script>.jpg" not in html and "&lt;script&gt;.jpg" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; broken" in html
    assert 'onmouseover="alert(1)' not in html and "onmouseover=&#34;alert(1)" in html


def test_loss_history_is_downsampled_and_starts_at_the_first_evaluation(gatys) -> None:
    content = resize(load_image(sample("chelsea")).tensor, (24, 32)).unsqueeze(0)
    style_picture = resize(load_image(sample("the_scream")).tensor, (32, 24)).unsqueeze(0)
    terms = [ContentLoss(ContentLoss.Params(weight=1.0)), StyleLoss(StyleLoss.Params(weight=1e5))]
    style = {term.name: term.style_targets(gatys(style_picture, term.layers)) for term in terms if term.side == "style"}
    history = LossHistory(steps=8, weights={"content": 1.0, "style": 1e5}, points=3)
    objective = RecordingObjective(gatys, terms, content_targets(gatys, terms, content), style, history=history)
    noise = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    result = optimize(noise, objective, OptimizeSettings("adam", steps=8, lr=0.05), history.on_step)

    (curve,) = history.curves()
    assert curve["step"] == [1, 4, 8] and result.steps == 8
    start = objective.evaluate(noise)
    assert curve["total"][0] == pytest.approx(start["total"][0], rel=1e-3)
    assert curve["style"][0] == pytest.approx(start["style"][0], rel=1e-3)
    assert curve["total"][-1] < curve["total"][0] / 2  # Adam from noise: the loss falls
    for i in range(3):
        assert curve["total"][i] == pytest.approx(curve["content"][i] + 1e5 * curve["style"][i], rel=1e-3)


def test_a_float32_redo_replaces_the_points_it_repeats() -> None:
    history = LossHistory(steps=4, weights={"style": 2.0}, points=10)
    for step in (1, 2, 3):
        history.observe({"style": torch.tensor([float(10 - step)])})
        history.on_step(step, 4, 0.0)
    for step in (1, 2):  # the redo starts over
        history.observe({"style": torch.tensor([float(100 + step)])})
        history.on_step(step, 4, 0.0)
    (curve,) = history.curves()
    assert curve == {"step": [1, 2], "style": [101.0, 102.0], "total": [202.0, 204.0]}


def test_loss_curves_keep_the_shape_on_a_log_scale() -> None:
    curves = loss_curves({"step": [1, 2, 3], "total": [100.0, 10.0, 1.0], "content": [0.0, None, 5.0], "style": [1.0, 1.0, 1.0]})
    by_name = {curve.name: curve for curve in curves}
    assert set(by_name) == {"total", "style"}  # content has one positive value: no line
    ys = [float(point.split(",")[1]) for point in by_name["total"].points.split()]
    assert ys[0] < ys[1] < ys[2] and ys[1] - ys[0] == pytest.approx(ys[2] - ys[1])  # log-even steps
    assert (by_name["total"].first, by_name["total"].last) == (100.0, 1.0)


def test_a_spike_does_not_flatten_the_curve() -> None:
    (curve,) = loss_curves({"step": [1, 2, 3, 4, 5], "total": [500.0, 400.0, 3e14, 300.0, 250.0]}, names=["total"])
    ys = [float(point.split(",")[1]) for point in curve.points.split()]
    assert ys[2] == 2.0  # the spike sits on the top edge
    assert ys[4] - ys[0] > 5  # the fall from 500 to 250: 8 px of the 32 px plot (under 1 px without the cap)


def test_a_moved_output_folder_and_a_report_elsewhere_still_show_every_picture(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("coffee"))], [str(sample("starry_night"))])
    run_pipeline(load_pipeline(pipeline))
    moved = tmp_path / "copied" / "results"
    moved.parent.mkdir()
    (tmp_path / "out").rename(moved)  # report.json still names the old paths
    assert cli.invoke(app, ["report", str(moved)]).exit_code == 0
    page = (moved / "report.html").read_text()
    assert 'href="coffee__starry_night.jpg"' in page and page.count('<img src=".stylepipe/thumbs/') == 3

    elsewhere = tmp_path / "reports" / "nightly.json"  # --report FILE: the page is FILE with .html
    run_pipeline(load_pipeline(pipeline), output_dir=moved, report_path=elsewhere)
    page = (tmp_path / "reports" / "nightly.html").read_text()
    assert cells(tmp_path / "reports" / "nightly.html") == ["skipped"]
    assert 'href="../copied/results/coffee__starry_night.jpg"' in page
    assert '<img src="../copied/results/.stylepipe/thumbs/' in page


# --- the second hour: what the page shows ---------------------------------------------------------------


def test_the_page_shows_only_the_settings_the_format_uses_and_zero_failed_is_neutral(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("coffee"))], [str(sample("starry_night"))],
                              output={"format": "png", "quality": 80})
    report = run_pipeline(load_pipeline(pipeline))
    assert report.settings["output"] == "png"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "q80" not in page
    assert '<span class="none">0 failed</span>' in page and '<span class="done">1 done</span>' in page
    jpg = run_pipeline(load_pipeline(pipeline, ["output.format=jpg"]))
    assert jpg.settings["output"] == "jpg q80"


def test_thumbnails_no_job_references_are_pruned(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, [str(sample("coffee")), str(sample("chelsea"))], [str(sample("starry_night"))])
    out = tmp_path / "out"
    run_pipeline(load_pipeline(pipeline))
    folder = out / ".stylepipe" / THUMB_DIR
    assert len(list(folder.iterdir())) == 5  # two photos, the style, two outputs
    write_pipeline(tmp_path, [str(sample("coffee"))], [str(sample("starry_night"))])
    run_pipeline(load_pipeline(pipeline))
    page = (out / "report.html").read_text()
    kept = sorted(path.name for path in folder.iterdir())
    assert len(kept) == 3 and all(name in page for name in kept)
