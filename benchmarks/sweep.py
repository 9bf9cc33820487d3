"""Sweep of the transfer defaults: style weight × steps × schedule × TV, judged by the held-out score.

Runs stylepipe's public API (`Stylizer`: the network loaded once per setting, every style target
computed once) over the sample photos × paintings at one size, writes every output as PNG, and
prints one row per setting with the held-out score (benchmarks/heldout.py: style and content
distances at layers no loss uses, speckles per 10,000 px) and the optimisation seconds. Seconds
here are for comparing settings with each other on one machine; the peer comparison
(`throughput.py`) times `stylepipe run` as users do.

    .venv/bin/python -m benchmarks.sweep "sw=200,steps=50,tv=10" "sw=100,split=40+40"   # docs/quality.md
    .venv/bin/python -m benchmarks.sweep "sw=200,steps=50" --styles starry_night --contents chelsea
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylepipe import Stylizer
from stylepipe.io.images import save_image

from ._common import CONTENT_DIR, REPO, markdown_table, write_result
from .heldout import HeldOutScore

STYLE_DIR = REPO / "samples" / "styles"


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    style_weight: float
    steps: int
    levels: int = 1
    factor: float = 2.0
    split: tuple[int, ...] | None = None
    tv: float = 0.0
    optimizer: str = "lbfgs"
    palette: bool = False  # style only, from noise (the palette mode)
    noise: float = 1.0  # palette: noise amplitude around mid-grey (1: uniform over [0, 1])
    precision: str = "auto"  # optimize.precision: fp32, bf16 (docs/benchmarks.md, "bf16 on the CPU")

    def label(self) -> str:
        schedule = f"{self.levels} levels ×{self.factor:g} {list(self.split) if self.split else ''}" if self.levels > 1 else "single"
        mode = f"palette, noise {self.noise:g}, " if self.palette else ""
        precision = f", {self.precision}" if self.precision != "auto" else ""
        return f"{mode}sw {self.style_weight:g}, {self.steps} steps, {schedule}, tv {self.tv:g}{precision}"


def parse_setting(text: str) -> Setting:
    """`sw=300,steps=100,levels=2,factor=2,split=60+40,tv=0[,palette=1,noise=0.5][,prec=bf16]`."""
    values: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        values[key.strip()] = value.strip()
    split = tuple(int(v) for v in values["split"].split("+")) if "split" in values else None
    return Setting(float(values.get("sw", 300)), int(values.get("steps", sum(split) if split else 100)),
                   int(values.get("levels", len(split) if split else 1)), float(values.get("factor", 2)), split,
                   float(values.get("tv", 0)), values.get("opt", "lbfgs"), values.get("palette", "0") == "1",
                   float(values.get("noise", 1)), values.get("prec", "auto"))


def stylizer_for(setting: Setting, size: int, device: str) -> Stylizer:
    """The setting as the Python API's keywords: what `stylepipe run` does with the same keys."""
    pyramid: dict[str, Any] = {"levels": setting.levels, "factor": setting.factor}
    if setting.split:
        pyramid["steps"] = list(setting.split)
    palette = {"init": "noise", "noise": setting.noise, "content_weight": 0.0} if setting.palette else {}
    return Stylizer(device=device, max_side=size, steps=setting.steps, optimizer=setting.optimizer, seed=0,
                    style_weight=setting.style_weight, tv_weight=setting.tv, pyramid=pyramid, precision=setting.precision,
                    **palette)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", help="sw=…,steps=…,levels=…,factor=…,split=a+b,tv=…")
    parser.add_argument("--styles", default="starry_night", help="comma-separated style stems, or 'all'")
    parser.add_argument("--contents", default="all", help="comma-separated content stems, or 'all'")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/stylepipe-sweep"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    styles = sorted(STYLE_DIR.glob("*.jpg")) if args.styles == "all" else [STYLE_DIR / f"{s}.jpg" for s in args.styles.split(",")]
    contents = sorted(CONTENT_DIR.glob("*.jpg")) if args.contents == "all" else [CONTENT_DIR / f"{c}.jpg" for c in args.contents.split(",")]
    settings = [parse_setting(text) for text in args.settings]
    stylizers = [stylizer_for(setting, args.size, args.device) for setting in settings]
    rows, records = [], []
    for style_path in styles:
        judge = HeldOutScore(style_path, args.size, args.device)
        for index, (setting, stylizer) in enumerate(zip(settings, stylizers)):
            style = stylizer.style(style_path)
            folder = args.out / f"s{index}"
            folder.mkdir(parents=True, exist_ok=True)
            seconds, pairs = 0.0, []
            for content_path in contents:
                start = time.perf_counter()
                image = stylizer.stylize(content_path, style, as_tensor=True)
                seconds += time.perf_counter() - start
                output = folder / f"{content_path.stem}__{style_path.stem}.png"
                save_image(image.cpu(), output, "png")
                pairs.append((output, content_path))
            score = judge.mean(pairs)
            rows.append([style_path.stem, setting.label(), score.style, score.content, score.speckles, seconds / len(pairs)])
            records.append({"painting": style_path.stem, "setting": setting.label(), "folder": str(folder),
                            **{f"{key}_score": value for key, value in score.as_dict().items()},
                            "seconds_per_image": round(seconds / len(pairs), 2)})
            print(markdown_table(["style", "setting", "style dist.", "content dist.", "speckles/10k", "s/image"], rows[-1:]),
                  flush=True)
            if args.json:  # after every row, so an interrupted sweep keeps what it measured
                write_result(args.json, {"benchmark": "sweep", "size": args.size, "device": args.device, "rows": records})
    print()
    print(markdown_table(["style", "setting", "style dist. ↓", "content dist. ↓", "speckles/10k ↓", "s/image"], rows))
    print(json.dumps(records[-1]) if records else "", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
