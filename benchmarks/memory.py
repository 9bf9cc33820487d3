"""Peak memory (RSS) of `stylepipe run` against image size and batch size, and a streaming check.

Peak RSS is the child process's own high-water mark (`os.wait4`), so it includes Python, torch,
the network's weights and the L-BFGS history, everything a user's machine has to hold. The grid
runs exactly one batch per run (as many same-sized pictures as the batch size) for a few steps:
activations kept for the backward pass peak on the first step, while the L-BFGS history keeps
growing, by two image-sized vectors per step, until `lbfgs_history` (50) steps; so add
100 × 12 bytes × pixels × batch to the grid's numbers for a long run.

The streaming check runs 1,000 tiny generated pictures and then 50 of them: a runner that holds
per-job state (decoded pictures, outputs, reports) grows with the job count; one that streams does
not. Acceptance: the 1,000-picture run's peak within 20% of the 50-picture run's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ._common import (
    DEFAULT_STYLE,
    base_parser,
    content_set,
    describe_machine,
    machine_info,
    markdown_table,
    run_stylepipe,
    setting_available,
    workspace,
    write_pipeline,
    write_result,
)

STREAM_LIMIT = 1.20


def generated_pictures(folder: Path, count: int, side: int) -> list[Path]:
    """`count` distinct small pictures (seeded colour noise over a gradient), PNG so none is trivial."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, side)
    paths = []
    for index in range(count):
        base = torch.stack([ramp.view(1, -1).expand(side, side), ramp.view(-1, 1).expand(side, side),
                            torch.full((side, side), (index % 17) / 16)])
        pixels = (0.7 * base + 0.3 * torch.rand(3, side, side, generator=generator)).clamp(0, 1)
        array = pixels.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        path = folder / f"p{index:05d}.png"
        Image.fromarray(array, "RGB").save(path)
        paths.append(path)
    return paths


def grid(work: Path, style: Path, sizes: list[int], batches: list[int], steps: int) -> list[dict[str, Any]]:
    """Peak RSS for every size × batch size; batch sizes above 1 only where stylepipe has them."""
    if any(b > 1 for b in batches) and not setting_available("optimize.batch_size=2"):
        print("this stylepipe has no optimize.batch_size: batch size 1 only", file=sys.stderr)
        batches = [1]
    contents = content_set(work / "same-size", max(batches), same_size=True)
    rows = []
    for batch in batches:
        folder = work / f"batch{batch}"
        pipeline = write_pipeline(folder, contents[:batch], style, max_side=min(sizes), steps=steps,
                                  extra={"cache.enabled": False})
        settings = [] if batch == 1 and not setting_available("optimize.batch_size=1") else [f"optimize.batch_size={batch}"]
        for size in sizes:
            print(f"batch {batch}, {size} px …", file=sys.stderr)
            run = run_stylepipe(pipeline, folder / f"out-{size}", [*settings, f"size.max_side={size}"])
            rows.append({"size": size, "batch": batch, "pictures": len(run.done), "steps": steps,
                         "max_rss_mb": round(run.process.max_rss_mb), "gpu_peak_mb": run.process.gpu_peak_mb,
                         "wall_s": round(run.process.wall_s, 2)})
    return rows


def streaming(work: Path, style: Path, count: int, baseline: int, side: int) -> dict[str, Any]:
    """Peak RSS of a `count`-picture run and of a `baseline`-picture run of the same tiny pictures."""
    pictures = generated_pictures(work / "tiny", count, side)
    runs = {}
    for n in (baseline, count):
        folder = work / f"stream{n}"
        listed = folder / "content"
        listed.mkdir(parents=True, exist_ok=True)
        for picture in pictures[:n]:
            (listed / picture.name).symlink_to(picture)
        pipeline = write_pipeline(folder, listed, style, max_side=side, steps=1)
        print(f"streaming: {n} pictures …", file=sys.stderr)
        run = run_stylepipe(pipeline, folder / "out")
        runs[n] = {"pictures": len(run.done), "max_rss_mb": round(run.process.max_rss_mb),
                   "wall_s": round(run.process.wall_s, 2)}
    ratio = runs[count]["max_rss_mb"] / runs[baseline]["max_rss_mb"]
    return {"side": side, "steps": 1, "runs": runs, "ratio": round(ratio, 3), "limit": STREAM_LIMIT,
            "met": ratio <= STREAM_LIMIT}


def per_pixel(rows: list[dict[str, Any]], sizes: list[int]) -> float | None:
    """Peak RSS growth per output pixel at batch 1 between the two largest sizes (4:3 pictures)."""
    ones = {row["size"]: row["max_rss_mb"] for row in rows if row["batch"] == 1}
    if len(sizes) < 2 or sizes[-1] not in ones or sizes[-2] not in ones:
        return None
    pixels = lambda side: side * round(side * 3 / 4)  # noqa: E731
    return (ones[sizes[-1]] - ones[sizes[-2]]) * 1024**2 / (pixels(sizes[-1]) - pixels(sizes[-2]))


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("memory", __doc__.split("\n\n")[0])
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    parser.add_argument("--sizes", default="64,128,256,512", help="output sizes (longest side, px), comma-separated")
    parser.add_argument("--batches", default="1,2,4", help="batch sizes, comma-separated")
    parser.add_argument("--steps", type=int, default=3, help="L-BFGS steps per grid run")
    parser.add_argument("--stream-count", type=int, default=1000, help="pictures in the large streaming run")
    parser.add_argument("--stream-baseline", type=int, default=50, help="pictures in the small streaming run")
    parser.add_argument("--stream-size", type=int, default=32, help="side of the generated streaming pictures, px")
    parser.add_argument("--skip-grid", action="store_true", help="only the streaming check")
    parser.add_argument("--skip-stream", action="store_true", help="only the size × batch grid")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    batches = sorted(int(b) for b in args.batches.split(",") if b.strip())

    machine = machine_info()
    print(f"machine: {describe_machine(machine)}", file=sys.stderr)
    result: dict[str, Any] = {"benchmark": "memory", "machine": machine,
                              "settings": {"style": args.style.name, "sizes": sizes, "batches": batches,
                                           "steps": args.steps, "stream_count": args.stream_count,
                                           "stream_baseline": args.stream_baseline, "stream_size": args.stream_size}}
    with workspace(args.workdir) as work:
        if not args.skip_grid:
            rows = result["grid"] = grid(work, args.style, sizes, batches, args.steps)
            found = sorted({row["batch"] for row in rows})
            for key, what in (("max_rss_mb", "peak RSS (MB)"), ("gpu_peak_mb", "peak GPU memory (MB, nvidia-smi)")):
                if all(row[key] is None for row in rows):
                    continue
                table = [[size, *(next(r[key] for r in rows if r["size"] == size and r["batch"] == b) for b in found)]
                         for size in sizes]
                print(f"\n{what} of one `stylepipe run`, {args.steps} L-BFGS steps, 4:3 pictures, one batch per run\n")
                print(markdown_table(["max_side px", *(f"batch {b}" for b in found)], table))
            growth = result["bytes_per_pixel_batch1"] = per_pixel(rows, sizes)
            if growth is not None:
                print(f"\ngrowth between {sizes[-2]} and {sizes[-1]} px at batch 1: {growth:.0f} bytes per output pixel")
        if not args.skip_stream:
            stream = result["streaming"] = streaming(work, args.style, args.stream_count, args.stream_baseline,
                                                     args.stream_size)
            runs = stream["runs"]
            print(f"\nstreaming: {args.stream_size} px generated pictures, 1 step\n")
            print(markdown_table(["pictures", "peak RSS MB", "wall s"],
                                 [[n, r["max_rss_mb"], r["wall_s"]] for n, r in runs.items()]))
            print(f"\nratio {args.stream_count}/{args.stream_baseline}: {stream['ratio']:.3f} "
                  f"(limit {STREAM_LIMIT:.2f}): {'met' if stream['met'] else 'NOT met'}")
    path = write_result(args.json, result)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
