"""The one memory model (`stylepipe.core.memory`) against measured peak RSS, per size and precision.

Each point is one fresh `stylepipe run` process (its own peak RSS, `os.wait4`): one photo, one
level (`optimize.refine: off`), untiled, a few L-BFGS steps. The model's prediction is the peak
of the run at the smallest size (Python, torch, the network's weights: what does not grow with
the picture) plus `running.budget.plan_memory`'s estimate at the size less its estimate at the
smallest size, with the same settings. Acceptance (issue 20): within 25 % of the measured peak.

    .venv/bin/python -m benchmarks.memory_model --sizes 256,512,1024 --precisions fp32,bf16
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylepipe.core.optimize import OptimizeSettings
from stylepipe.extend.networks import build_extractor
from stylepipe.extend.terms import ContentLoss, ContentParams, StyleLoss, StyleParams
from stylepipe.running.budget import plan_memory

from ._common import (
    CONTENT_DIR,
    CONTENT_LAYERS,
    DEFAULT_STYLE,
    REFERENCE_NETWORK,
    REFERENCE_POOLING,
    STYLE_LAYERS,
    base_parser,
    describe_machine,
    machine_info,
    markdown_table,
    run_stylepipe,
    workspace,
    write_pipeline,
    write_result,
)

LIMIT = 0.25
BASE_SIDE = 32


def estimate(size: tuple[int, int], steps: int, precision: str) -> int:
    """What the memory model plans for one picture of `size` (height, width), untiled."""
    extractor = build_extractor(REFERENCE_NETWORK, None, REFERENCE_POOLING, torch.device("cpu"))  # type: ignore[arg-type]
    terms = [ContentLoss(ContentParams(layers=CONTENT_LAYERS)), StyleLoss(StyleParams(layers=STYLE_LAYERS))]
    return plan_memory(extractor, terms, size, 1, OptimizeSettings("lbfgs", steps=steps), "off", 1 << 62, precision).estimate


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("memory_model", __doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, default=CONTENT_DIR / "tubingen.jpg")
    parser.add_argument("--sizes", default="256,512,1024", help="output sizes (longest side, px)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    with workspace(args.workdir) as work:
        pipeline = write_pipeline(work, args.content, DEFAULT_STYLE, max_side=BASE_SIDE, steps=args.steps,
                                  extra={"cache.enabled": False, "optimize.refine": "off", "size.tile": "off"})

        def peak_mb(side: int, precision: str) -> tuple[float, tuple[int, int]]:
            print(f"{precision} {side} px …", file=sys.stderr, flush=True)
            run = run_stylepipe(pipeline, work / f"out-{precision}-{side}",
                                [f"size.max_side={side}", f"optimize.precision={precision}"])
            output = Path(run.report["items"][0]["output"])
            with Image.open(output if output.is_absolute() else run.out_dir / output.name) as picture:
                width, height = picture.size
            return run.process.max_rss_mb, (height, width)

        for precision in args.precisions.split(","):
            base_mb, base_size = peak_mb(BASE_SIDE, precision)
            base_estimate = estimate(base_size, args.steps, precision)
            for side in sizes:
                measured, size = peak_mb(side, precision)
                predicted = base_mb + (estimate(size, args.steps, precision) - base_estimate) / 2**20
                rows.append({"precision": precision, "side": side, "size": list(size), "measured_mb": round(measured),
                             "predicted_mb": round(predicted), "growth_measured_mb": round(measured - base_mb),
                             "growth_predicted_mb": round(predicted - base_mb),
                             "error": round(predicted / measured - 1, 3)})
                print(markdown_table(list(rows[-1]), [list(rows[-1].values())]), flush=True)
    print()
    print(markdown_table(["precision", "side", "size", "peak RSS MB", "model MB", "growth MB", "model growth MB", "error"],
                         [list(row.values()) for row in rows]))
    met = all(abs(row["error"]) <= LIMIT for row in rows)
    print(f"\nall within {LIMIT:.0%}: {'yes' if met else 'NO'}")
    write_result(args.json, {"benchmark": "memory_model", "machine": machine_info(), "steps": args.steps, "rows": rows,
                             "limit": LIMIT, "met": met})
    print(describe_machine(machine_info()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
