"""What the `ray` executor costs and gains on one machine: the same jobs with `local` (all cores,
then one thread), with Ray and one worker, and with Ray and one worker per core. By hand only:

    .venv/bin/python -m benchmarks.ray_overhead [--max-side 128] [--steps 20] [--styles 2] [--repeat 1]

Every run starts from an empty output folder and an empty cache, so each one computes the same
style targets on the driver; a Ray run's wall time includes starting Ray, starting its actors
(each loads the network) and stopping Ray, as `stylepipe run` pays them. Each Ray worker runs
torch on as many threads as it has CPUs. Results are recorded in docs/benchmarks.md ("Ray
executor overhead").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from stylepipe.config.load import load_pipeline
from stylepipe.running.runner import run_pipeline

ROOT = Path(__file__).resolve().parent.parent


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_pipeline(folder: Path, name: str, args: argparse.Namespace, **extra: object) -> Path:
    styles = sorted((ROOT / "samples" / "styles").glob("*.jpg"))[: args.styles]
    data = {
        "content": [str(ROOT / "samples" / "content")],
        "styles": [str(path) for path in styles],
        "size": {"max_side": args.max_side},
        "optimize": {"steps": args.steps, "init": "content", "seed": 0},
        "output": {"dir": str(folder / f"out-{name}"), "format": "png"},
        "cache": {"dir": str(folder / f"cache-{name}")},
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def timed(path: Path) -> tuple[float, float, int]:
    """Wall seconds of the whole run, mean seconds per job as the workers saw it, jobs done."""
    start = time.perf_counter()
    report = run_pipeline(load_pipeline(path))
    wall = time.perf_counter() - start
    done = [item for item in report.items if item.status == "done"]
    if len(done) != len(report.items):
        sys.exit(f"{path.name}: {len(report.items) - len(done)} job(s) did not finish")
    return wall, statistics.mean(item.seconds for item in done), len(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-side", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--styles", type=int, default=2, help="how many bundled styles (× 4 contents)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (runs interleaved); the best wall time counts")
    args = parser.parse_args()
    n = cores()
    print(f"machine: {n} cores, {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}")
    import ray

    print(f"ray {ray.__version__}; jobs: 4 contents x {args.styles} styles, max_side {args.max_side}, {args.steps} L-BFGS steps")
    threads = torch.get_num_threads()
    # (name, label, torch threads in this process, pipeline settings). "local, 1 thread" against
    # "ray, 1 worker x 1 CPU" is the same compute, so their difference is what Ray costs.
    runs = [
        ("local", f"local, {threads} threads", threads, {}),
        ("local-1", "local, 1 thread", 1, {}),
        ("ray-1", "ray, 1 worker x 1 CPU", threads, {"executor": "ray", "ray": {"num_workers": 1, "cpus_per_worker": 1}}),
        (f"ray-{n}", f"ray, {n} workers x 1 CPU", threads, {"executor": "ray", "ray": {"num_workers": n, "cpus_per_worker": 1}}),
    ]
    best: dict[str, tuple[float, float, int]] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for round_ in range(args.repeat):
        for name, label, driver_threads, extra in runs:
            torch.set_num_threads(driver_threads)
            with tempfile.TemporaryDirectory() as tmp:  # empty outputs and cache every time
                result = timed(write_pipeline(Path(tmp), name, args, **extra))
            torch.set_num_threads(threads)
            print(f"  round {round_ + 1}: {label}: {result[0]:.1f} s", file=sys.stderr)
            best[label] = min(best.get(label, result), result)
    print(f"load average after: {os.getloadavg()[0]:.2f} (the box is shared: compare rows of one run only)")
    base = best[runs[0][1]][0]
    print(f"{'executor':28s} {'wall s':>7s} {'vs local':>9s} {'mean job s':>11s}")
    for label, (wall, per_job, jobs) in best.items():
        print(f"{label:28s} {wall:7.1f} {wall / base:8.2f}x {per_job:11.2f}   ({jobs} jobs)")


if __name__ == "__main__":
    main()
