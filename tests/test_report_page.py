"""report.html of a real small run, opened in headless Chromium (tests/chromium.py says how).

Skips only where no Chromium can be found; `.ci/run` installs the `chromium` package. Set
STYLEPIPE_SCREENSHOTS=DIR to keep the screenshots (docs/images/report/ comes from here).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.chromium import Chromium, find_chromium
from stylepipe.config.load import load_pipeline
from stylepipe.running.runner import run_pipeline

from conftest import sample

BROWSER = find_chromium()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium found: `apt-get install chromium` (what .ci/run does) or set STYLEPIPE_CHROMIUM")

HOSTILE = "<script>.jpg"
HOSTILE_ATTR = '"><img src=x onerror=alert(1)>.jpg'  # breaks out of an unquoted or badly escaped attribute


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One real run: a good photo, two hostile names and a truncated JPEG, × two styles."""
    root = tmp_path_factory.mktemp("page")
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(sample("chelsea"), photos / "chelsea.jpg")
    shutil.copy(sample("coffee"), photos / HOSTILE)
    shutil.copy(sample("astronaut"), photos / HOSTILE_ATTR)
    (photos / "broken.jpg").write_bytes(sample("tubingen").read_bytes()[:3000])
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "content": [str(photos)], "styles": [str(sample("the_scream")), str(sample("starry_night"))],
        "size": {"max_side": 48}, "optimize": {"steps": 6},
        "cache": {"dir": str(root / "cache")}, "output": {"dir": str(root / "out")},
    }))
    result = run_pipeline(load_pipeline(pipeline))
    assert result.exit_code == 1  # the broken photo's two jobs failed
    return root / "out"


@pytest.fixture(scope="module")
def browser():
    with Chromium(BROWSER, width=1280, height=900) as chromium:
        yield chromium


def _keep(shot: Path, name: str) -> None:
    folder = os.environ.get("STYLEPIPE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / name)


def test_page_loads_cleanly_with_every_job_and_every_thumbnail(run_dir: Path, browser: Chromium, tmp_path: Path) -> None:
    report = json.loads((run_dir / "report.json").read_text())
    browser.open((run_dir / "report.html").as_uri())

    assert browser.broken_images() == []
    images = browser.evaluate("[...document.images].map(img => img.getAttribute('src'))")
    assert len(images) == 3 + 2 + 6  # the content photos that decode (not broken.jpg), styles, outputs
    assert all(src.startswith(".stylepipe/thumbs/") for src in images)
    assert browser.evaluate("document.querySelectorAll('.cell[data-status]').length") == len(report["items"]) == 8
    statuses = browser.evaluate("[...document.querySelectorAll('.cell[data-status]')].map(c => c.dataset.status)")
    assert sorted(statuses) == ["done"] * 6 + ["failed"] * 2
    assert browser.evaluate("document.querySelectorAll('.cell.done svg.curve polyline.l-style').length") == 6
    assert browser.errors() == []
    browser.viewport(1100, 1450)  # tall enough to show the failed row too
    try:
        _keep(browser.screenshot(tmp_path / "test-page.jpg"), "test-page.jpg")
    finally:
        browser.viewport(1280, 900)


def test_a_failed_job_shows_its_reason(run_dir: Path, browser: Chromium) -> None:
    browser.open((run_dir / "report.html").as_uri())
    reasons = browser.evaluate("""[...document.querySelectorAll('.cell.failed .reason')].map(reason => {
        reason.scrollIntoView();
        return [reason.textContent, reason.getBoundingClientRect().height];
    })""")
    assert len(reasons) == 2
    for text, height in reasons:
        assert text.startswith("broken.jpg: image data is truncated or corrupt")  # the cause, not the folder
        assert height >= 24  # rendered, at least two lines of it
    assert browser.evaluate("document.querySelector('.failures').textContent").count("broken.jpg") >= 2


def test_hostile_file_names_are_shown_not_run(run_dir: Path, browser: Chromium) -> None:
    browser.open((run_dir / "report.html").as_uri())
    assert browser.evaluate("document.scripts.length") == 0
    assert browser.evaluate("document.querySelectorAll('img[onerror], [onerror]').length") == 0
    headers = browser.evaluate("[...document.querySelectorAll('.rowhead')].map(h => h.textContent.trim())")
    assert HOSTILE in headers and HOSTILE_ATTR in headers
    titles = browser.evaluate("[...document.querySelectorAll('.cell[data-status]')].map(c => c.title)")
    assert sum(HOSTILE in title for title in titles) == 2
    assert browser.errors() == []


def test_page_fits_a_phone_screen(run_dir: Path, browser: Chromium, tmp_path: Path) -> None:
    browser.viewport(390, 844, mobile=True, scale=2)
    try:
        browser.open((run_dir / "report.html").as_uri())
        # the contact sheet scrolls inside its own box; the page itself never scrolls sideways
        assert browser.evaluate("document.documentElement.scrollWidth") <= 390
        assert browser.evaluate("document.querySelector('.cell[data-status]').offsetWidth") == 112  # phone-sized cells
        _keep(browser.screenshot(tmp_path / "test-page-phone.jpg"), "test-page-phone.jpg")
    finally:
        browser.viewport(1280, 900)
