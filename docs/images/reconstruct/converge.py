"""How many L-BFGS steps the noise-start modes need: the loss curve of every reconstruction of
docs/images/reconstruct/pipeline.yaml and of a palette, with the step at which each comes within
10 % and 2 % of the loss it reaches at the end of a long budget. Prints one JSON object.

    python docs/images/reconstruct/converge.py --steps 1000 [--set size.max_side=128 …]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stylepipe.config.load import load_pipeline
from stylepipe.running.events import NullEvents
from stylepipe.running.runner import run_pipeline

HERE = Path(__file__).resolve().parent


class Curves(NullEvents):
    """Records the total loss after every step of every job (batches of one)."""

    def __init__(self) -> None:
        self.losses: dict[int, list[float]] = {}

    def step(self, job, step, steps, loss) -> None:
        self.losses.setdefault(job.index, []).append(loss)


def steps_within(curve: list[float], tolerance: float) -> int:
    """The first step from which the best loss so far stays within `tolerance` of the final best."""
    best, final = float("inf"), min(curve)
    for step, loss in enumerate(curve, start=1):
        best = min(best, loss)
        if best <= final * (1 + tolerance):
            return step
    return len(curve)


def measure(pipeline: Path, overrides: list[str], out: Path) -> list[dict]:
    curves = Curves()
    report = run_pipeline(load_pipeline(pipeline, overrides + [f"output.dir={out}", "optimize.batch_size=1"]),
                          force=True, events=curves)
    rows = []
    for item in sorted(report.items, key=lambda i: i.job):
        curve = curves.losses[item.job]
        rows.append({"output": Path(item.output).name, "layers": item.layers, "final": min(curve),
                     "within_10%": steps_within(curve, 0.10), "within_2%": steps_within(curve, 0.02),
                     "curve": curve[:: max(1, len(curve) // 100)]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE.parents[2] / "outputs" / "converge")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    common = [f"optimize.steps={args.steps}", *args.overrides]
    result = {
        "steps": args.steps,
        "reconstruct": measure(HERE / "pipeline.yaml", common, args.out / "reconstruct"),
        "palette": measure(HERE / "pipeline.yaml", common + ["mode=palette"], args.out / "palette"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
