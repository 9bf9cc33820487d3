"""Reference loss against time: single-scale against coarse-to-fine at the same step budgets.

A pyramid (`optimize.pyramid.levels` > 1) spends most of its steps at reduced sizes, where a step
is several times cheaper, so at one step budget it finishes sooner; the question is what that does
to the quality reached. Each point of a curve is its own `stylepipe run` with that total step
budget (a pyramid splits each budget differently, so a longer run is not a continuation of a
shorter one); its time is the seconds the report gives the job (start-up and network loading
excluded, the same for both), and its quality is the full-size reference loss of the output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import (
    DEFAULT_STYLE,
    ReferenceLoss,
    base_parser,
    content_set,
    describe_machine,
    machine_info,
    markdown_table,
    pair_outputs,
    run_stylepipe,
    setting_available,
    workspace,
    write_pipeline,
    write_result,
)


@dataclass(frozen=True)
class Point:
    """One run: its step budget, seconds inside its jobs, wall seconds and mean reference loss."""

    mode: str
    steps: int
    steps_run: float  # loss evaluations the report says were made (fewer if L-BFGS stopped early)
    seconds: float
    wall_s: float
    loss: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "steps": self.steps, "steps_run": self.steps_run, "seconds": round(self.seconds, 2),
                "wall_s": round(self.wall_s, 2), "reference_loss": self.loss}


def time_to_reach(curve: list[Point], target: float) -> float | None:
    """Seconds at which a curve first gets to `target`, interpolated linearly between its samples."""
    previous: Point | None = None
    for point in sorted(curve, key=lambda p: p.seconds):
        loss = point.loss["total"]
        if loss <= target:
            if previous is None or previous.loss["total"] == loss:
                return point.seconds
            share = (previous.loss["total"] - target) / (previous.loss["total"] - loss)
            return previous.seconds + share * (point.seconds - previous.seconds)
        previous = point
    return None


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("time_to_quality", __doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1, help="content pictures (bundled photos in name order)")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    parser.add_argument("--size", type=int, default=256, help="longest side of outputs, px")
    parser.add_argument("--budgets", default="10,20,40,80,160", help="total step budgets, comma-separated")
    parser.add_argument("--levels", type=int, default=3, help="pyramid levels of the coarse-to-fine runs")
    parser.add_argument("--factor", type=float, default=2.0, help="size ratio between pyramid levels")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over every point, round-robin; each point's fastest round is reported")
    parser.add_argument("--target-loss", type=float, default=None,
                        help="loss to time both to; without it, the single-scale run's loss at the largest budget")
    args = parser.parse_args(argv)
    budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    pyramid_setting = f"optimize.pyramid.levels={args.levels}"
    if not setting_available(pyramid_setting):
        print(f"this stylepipe does not accept {pyramid_setting} yet: nothing to compare", file=sys.stderr)
        return 3

    machine = machine_info()
    print(f"machine: {describe_machine(machine)}", file=sys.stderr)
    modes = {"single-scale": ["optimize.pyramid.levels=1"],
             f"pyramid {args.levels}×{args.factor:g}": [pyramid_setting, f"optimize.pyramid.factor={args.factor}"]}
    curves: dict[str, list[Point]] = {mode: [] for mode in modes}
    with workspace(args.workdir) as work:
        contents = content_set(work / "content", args.images)
        reference = ReferenceLoss(args.style, args.size)
        pipeline = write_pipeline(work, work / "content", args.style, max_side=args.size, steps=budgets[0])
        run_stylepipe(pipeline, work / "warm-up", ["optimize.steps=1"])  # style targets into the cache
        for round_ in range(1, args.repeat + 1):
            for index, steps in enumerate(budgets):
                for mode, settings in modes.items():
                    print(f"round {round_}/{args.repeat}: {mode}, {steps} steps …", file=sys.stderr)
                    run = run_stylepipe(pipeline, work / f"{mode.split()[0]}-{steps}",
                                        [*settings, f"optimize.steps={steps}"])
                    loss = reference.mean(pair_outputs(run.outputs(), contents))
                    point = Point(mode, steps, sum(i["steps"] for i in run.done) / len(run.done), run.item_seconds,
                                  run.process.wall_s, loss)
                    if round_ == 1:
                        curves[mode].append(point)
                    elif point.seconds < curves[mode][index].seconds:  # same pixels, less disturbed timing
                        curves[mode][index] = point

    single, pyramid = (curves[mode] for mode in modes)
    target = args.target_loss if args.target_loss is not None else single[-1].loss["total"]
    rows = [[steps, s.seconds, s.loss["total"], s.steps_run, p.seconds, p.loss["total"], p.steps_run,
             s.seconds / p.seconds if p.seconds else None] for steps, s, p in zip(budgets, single, pyramid)]
    names = list(modes)
    print(f"\n{len(contents)} picture(s) × {args.style.stem}, {args.size} px; seconds = time inside the job(s); "
          "loss = mean full-size reference loss\n")
    print(markdown_table(["steps", f"{names[0]} s", f"{names[0]} loss", "evaluations", f"{names[1]} s",
                          f"{names[1]} loss", "evaluations", "speed-up"], rows))
    reached = {mode: time_to_reach(curve, target) for mode, curve in curves.items()}
    print(f"\ntime to reach a reference loss of {target:.4g}:")
    for mode, seconds in reached.items():
        print(f"  {mode}: {'not reached within the budgets' if seconds is None else f'{seconds:.1f} s'}")
    if all(reached.values()):
        print(f"  ratio: {reached[names[0]] / reached[names[1]]:.2f}× ({names[0]} ÷ {names[1]})")
    path = write_result(args.json, {
        "benchmark": "time_to_quality", "machine": machine,
        "settings": {"images": len(contents), "style": args.style.name, "size": args.size, "budgets": budgets,
                     "levels": args.levels, "factor": args.factor, "repeat": args.repeat},
        "curves": {mode: [p.as_dict() for p in curve] for mode, curve in curves.items()},
        "target_loss": target, "seconds_to_target": reached,
    })
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
