"""The docs gallery: every sample photo × painting by stylepipe at its defaults next to pastiche's,
and each painting's palette, with the time each took and the held-out score (benchmarks/heldout.py).

Runs stylepipe as a user does (one `stylepipe run` per painting over the four photos, defaults, PNG
outputs) and pastiche as its users do (one process per picture, its defaults, 100 steps, the same
output size), then writes small JPEGs to docs/images/gallery/ and the page docs/gallery.md.
Setting up pastiche: see benchmarks/throughput.py.

    .venv/bin/python -m benchmarks.gallery                 # everything (about half an hour on 2 cores)
    .venv/bin/python -m benchmarks.gallery --skip-pastiche # stylepipe and palettes only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from PIL import Image

from ._common import CONTENT_DIR, REPO, run_stylepipe, workspace
from .heldout import HeldOutScore
from .throughput import PASTICHE, run_pastiche

STYLE_DIR = REPO / "samples" / "styles"
IMAGES = REPO / "docs" / "images" / "gallery"
PAGE = REPO / "docs" / "gallery.md"
THUMB = 256


def _pipeline(folder: Path, style: Path, size: int, mode: str = "transfer") -> Path:
    """A user's pipeline: content, style, size and PNG outputs; everything else at the defaults."""
    config = {"version": 1, "mode": mode, "styles": [str(style)], "size": {"max_side": size},
              "output": {"dir": "outputs", "format": "png"}, "cache": {"dir": str(folder / "cache")}}
    if mode == "transfer":
        config["content"] = str(CONTENT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{style.stem}-{mode}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _small(source: Path, name: str) -> str:
    """A small JPEG of an output under docs/images/gallery/; returns its path relative to docs/."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    target = IMAGES / f"{name}.jpg"
    with Image.open(source) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((THUMB, THUMB))
        picture.save(target, quality=85)
    return str(target.relative_to(REPO / "docs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--skip-pastiche", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the full-size outputs here")
    parser.add_argument("--render-from", type=Path, default=None,
                        help="only re-render the page from a kept --workdir (whatever styles it finished)")
    args = parser.parse_args(argv)
    if args.render_from:
        return render_from(args.render_from, args.size)
    contents = sorted(CONTENT_DIR.glob("*.jpg"))
    styles = sorted(STYLE_DIR.glob("*.jpg"))
    cells: dict[str, dict[str, dict[str, object]]] = {}
    palettes: list[tuple[str, str, float]] = []
    with workspace(args.workdir) as work:
        for style in styles:
            judge = HeldOutScore(style, args.size)
            run = run_stylepipe(_pipeline(work, style, args.size), work / style.stem)
            per_image = run.process.wall_s / len(run.done)  # start-up and targets shared, as users pay them
            for item in run.done:
                content = Path(item["content"])
                output = Path(item["output"])
                score = judge.score(output, content).as_dict()
                cells.setdefault(content.stem, {})[style.stem] = {
                    "stylepipe": _small(output, f"{content.stem}__{style.stem}"), "stylepipe_s": per_image,
                    "stylepipe_score": score}
            if not args.skip_pastiche:
                processes, outputs = run_pastiche(PASTICHE, contents, style, work / f"pastiche-{style.stem}", args.size,
                                                  100, "cpu")
                for content, process, output in zip(contents, processes, outputs):
                    cells[content.stem][style.stem].update(
                        pastiche=_small(output, f"{content.stem}__{style.stem}__pastiche"), pastiche_s=process.wall_s,
                        pastiche_score=judge.score(output, content).as_dict())
            palette = run_stylepipe(_pipeline(work, style, args.size, "palette"), work / f"palette-{style.stem}")
            palettes.append((style.stem, _small(Path(palette.done[0]["output"]), f"palette__{style.stem}"),
                             palette.process.wall_s))
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "gallery.json").write_text(
        json.dumps({"size": args.size, "cells": cells, "palettes": palettes}, indent=2) + "\n")
    PAGE.write_text(render(cells, palettes, styles, args.size, not args.skip_pastiche))
    print(f"wrote {PAGE} and {len(cells)} rows of pictures under {IMAGES}", file=sys.stderr)
    return 0


def render_from(work: Path, size: int) -> int:
    """The page from a kept workdir: stylepipe's reports, pastiche's PNGs (its per-picture time is
    the gap between consecutive outputs' modification times, as its processes ran one after the
    other), and the palettes' reports. Styles the run did not reach are left out."""
    contents = sorted(CONTENT_DIR.glob("*.jpg"))
    styles = [s for s in sorted(STYLE_DIR.glob("*.jpg")) if (work / s.stem / "report.json").exists()]
    cells: dict[str, dict[str, dict[str, object]]] = {}
    palettes: list[tuple[str, str, float]] = []
    for style in styles:
        judge = HeldOutScore(style, size)
        report = json.loads((work / style.stem / "report.json").read_text())
        done = [item for item in report["items"] if item["status"] == "done"]
        per_image = report["summary"]["seconds"] / max(1, len(done))
        for item in done:
            content, output = Path(item["content"]), Path(item["output"])
            cells.setdefault(content.stem, {})[style.stem] = {
                "stylepipe": _small(output, f"{content.stem}__{style.stem}"), "stylepipe_s": per_image,
                "stylepipe_score": judge.score(output, content).as_dict()}
        previous = (work / style.stem / "report.json").stat().st_mtime
        for content in contents:
            output = work / f"pastiche-{style.stem}" / f"{content.stem}__{style.stem}.png"
            if not output.exists():
                break
            finished = output.stat().st_mtime
            cells[content.stem][style.stem].update(
                pastiche=_small(output, f"{content.stem}__{style.stem}__pastiche"), pastiche_s=finished - previous,
                pastiche_score=judge.score(output, content).as_dict())
            previous = finished
    for style in sorted(STYLE_DIR.glob("*.jpg")):  # palettes: every painting whose palette was made
        palette = work / f"palette-{style.stem}" / "report.json"
        if palette.exists():
            item = json.loads(palette.read_text())["items"][0]
            palettes.append((style.stem, _small(Path(item["output"]), f"palette__{style.stem}"), item["seconds"]))
    PAGE.write_text(render(cells, palettes, styles, size, True, total=len(list(STYLE_DIR.glob("*.jpg")))))
    print(f"wrote {PAGE} from {work}: {len(styles)} painting(s)", file=sys.stderr)
    return 0


def _score(score: dict[str, float]) -> str:
    return f"style {score['style']:.3f} · content {score['content']:.3f} · dots {score['speckles']:.1f}"


def render(cells, palettes, styles: list[Path], size: int, with_pastiche: bool, total: int | None = None) -> str:
    """The gallery page: per photo and painting, stylepipe's output (and pastiche's) with times."""
    lines = ["# Gallery: stylepipe at its defaults" + (", next to pastiche" if with_pastiche else ""), "",
             f"Every sample photo × painting at {size} px on a 2-core CPU, made by `benchmarks/gallery.py` "
             "(regenerate with `.venv/bin/python -m benchmarks.gallery`). stylepipe runs as a user runs it: "
             "one `stylepipe run` per painting over the four photos, every setting at its default (50 L-BFGS "
             "steps, style weight 200, TV 10). pastiche 1.6.0 runs at its defaults with 100 steps, one process "
             "per picture. Seconds are wall time per picture, start-up included, on a machine shared with "
             "other work at the time: compare the two columns with each other (the quiet comparison is in "
             "[quality.md](quality.md)). Under each picture: the "
             "held-out score ([quality.md](quality.md): lower style and content distances are more stylised "
             "and more faithful; dots = isolated speckles per 10,000 px).", ""]
    if total is not None and len(styles) < total:
        lines += [f"This page covers {len(styles)} of the {total} sample paintings' transfers: the run that made it "
                  "was stopped before the others (`benchmarks/gallery.py` makes them all).", ""]
    for style in styles:
        lines += [f"## {style.stem.replace('_', ' ').replace('-', ' ')}", "",
                  "| photo | stylepipe | " + ("pastiche |" if with_pastiche else ""),
                  "|---|---|" + ("---|" if with_pastiche else "")]
        for content, row in sorted(cells.items()):
            cell = row.get(style.stem)
            if not cell:
                continue
            ours = f"![]({cell['stylepipe']})<br>{cell['stylepipe_s']:.0f} s · {_score(cell['stylepipe_score'])}"
            theirs = (f"![]({cell['pastiche']})<br>{cell['pastiche_s']:.0f} s · {_score(cell['pastiche_score'])}"
                      if with_pastiche and "pastiche" in cell else "")
            lines.append(f"| {content} | {ours} | " + (f"{theirs} |" if with_pastiche else ""))
        lines.append("")
    lines += ["## Palettes", "", "`mode: palette` at its defaults (350 steps, 3 levels coarse to fine, noise 0.3): "
              "the painting's texture without any photo.", "",
              "| " + " | ".join(name for name, _, _ in palettes) + " |", "|" + "---|" * len(palettes),
              "| " + " | ".join(f"![]({path})<br>{seconds:.0f} s" for _, path, seconds in palettes) + " |", ""]
    return "\n".join(lines + sizes_section())


def sizes_section() -> list[str]:
    """One photo at every output size, from the pictures `benchmarks/sizes.py --gallery` leaves in
    docs/images/sizes/ (none there: no section)."""
    folder = REPO / "docs" / "images" / "sizes"
    wholes = sorted(folder.glob("*__whole.jpg"), key=lambda p: int(p.stem.split("__")[-2]))
    if not wholes:
        return []
    photo, style = wholes[0].stem.split("__")[:2]
    lines = ["## One photo at every size", "",
             f"{photo} × {style.replace('_', ' ')} at the defaults, at each output size (docs/sizes.md): the whole "
             "picture scaled down to 256 px, and a 256 px crop at 100 %, made by `benchmarks/sizes.py --gallery`.", "",
             "| output | whole, scaled down | crop at 100 % |", "|---|---|---|"]
    for whole in wholes:
        side = whole.stem.split("__")[-2]
        crop = whole.with_name(whole.name.replace("__whole", "__crop"))
        lines.append(f"| {side} px | ![](images/sizes/{whole.name}) | ![](images/sizes/{crop.name}) |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
