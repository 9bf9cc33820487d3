"""How long a 2,000-item report.html takes to build and to open in headless Chromium.

Builds a synthetic run folder — 100 content photos × 20 styles, each output a real 256 px JPEG,
3% failed (some with hostile names), 2% skipped, every done item with a 40-point loss history —
then times (1) `page_for_folder` with no thumbnails yet and again with all of them made, and
(2) opening the page in a fresh headless Chromium each round: navigation to the load event,
first contentful paint, and a scroll from the top to the last row (rows off screen are laid out
only when they come into view: `content-visibility: auto`). The browser is driven over the
DevTools protocol by tests/chromium.py, the same client the acceptance tests use.

Acceptance (issue 12): the page renders in under 2 seconds in that browser.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from stylepipe.report.page import page_for_folder

from ._common import REPO, base_parser, describe_machine, machine_info, markdown_table, workspace, write_result
from .chromium import Chromium, find_chromium

CONTENTS, STYLES = 100, 20
SIDE = 256


def _pictures(folder: Path, sources: list[Path], count: int, prefix: str) -> list[Path]:
    """`count` distinct pictures cut from the samples (a sliding crop each), 512 px."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            shift = (index * 7) % 40 / 100
            box = (int(img.width * shift / 2), int(img.height * shift / 3), img.width, img.height)
            picture = img.crop(box)
            picture.thumbnail((512, 512))
        name = f"{prefix}{index:03d}.jpg" if index % 25 else f"{prefix}{index:03d} <b>&amp;.jpg"  # a few hostile names
        path = folder / name
        picture.save(path, quality=85)
        out.append(path)
    return out


def _history(seed: int) -> dict[str, list[float]]:
    steps = list(range(1, 301, 8)) + [300]
    content = [0.05 + 0.3 * (1 - math.exp(-s / 60)) + 0.001 * (seed % 7) for s in steps]
    style = [2e-4 * math.exp(-s / (40 + seed % 30)) + 1e-6 for s in steps]
    return {"step": steps, "content": content, "style": style, "total": [c + 1e6 * s for c, s in zip(content, style)]}


def build_run(root: Path) -> Path:
    """The output folder of a synthetic 2,000-job run, with report.json and every output file."""
    samples = REPO / "samples"
    contents = _pictures(root / "photos", sorted((samples / "content").glob("*.jpg")), CONTENTS, "photo")
    styles = _pictures(root / "styles", sorted((samples / "styles").glob("*.jpg")), STYLES, "style")
    out = root / "out"
    out.mkdir(parents=True, exist_ok=True)
    items: list[dict[str, Any]] = []
    small_styles = []
    for style in styles:
        with Image.open(style) as img:
            small_styles.append(img.convert("RGB"))
    for c, content in enumerate(contents):
        with Image.open(content) as img:
            photo = img.convert("RGB")
            photo.thumbnail((SIDE, SIDE))
        for s, style in enumerate(styles):
            job = c * STYLES + s
            item: dict[str, Any] = {"content": str(content), "style": style.stem, "job": job, "steps": 300}
            if job % 33 == 5:
                item.update(status="failed", output=None, error=f"{content}: image data is truncated or corrupt (<broken> & cut short)")
            else:
                output = out / f"{content.stem}__{style.stem}.jpg"
                Image.blend(photo, small_styles[s].resize(photo.size), 0.35).save(output, quality=85)
                status = "skipped" if job % 50 == 7 else "done"
                item.update(status=status, output=str(output))
                if status == "done":
                    history = _history(job)
                    item.update(seconds=40.0 + job % 13, history=history,
                                loss={"content": history["content"][-1], "style": history["style"][-1], "total": history["total"][-1]})
            items.append(item)
    report = {"version": 1, "stylepipe": "bench", "pipeline": str(root / "pipeline.yaml"), "device": "cuda", "items": items,
              "style_targets": {"computed": STYLES, "cache_hits": 0}, "network": "vgg19-gatys",
              "summary": {"seconds": 86_400.0}, "styles": {p.stem: [str(p)] for p in styles},
              "settings": {"mode": "transfer", "size": "max_side 512", "optimizer": "lbfgs", "steps": 300}}
    (out / "report.json").write_text(json.dumps(report))
    return out


def time_render(out: Path) -> dict[str, float]:
    start = time.perf_counter()
    page_for_folder(out)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    page = page_for_folder(out)
    warm = time.perf_counter() - start
    return {"render_cold_s": cold, "render_warm_s": warm, "page_bytes": page.stat().st_size}


SCROLL_TO_END = """(async () => {
    const sheet = document.querySelector('.sheet');
    const frame = () => new Promise(resolve => requestAnimationFrame(() => resolve()));
    const start = performance.now();
    sheet.scrollTop = sheet.scrollHeight;
    await frame(); await frame();
    return performance.now() - start;
})()"""


def time_browser(page: Path, binary: str, rounds: int) -> list[dict[str, float]]:
    results = []
    for _ in range(rounds):
        with Chromium(binary, width=1280, height=900, timeout=120) as browser:
            wall = browser.open(page.as_uri())
            timing = browser.evaluate("""(() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const paint = performance.getEntriesByName('first-contentful-paint')[0];
                return {dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, fcp: paint ? paint.startTime : null,
                        cells: document.querySelectorAll('.cell[data-status]').length};
            })()""")
            scroll = browser.evaluate(SCROLL_TO_END)
            errors = browser.errors()
        results.append({"navigate_to_load_s": wall, "dom_content_loaded_s": timing["dom"] / 1000,
                        "load_event_s": timing["load"] / 1000,
                        "first_contentful_paint_s": timing["fcp"] / 1000 if timing["fcp"] is not None else None,
                        "scroll_to_last_row_s": scroll / 1000, "cells": timing["cells"], "errors": len(errors)})
    return results


def main() -> None:
    parser = base_parser("html_report", __doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="browser rounds, each in a fresh Chromium")
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        sys.exit("no Chromium found: apt-get install chromium, or set STYLEPIPE_CHROMIUM")
    info = machine_info()
    with workspace(args.workdir) as root:
        start = time.perf_counter()
        out = build_run(root)
        print(f"built the synthetic run in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        render = time_render(out)
        rounds = time_browser(out / "report.html", binary, args.rounds)
    keys = ["navigate_to_load_s", "dom_content_loaded_s", "first_contentful_paint_s", "load_event_s", "scroll_to_last_row_s"]
    seen = {key: [r[key] for r in rounds if r[key] is not None] for key in keys}  # a round may record no paint entry
    median = {key: statistics.median(values) if values else None for key, values in seen.items()}
    rows = [[key.removesuffix("_s").replace("_", " "), median[key], min(seen[key], default=None), max(seen[key], default=None)]
            for key in keys]
    print(f"machine: {describe_machine(info)}")
    print(f"items: {rounds[0]['cells']}; page {render['page_bytes'] / 1e6:.2f} MB; build (thumbnails made) "
          f"{render['render_cold_s']:.2f} s, rebuild {render['render_warm_s']:.2f} s; console errors {rounds[0]['errors']}")
    print(markdown_table(["browser, seconds", "median", "min", "max"], rows))
    write_result(args.json, {"machine": info, "render": render, "rounds": rounds, "median": median,
                             "chromium": binary, "under_2_s": median["load_event_s"] < 2.0})


if __name__ == "__main__":
    main()
