"""Peak memory and seconds per step of print-size pictures, with and without tiling.

Each row is one `stylepipe run` of one photo (upscaled to the size) styled by one painting for a
few L-BFGS steps at the defaults, once with `size.tile: off` (the whole picture through the
network, every activation kept for the backward pass) and once with tiles (`size.tile: N`; the
exact whole-picture gradient, see docs/print.md). Peak memory is the child's own high-water RSS
(`os.wait4`) on the CPU, or the peak device memory in use on CUDA (nvidia-smi), so it covers
everything a user's machine must hold: Python, torch, the weights, the picture, the L-BFGS
history, the style and content targets and the activations.

An untiled run that cannot fit is stopped by an address-space cap (`--cap-mb`, default: the
machine's RAM less 2 GiB) and shows as "failed" instead of waking the kernel's OOM killer.
Writes the JSON, a markdown table and a small PNG plot (docs/images/memory_scaling.png).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from ._common import (
    DEFAULT_STYLE,
    REPO,
    STYLEPIPE,
    base_parser,
    content_set,
    describe_machine,
    machine_info,
    markdown_table,
    run_process,
    workspace,
    write_result,
)

PLOT = REPO / "docs" / "images" / "memory_scaling.png"


def total_ram_mb() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20


def write_case(folder: Path, content: Path, style: Path, side: int, steps: int, device: str) -> Path:
    """A pipeline at the product's defaults except the size, the step count and PNG output."""
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(json.dumps({
        "version": 1,
        "content": str(content),
        "styles": [str(style)],
        "size": {"max_side": side},
        "optimize": {"steps": steps, "seed": 0},
        "network": {"device": device},
        "output": {"dir": "outputs", "format": "png", "html": False},
        "cache": {"dir": str(folder / "cache")},
    }))
    return pipeline


def one_run(folder: Path, pipeline: Path, tile: str, cap_mb: int | None) -> dict[str, Any]:
    """One process; its peak memory, and seconds per step from the report (the item's own time)."""
    report_path, out_dir = folder / f"report-{tile}.json", folder / f"out-{tile}"
    for old in (report_path, out_dir):  # a kept work folder: never report an earlier run's output
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    env = dict(os.environ)
    if cap_mb:
        env["BENCH_MEMORY_CAP_MB"] = str(cap_mb)
    process = run_process([STYLEPIPE, "run", pipeline, "-o", out_dir, "--report", report_path,
                           "--set", f"size.tile={tile}"], check=False, env=env)
    row: dict[str, Any] = {"tile": tile, "max_rss_mb": round(process.max_rss_mb), "gpu_peak_mb": process.gpu_peak_mb,
                           "wall_s": round(process.wall_s, 1), "status": "failed", "error": None}
    try:
        item = json.loads(report_path.read_text())["items"][0]
    except (OSError, ValueError, IndexError, KeyError):
        tail = (process.stderr.strip().splitlines() or ["no report"])[-1]
        row["error"] = tail[-300:]
        return row
    row["status"] = item["status"]
    row["error"] = item.get("error")
    if item["status"] == "done" and item.get("steps"):
        row["steps"] = item["steps"]
        row["s_per_step"] = round(item["seconds"] / item["steps"], 2)
        with Image.open(item["output"]) as picture:
            row["output_size"] = list(picture.size)
    return row


def plot(rows: list[dict[str, Any]], path: Path, device: str, ram_gib: float | None) -> None:
    """Peak memory against the output's side, tiled and untiled, log-log: the picture people look at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "gpu_peak_mb" if device == "cuda" else "max_rss_mb"
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    for tile, style, label in (("off", "o-", "whole picture (size.tile: off)"), (None, "s-", "tiled")):
        done = [r for r in rows if (r["tile"] == "off") == (tile == "off") and r["status"] == "done"]
        failed = [r for r in rows if (r["tile"] == "off") == (tile == "off") and r["status"] != "done"]
        ax.plot([r["side"] for r in done], [r[key] / 1024 for r in done], style, label=label)
        for r in failed:
            if r["cap_mb"] is None:
                continue  # a tiled run that failed: its error is in the JSON
            ax.annotate("did not fit", (r["side"], r["cap_mb"] / 1024), ha="center", fontsize=8, color="C0")
            ax.plot([r["side"]], [r["cap_mb"] / 1024], "x", color="C0")
    if ram_gib and device != "cuda":
        ax.axhline(ram_gib, color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"this machine's RAM ({ram_gib:.0f} GiB)", (min(r["side"] for r in rows), ram_gib),
                    textcoords="offset points", xytext=(0, -10), fontsize=8, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    sides = sorted({r["side"] for r in rows})
    ax.set_xticks(sides, [str(s) for s in sides])
    ax.set_xlabel("longest side of the output (px)")
    ax.set_ylabel("peak memory (GiB)")
    ax.set_title("2 L-BFGS steps, one photo", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("memory_scaling", __doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,1024,2048,4096", help="output sides (px), comma-separated")
    parser.add_argument("--steps", type=int, default=2, help="L-BFGS steps per run")
    parser.add_argument("--tile", default="512", help="the tiled runs' size.tile (a side in px, or auto)")
    parser.add_argument("--device", default="auto", help="network.device")
    parser.add_argument("--cap-mb", type=int, default=None, help="address-space cap of untiled runs (CPU)")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    parser.add_argument("--plot", type=Path, default=PLOT, help="where the PNG plot goes")
    parser.add_argument("--modes", default="off,tiled", help="which runs: off (untiled), tiled, or both")
    parser.add_argument("--merge", action="store_true",
                        help="add these rows to the existing JSON (same side and tile replaced): a long grid in parts")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    machine = machine_info()
    device = "cuda" if machine.get("gpu") and args.device in ("auto", "cuda") else "cpu"
    cap = args.cap_mb if args.cap_mb is not None else (None if device == "cuda" else total_ram_mb() - 2048)
    print(f"machine: {describe_machine(machine)}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    with workspace(args.workdir) as work:
        content = content_set(work / "content", 1)[0]
        for side in sizes:
            for tile in [t for t, mode in (("off", "off"), (args.tile, "tiled")) if mode in modes]:
                print(f"{side} px, size.tile={tile} …", file=sys.stderr)
                folder = work / f"{side}"
                pipeline = write_case(folder, content, args.style, side, args.steps, args.device)
                row = one_run(folder, pipeline, tile, cap if tile == "off" else None)
                row.update(side=side, cap_mb=cap if tile == "off" else None)
                rows.append(row)
                print(f"  {row['status']}: {row['max_rss_mb']} MB RSS, {row.get('s_per_step')} s/step", file=sys.stderr)
    if args.merge and args.json.is_file():
        new = {(r["side"], r["tile"]) for r in rows}
        rows = [r for r in json.loads(args.json.read_text())["rows"] if (r["side"], r["tile"]) not in new] + rows
        rows.sort(key=lambda r: (r["side"], r["tile"] != "off"))
        sizes = sorted({r["side"] for r in rows})
    key, what = ("gpu_peak_mb", "peak GPU MB") if device == "cuda" else ("max_rss_mb", "peak RSS MB")
    table = []
    for side in sizes:
        pair = {r["tile"] == "off": r for r in rows if r["side"] == side}
        cells: list[Any] = []
        for untiled in (True, False):
            r = pair.get(untiled)
            if r is None:
                cells += [None, None]
                continue
            cells += [r[key] if r["status"] == "done" else f"did not fit ({r['cap_mb']} MB cap)" if untiled else "failed",
                      r.get("s_per_step")]
        table.append([side, *cells])
    print(f"\n{args.steps} L-BFGS steps at the defaults, one photo, {describe_machine(machine)}\n")
    print(markdown_table(["side px", f"untiled {what}", "untiled s/step", f"tiled ({args.tile}) {what}", "tiled s/step"], table))
    plot(rows, args.plot, device, machine.get("ram_gib"))
    path = write_result(args.json, {"benchmark": "memory_scaling", "machine": machine, "device": device,
                                    "settings": {"sizes": sizes, "steps": args.steps, "tile": args.tile,
                                                 "style": args.style.name, "cap_mb": cap},
                                    "rows": rows})
    print(f"\nwrote {path} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
