"""Each output judged twice: at its own size (a print, seen at 100 %) and scaled down to 256 px.

benchmarks/sizes.py judges outputs scaled down, as issue #18 asks; a refine level can look right
there and still add isolated pixels that only show at 100 %. This styles the bundled photos with
one painting at one size through the library (`Stylizer`, the CLI's pixels), once per variant of
Stylizer keywords, and gives the held-out score (benchmarks/heldout.py) both ways.

    python -m benchmarks.full_size --size 512 --variant default: --variant "every pixel:style_detail=1"
    python -m benchmarks.full_size --size 1024 --photos tubingen coffee --variant default: --variant "every pixel:style_detail=1"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stylepipe import Stylizer

from ._common import (
    DEFAULT_STYLE,
    base_parser,
    bundled_photos,
    describe_machine,
    machine_info,
    markdown_table,
    write_result,
)
from .heldout import HeldOutScore, Score

THUMBNAIL = 256


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`name:key=value,key=value` → (name, Stylizer keywords); values read as YAML (`0` is a number)."""
    name, _, assignments = text.partition(":")
    keywords = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        keywords[key.strip()] = yaml.safe_load(value)
    return name.strip(), keywords


def mean(scores: list[Score]) -> dict[str, float]:
    n = len(scores)
    return {"style": sum(s.style for s in scores) / n, "content": sum(s.content for s in scores) / n,
            "speckles": sum(s.speckles for s in scores) / n}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("full_size", __doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="longest side of the outputs, px")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,…",
                        help="Stylizer keywords of one variant (repeatable); `default:` for the defaults")
    parser.add_argument("--photos", nargs="*", default=None, metavar="STEM", help="bundled photos by stem (default: all)")
    args = parser.parse_args(argv)
    machine = machine_info()
    print(describe_machine(machine))
    photos = [photo for photo in bundled_photos() if args.photos is None or photo.stem in args.photos]
    full, small = HeldOutScore(args.style, args.size), HeldOutScore(args.style, THUMBNAIL)
    out_dir = args.workdir or Path("/tmp") / "stylepipe-full-size"
    results: dict[str, Any] = {}
    rows = []
    for name, keywords in map(parse_variant, args.variant):
        stylizer = Stylizer(max_side=args.size, **keywords)
        style = stylizer.style(args.style)
        at_size, scaled = [], []
        for photo in photos:
            path = out_dir / name.replace(" ", "_") / f"{photo.stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            stylizer.stylize(photo, style).save(path)
            at_size.append(full.score(path, photo))
            scaled.append(small.score(path, photo))
            print(f"{name}: {photo.stem} at {args.size} px {at_size[-1].as_dict()}, at {THUMBNAIL} px {scaled[-1].as_dict()}", flush=True)
        stylizer.close()
        results[name] = {"keywords": keywords, "at_size": mean(at_size), "scaled_down": mean(scaled),
                         "pictures": {p.stem: {"at_size": a.as_dict(), "scaled_down": b.as_dict()}
                                      for p, a, b in zip(photos, at_size, scaled)}}
        a, b = results[name]["at_size"], results[name]["scaled_down"]
        rows.append([name, a["style"], a["content"], a["speckles"], b["style"], b["content"], b["speckles"]])
    print(markdown_table(["variant", f"style at {args.size}", "content", "dots/10k", f"style at {THUMBNAIL}", "content",
                          "dots/10k"], rows))
    write_result(args.json, {"benchmark": "full_size", "machine": machine, "size": args.size, "style": args.style,
                             "variants": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
