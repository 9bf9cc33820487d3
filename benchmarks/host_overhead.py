"""The host's own work per job, with the optimisation cut to nothing: decoding a large photo,
resizing, targets, encoding and bookkeeping, as `stylepipe run` does it.

Generates `--count` JPEG photos of 1600×1200 px (seeded noise over gradients, so none decodes
trivially), then times one `stylepipe run` over them at `size.max_side: 32` and 1 L-BFGS step,
and prints jobs per second with the report's per-stage seconds (load, targets, optimise, save).
Acceptance (issue 20): ≥ 10 jobs per second on the 2-core CPU of the project's machines.

    .venv/bin/python -m benchmarks.host_overhead --count 1000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from PIL import Image

from ._common import (
    DEFAULT_STYLE,
    base_parser,
    describe_machine,
    machine_info,
    markdown_table,
    run_stylepipe,
    workspace,
    write_pipeline,
    write_result,
)

TARGET_JOBS_PER_S = 10.0


def photos(folder: Path, count: int, width: int, height: int) -> Path:
    """`count` distinct JPEGs of width × height px in `folder` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, width).view(1, -1).expand(height, width)
    y = torch.linspace(0, 1, height).view(-1, 1).expand(height, width)
    for index in range(count):
        path = folder / f"p{index:05d}.jpg"
        if path.exists():
            continue
        base = torch.stack([x, y, torch.full((height, width), (index % 17) / 16)])
        noise = torch.rand(3, height // 8, width // 8, generator=generator).repeat_interleave(8, 1).repeat_interleave(8, 2)
        pixels = (0.7 * base + 0.3 * noise).clamp(0, 1).mul(255).round().to(torch.uint8)
        Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB").save(path, quality=90)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("host_overhead", __doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1200)
    args = parser.parse_args(argv)
    with workspace(args.workdir) as work:
        folder = photos(work / "photos", args.count, args.width, args.height)
        pipeline = write_pipeline(work, folder, DEFAULT_STYLE, max_side=32, steps=1, extra={"output.format": "jpg"})
        print(f"{args.count} photos of {args.width}×{args.height} px, 32 px, 1 step …", file=sys.stderr, flush=True)
        run = run_stylepipe(pipeline, work / "out")
    done = sum(1 for item in run.report["items"] if item["status"] == "done")
    rate = done / run.process.wall_s
    stages = run.report["summary"].get("stages") or {}
    load = os.getloadavg()
    print(markdown_table(["jobs", "wall s", "jobs/s", "CPU cores busy", *(f"{s} s" for s in stages)],
                         [[done, round(run.process.wall_s, 1), round(rate, 2), round(run.process.cpu_use, 2),
                           *(round(v, 1) for v in stages.values())]]))
    print(f"\n≥ {TARGET_JOBS_PER_S:g} jobs/s: {'met' if rate >= TARGET_JOBS_PER_S else 'NOT met'}; "
          f"load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    write_result(args.json, {"benchmark": "host_overhead", "machine": machine_info(), "count": args.count,
                             "size": [args.width, args.height], "jobs": done, "wall_s": run.process.wall_s,
                             "jobs_per_s": rate, "stages": stages, "loadavg": load})
    print(describe_machine(machine_info()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
