"""bf16 against fp32 over many pictures: is a difference in the held-out score beyond run-to-run noise?

Four pictures cannot tell: one isolated dot more or less moves a 256 px picture's count by about
0.2 per 10,000 px, and L-BFGS turns any rounding difference into a different set of dots. So every
variant styles the same larger set — the bundled photos, each also mirrored, at several sizes (a
different pixel grid each: as independent as pictures of one photo get) — with the same painting,
in one process through the library (`Stylizer`, which gives the CLI's pixels). Each picture is
judged by the held-out score (benchmarks/heldout.py) at its own size, and each variant is compared
picture by picture with the first: the mean difference, its spread, and t = mean / standard error.
A "nudged" variant (the style weight 0.005 % off: the same picture up to rounding) measures what
run-to-run noise alone does to the same comparison.

    python -m benchmarks.precision_noise --variants fp32,bf16,fp32_nudged --sizes 240 256 272
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from stylepipe import Stylizer

from ._common import (
    DEFAULT_STYLE,
    base_parser,
    bundled_photos,
    describe_machine,
    machine_info,
    markdown_table,
    workspace,
    write_result,
)
from .heldout import HeldOutScore

#: Stylizer keywords per variant; everything else at the defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "default": {},
    "fp32_nudged": {"precision": "fp32", "style_weight": 200.01},
    "bf16_nudged": {"precision": "bf16", "style_weight": 200.01},
}
METRICS = ("style", "content", "speckles")


def photo_set(folder: Path) -> list[Path]:
    """The bundled photos and a mirrored copy of each (a mirror is another picture to the network)."""
    photos: list[Path] = []
    for photo in bundled_photos():
        mirrored = folder / f"{photo.stem}_mirrored.png"
        with Image.open(photo) as image:
            ImageOps.mirror(image.convert("RGB")).save(mirrored)
        photos += [photo, mirrored]
    return photos


def style_all(variant: str, photos: Sequence[Path], style: Path, sizes: Sequence[int], out_dir: Path) -> dict[str, dict[str, float]]:
    """One variant's pictures and their held-out scores, keyed `photo@size`."""
    stylizer = Stylizer(**VARIANTS[variant])
    handle = stylizer.style(style)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict[str, float]] = {}
    for size in sizes:
        judge = HeldOutScore(style, size)
        for photo in photos:
            started = time.perf_counter()
            picture = stylizer.stylize(photo, handle, max_side=size)
            seconds = time.perf_counter() - started
            path = out_dir / f"{photo.stem}@{size}.png"
            picture.save(path)
            score = judge.score(path, photo)
            scores[f"{photo.stem}@{size}"] = {"seconds": round(seconds, 2), **score.as_dict()}
            print(f"{variant:12s} {photo.stem:20s} {size:4d} px {seconds:5.1f} s  {score.as_dict()}", flush=True)
    stylizer.close()
    return scores


def paired(scores: Mapping[str, dict[str, float]], reference: Mapping[str, dict[str, float]], metric: str) -> dict[str, float]:
    """Picture-by-picture difference from the reference: mean, spread, t, and how many went each way."""
    diffs = [scores[key][metric] - reference[key][metric] for key in reference]
    mean = statistics.fmean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    error = spread / len(diffs) ** 0.5
    return {"mean": statistics.fmean(s[metric] for s in scores.values()), "difference": mean, "sd": spread,
            "t": mean / error if error else 0.0, "higher": sum(d > 0 for d in diffs), "lower": sum(d < 0 for d in diffs)}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("precision_noise", __doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="fp32,bf16,fp32_nudged",
                        help=f"comma-separated, the first is the reference: any of {', '.join(VARIANTS)}")
    parser.add_argument("--sizes", type=int, nargs="+", default=[240, 256, 272], help="longest sides, px")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown or len(chosen) < 2:
        parser.error(f"give at least two variants of {', '.join(VARIANTS)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    machine = machine_info()
    print(describe_machine(machine))
    with workspace(args.workdir) as work:
        photos = photo_set(work)
        results = {name: style_all(name, photos, args.style, args.sizes, work / name) for name in chosen}
    reference = results[chosen[0]]
    summary = {name: {metric: paired(results[name], reference, metric) for metric in METRICS} for name in chosen}
    rows = []
    for name in chosen:
        seconds = sum(s["seconds"] for s in results[name].values())
        cells = [f"{summary[name][m]['mean']:.4f} ({summary[name][m]['difference']:+.4f}, t {summary[name][m]['t']:+.1f})"
                 if name != chosen[0] else f"{summary[name][m]['mean']:.4f}" for m in METRICS]
        rows.append([name, len(results[name]), round(seconds), *cells])
    print(markdown_table(["variant", "pictures", "s", "style (diff, t)", "content (diff, t)", "dots/10k (diff, t)"], rows))
    write_result(args.json, {"benchmark": "precision_noise", "machine": machine, "style": args.style, "sizes": args.sizes,
                             "variants": chosen, "summary": summary, "pictures": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
