"""The same painting at every size: time and held-out score of default outputs from 256 px to print.

One `stylepipe run` per output size, at the defaults (only `size.max_side` changes), over the
bundled photos × paintings. Every output is scaled down to 256 px and judged by the held-out score
(benchmarks/heldout.py: style and content distances at layers and a pooling no loss uses, and
isolated dots per 10,000 px), next to the same photo's 256 px output: a look that does not depend
on the output size scores the same at every size. `--gallery PHOTO` also writes, per size, the
whole picture scaled down and a 100 % crop of it, for docs/gallery.md.

    python -m benchmarks.sizes --sizes 256 512 1024 --big 2048 --big-photos tubingen chelsea
    python -m benchmarks.sizes --sizes 256 1024 --big --pairs tubingen:starry_night chelsea:the_scream
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from ._common import (
    CONTENT_DIR,
    REPO,
    base_parser,
    describe_machine,
    machine_info,
    markdown_table,
    run_stylepipe,
    workspace,
    write_result,
)
from .heldout import HeldOutScore

JUDGE_SIDE = 256
CROP = 256  # side of the 100 % crops in the gallery


def write_default_pipeline(folder: Path, photos: Sequence[Path], styles: Sequence[Path], cache: Path) -> Path:
    """A pipeline at the defaults: only inputs, lossless outputs and a shared cache are set."""
    config: dict[str, Any] = {
        "version": 1,
        "content": [str(p) for p in photos],
        "styles": [str(s) for s in styles],
        "output": {"dir": "outputs", "pattern": "{content}__{style}.{ext}", "format": "png"},
        "cache": {"dir": str(cache)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_size(work: Path, side: int, pairs: Sequence[tuple[Path, Path]], settings: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Runs at `side` px, one per painting over its photos: per output, its photo, style, path, seconds, steps.
    `settings` are extra `--set` assignments for every run (the defaults when empty)."""
    rows = []
    for style in sorted({style for _, style in pairs}):
        photos = [photo for photo, s in pairs if s == style]
        folder = work / f"s{side}" / style.stem
        pipeline = write_default_pipeline(folder, photos, [style], work / "cache")
        start = time.perf_counter()
        run = run_stylepipe(pipeline, folder / "outputs", [f"size.max_side={side}", *settings])
        print(f"{side} px × {style.stem}: {len(run.done)} pictures in {time.perf_counter() - start:.0f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
        for item in run.done:
            rows.append({"size": side, "photo": Path(item["content"]).stem, "style": style.stem,
                         "style_path": str(style), "output": item["output"], "content": item["content"],
                         "seconds": item["seconds"], "steps": item["steps"], "load": round(os.getloadavg()[0], 1),
                         "settings": list(settings)})
    return rows


def score_rows(rows: list[dict[str, Any]]) -> None:
    """Adds the held-out score of each output, scaled down to 256 px, in place."""
    judges: dict[str, HeldOutScore] = {}
    for row in rows:
        judge = judges.setdefault(row["style_path"], HeldOutScore(Path(row["style_path"]), JUDGE_SIDE))
        score = judge.score(Path(row["output"]), Path(row["content"]))
        row.update(style_distance=round(score.style, 4), content_distance=round(score.content, 4),
                   speckles=round(score.speckles, 2))


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per size: pictures, mean seconds, and each score's mean and its ratio to the same pairs at 256 px."""
    base = {(r["photo"], r["style"]): r for r in rows if r["size"] == JUDGE_SIDE}
    table = []
    for side in sorted({r["size"] for r in rows}):
        group = [r for r in rows if r["size"] == side]
        paired = [(r, base[(r["photo"], r["style"])]) for r in group if (r["photo"], r["style"]) in base]
        mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
        table.append([
            side, len(group), mean([r["seconds"] for r in group]),
            mean([r["style_distance"] for r in group]), mean([r["style_distance"] / b["style_distance"] for r, b in paired]),
            mean([r["content_distance"] for r in group]), mean([r["content_distance"] / b["content_distance"] for r, b in paired]),
            mean([r["speckles"] for r in group]), mean([b["speckles"] for _, b in paired]),
        ])
    return markdown_table(["px", "pictures", "s / picture", "style dist.", "÷ 256 px", "content dist.", "÷ 256 px",
                           "speckles", "speckles at 256 px"], table)


def pair_table(rows: list[dict[str, Any]]) -> str:
    """Every output's score next to its 256 px twin's."""
    base = {(r["photo"], r["style"]): r for r in rows if r["size"] == JUDGE_SIDE}
    lines = []
    for r in sorted(rows, key=lambda r: (r["photo"], r["style"], r["size"])):
        b = base.get((r["photo"], r["style"]))
        lines.append([r["photo"], r["style"], r["size"], r["seconds"], r["style_distance"],
                      b and r["style_distance"] / b["style_distance"], r["content_distance"],
                      b and r["content_distance"] / b["content_distance"], r["speckles"]])
    return markdown_table(["photo", "style", "px", "s", "style dist.", "÷ 256 px", "content dist.", "÷ 256 px",
                           "speckles"], lines)


def gallery(rows: list[dict[str, Any]], photo: str, style: str, folder: Path) -> list[Path]:
    """Per size: the whole output scaled to 256 px and a 100 % crop at the same relative place."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in sorted((r for r in rows if r["photo"] == photo and r["style"] == style), key=lambda r: r["size"]):
        with Image.open(r["output"]) as opened:
            picture = opened.convert("RGB")
        whole = picture.copy()
        whole.thumbnail((JUDGE_SIDE, JUDGE_SIDE), Image.Resampling.LANCZOS)
        left = max(0, min(picture.width - CROP, round(picture.width * 0.6) - CROP // 2))
        top = max(0, min(picture.height - CROP, round(picture.height * 0.35) - CROP // 2))
        crop = picture.crop((left, top, left + min(CROP, picture.width), top + min(CROP, picture.height)))
        for kind, image in (("whole", whole), ("crop", crop)):
            path = folder / f"{photo}__{style}__{r['size']}__{kind}.jpg"
            image.save(path, quality=90)
            written.append(path)
    return written


def main() -> None:
    parser = base_parser("sizes", __doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="output sizes, every pair")
    parser.add_argument("--big", type=int, nargs="*", default=[2048], help="larger sizes, on --big-photos only")
    parser.add_argument("--big-photos", nargs="*", default=["tubingen", "chelsea"])
    parser.add_argument("--big-styles", nargs="*", default=["starry_night", "the_scream"])
    parser.add_argument("--photos", nargs="*", default=None, help="photo stems (default: all bundled)")
    parser.add_argument("--styles", nargs="*", default=None, help="painting stems (default: all bundled)")
    parser.add_argument("--rescore", type=Path, default=None, metavar="JSON",
                        help="no runs: score the outputs a previous --json names again, and redo tables and gallery")
    parser.add_argument("--pairs", nargs="*", default=None, metavar="PHOTO:STYLE",
                        help="only these pairs (stems), at every size, instead of photos × styles")
    parser.add_argument("--gallery", nargs=2, metavar=("PHOTO", "STYLE"), default=None,
                        help="write whole and 100%% crop pictures of this pair per size")
    parser.add_argument("--gallery-dir", type=Path, default=Path("docs/images/sizes"))
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every run, as `stylepipe run --set` (repeatable; default: the defaults)")
    args = parser.parse_args()
    photos = sorted(p for p in CONTENT_DIR.glob("*.jpg") if args.photos is None or p.stem in args.photos)
    styles = sorted(p for p in (REPO / "samples" / "styles").glob("*.jpg") if args.styles is None or p.stem in args.styles)
    pairs = [(p, s) for p in photos for s in styles]
    if args.pairs:
        wanted = {tuple(pair.split(":", 1)) for pair in args.pairs}
        pairs = [(p, s) for p, s in pairs if (p.stem, s.stem) in wanted]
    if JUDGE_SIDE not in args.sizes:
        parser.error(f"--sizes must include {JUDGE_SIDE}: every score is compared with the {JUDGE_SIDE} px output")
    rows: list[dict[str, Any]] = []
    if args.rescore:
        rows = json.loads(args.rescore.read_text())["rows"]
        score_rows(rows)
        report(args, rows, gallery(rows, *args.gallery, args.gallery_dir) if args.gallery else [])
        return
    with workspace(args.workdir) as work:
        for side in args.sizes:
            rows += run_size(work, side, pairs, args.settings)
        big = [(p, s) for p, s in pairs if p.stem in args.big_photos and s.stem in args.big_styles]
        for side in args.big or []:
            rows += run_size(work, side, big, args.settings)
        score_rows(rows)
        pictures = gallery(rows, *args.gallery, args.gallery_dir) if args.gallery else []
    report(args, rows, pictures)


def report(args: Any, rows: list[dict[str, Any]], pictures: list[Path]) -> None:
    """Tables on stdout, everything in the JSON."""
    info = machine_info()
    print(describe_machine(info))
    print(summary_table(rows))
    print()
    print(pair_table(rows))
    path = write_result(args.json, {"machine": info, "rows": rows, "gallery": [str(p) for p in pictures]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
