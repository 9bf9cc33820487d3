"""Images per hour on one GPU at 512 px × 500 L-BFGS steps, in one run of under five minutes.

    python3 -m benchmarks.gpu                      # the full run, from the repository root
    python3 -m benchmarks.gpu --tiny --out /tmp/x  # 64 px on the CPU in seconds: the tests run this

What it measures, in this order (the most important first, so a spent budget cuts the least):
a single-image float32 `torch.optim.LBFGS` loop on the same network (the baseline any Gatys
implementation starts from), then stylepipe's own batched L-BFGS (`stylepipe.optimize`, exactly
what `stylepipe run` calls) for batch sizes 1, 2, 4, … up to the automatic batch size, in bf16
autocast and in float32, then the same with `torch.compile`. Every configuration runs enough
warm-up steps to fill the L-BFGS history (50 pairs: the steady state of a 500-step run), then a
few timed steps; images/hour at 500 steps is extrapolated from the time per step. The FLOP count is
the model's (VGG19 to relu5_1, forward and backward to the input, `_common.vgg_step_flops`).

The JSON and markdown are rewritten after every configuration, so an interrupted run keeps what
it measured; once `--budget-s` is spent, the remaining configurations are skipped and listed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stylepipe.core.geometry import resize
from stylepipe.core.loss_fns import Targets
from stylepipe.core.network import FeatureExtractor, is_out_of_memory
from stylepipe.core.objective import Objective, content_targets
from stylepipe.core.optimize import OptimizeSettings, optimize
from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
from stylepipe.extend.networks import build_extractor
from stylepipe.extend.terms import ContentLoss, ContentParams, StyleLoss, StyleParams
from stylepipe.io.images import load_image
from stylepipe.running.budget import bytes_per_image
from stylepipe.running.context import auto_batch_size, tune_for_device

from ._common import (
    CONTENT_DIR,
    CONTENT_LAYERS,
    CONTENT_WEIGHT,
    DEFAULT_STYLE,
    REFERENCE_NETWORK,
    REFERENCE_POOLING,
    RESULTS,
    STYLE_LAYERS,
    STYLE_WEIGHT,
    markdown_table,
    vgg_step_flops,
    write_result,
)

BASELINE = "torch.optim.LBFGS"
STYLEPIPE = "stylepipe"
PRECISIONS = "bf16,fp32"
TARGETS = {"images_per_hour": 5000, "pct_of_bf16_peak": 40, "speedup_vs_baseline": 10}


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    solver: str
    batch: int
    precision: str
    compiled: bool
    auto: bool = False  # this batch size is the automatic one

    @property
    def name(self) -> str:
        batch = f"{self.batch} (auto)" if self.auto else str(self.batch)
        return f"{self.solver} {self.precision} ×{batch}{' compiled' if self.compiled else ''}"


@dataclass
class Row:
    """A configuration's outcome: measured, skipped (budget) or failed (with the cause)."""

    config: Config
    status: str = "skipped"
    reason: str | None = None
    step_s: float | None = None  # seconds per optimiser step for the whole batch
    images_per_hour: float | None = None
    tflops: float | None = None
    pct_of_bf16_peak: float | None = None
    speedup_vs_baseline: float | None = None
    peak_memory_gib: float | None = None
    seconds: float | None = None  # wall time of this configuration, warm-up and compiling included

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("config"), name=self.config.name)
        return data


@dataclass
class Problem:
    """What every configuration optimises: the same pictures, network and objective."""

    device: torch.device
    size: int
    pictures: list[torch.Tensor]  # (3, size, size) on the CPU
    terms: list
    style: Targets
    eager: FeatureExtractor
    compiled: FeatureExtractor | None = None

    def batch(self, count: int) -> torch.Tensor:
        return torch.stack([self.pictures[i % len(self.pictures)] for i in range(count)]).to(self.device)

    def objective(self, content: torch.Tensor, compiled: bool) -> Objective:
        """Content targets always come from the eager network: compiling a no-grad graph too
        would only add compile time."""
        targets = content_targets(self.eager, self.terms, content)
        extractor = self.compiled if compiled else self.eager
        return Objective(extractor, self.terms, targets, self.style)


# --- the device ------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak tensor memory of the configuration (torch's allocator; the CPU has no such counter)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), cudnn_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        info["name"] = platform.processor() or "cpu"
    return info


# --- timing ----------------------------------------------------------------------------------------


class StepClock:
    """Wall time between two evaluations, read at the step callback (after the step's host sync)."""

    def __init__(self, device: torch.device, start: int, stop: int) -> None:
        self.device, self.start, self.stop = device, start, stop
        self.marks: dict[int, float] = {}

    def __call__(self, evaluation: int, _total: int = 0, _loss: float = 0.0) -> None:
        if evaluation in (self.start, self.stop):
            synchronize(self.device)
            self.marks[evaluation] = time.perf_counter()

    def per_step(self) -> float:
        if len(self.marks) < 2:
            raise RuntimeError(f"stopped after fewer than {self.stop} evaluations: converged or diverged early")
        return (self.marks[self.stop] - self.marks[self.start]) / (self.stop - self.start)


def time_stylepipe(problem: Problem, config: Config, warmup: int, timed: int) -> float:
    """Seconds per step of stylepipe's batched L-BFGS: the function `stylepipe run` calls."""
    content = problem.batch(config.batch)
    objective = problem.objective(content, config.compiled)
    clock = StepClock(problem.device, warmup, warmup + timed)
    settings = OptimizeSettings("lbfgs", steps=warmup + timed, precision=config.precision)  # type: ignore[arg-type]
    optimize(content, objective, settings, clock)
    return clock.per_step()


def time_baseline(problem: Problem, warmup: int, timed: int) -> float:
    """Seconds per step of the textbook loop: one image, float32, torch.optim.LBFGS, no line search."""
    content = problem.batch(1)
    objective = problem.objective(content, compiled=False)
    image = content.clone().requires_grad_(True)
    steps = warmup + timed
    solver = torch.optim.LBFGS([image], lr=1.0, max_iter=steps, max_eval=steps, history_size=50,
                               tolerance_grad=1e-9, tolerance_change=1e-12)
    clock = StepClock(problem.device, warmup, steps)
    evaluations = [0]

    def closure() -> torch.Tensor:
        solver.zero_grad()
        loss = objective.total(objective.parts(image)).sum()
        loss.backward()
        evaluations[0] += 1
        clock(evaluations[0])
        return loss

    solver.step(closure)
    return clock.per_step()


# --- the plan --------------------------------------------------------------------------------------


def batch_sizes(auto: int, requested: Sequence[str] | None) -> list[tuple[int, bool]]:
    """(batch, is_auto) pairs: the requested ones, or 1, 2, 4, … below the automatic size, then it."""
    if requested:
        return sorted({(auto, True) if item == "auto" else (int(item), int(item) == auto) for item in requested})
    sizes = [(1 << k, False) for k in range(auto.bit_length()) if 1 << k < auto]
    return sizes + [(auto, True)]


def plan(batches: list[tuple[int, bool]], precisions: Sequence[str], compile_: bool) -> list[Config]:
    """Baseline, the uncompiled grid (bf16 first), then compiled runs at the automatic batch size."""
    configs = [Config(BASELINE, 1, "fp32", False)]
    for precision in precisions:
        configs += [Config(STYLEPIPE, batch, precision, False, auto) for batch, auto in batches]
    if compile_:
        batch, auto = max(batches)
        configs += [Config(STYLEPIPE, batch, precision, True, auto) for precision in precisions]
    return configs


def measure(problem: Problem, config: Config, args: argparse.Namespace, baseline: Row | None) -> Row:
    """Run one configuration; a failure (out of memory, a compiler error) becomes the row's reason."""
    row = Row(config)
    start = time.perf_counter()
    reset_peak_memory(problem.device)
    try:
        if config.compiled and problem.compiled is None:
            raise RuntimeError("torch.compile is not set up")
        if config.solver == BASELINE:
            step_s = time_baseline(problem, args.warmup_steps, args.timed_steps)
        else:
            step_s = time_stylepipe(problem, config, args.warmup_steps, args.timed_steps)
    except Exception as exc:  # noqa: BLE001 - one configuration's failure must not end the run
        row.status = "failed"
        row.reason = "out of memory" if is_out_of_memory(exc) else f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        row.seconds = time.perf_counter() - start
        reset_peak_memory(problem.device)
        return row
    row.status, row.step_s = "ok", step_s
    row.images_per_hour = 3600.0 * config.batch / (step_s * args.steps)
    row.tflops = vgg_step_flops(args.size, args.size) * config.batch / step_s / 1e12
    row.pct_of_bf16_peak = 100.0 * row.tflops / args.peak_tflops
    row.peak_memory_gib = peak_memory_gib(problem.device)
    if baseline is not None and baseline.images_per_hour:
        row.speedup_vs_baseline = row.images_per_hour / baseline.images_per_hour
    if config.compiled and problem.compiled is not None and problem.compiled.compile_error:
        row.status = "ok (compile failed: ran uncompiled)"
        row.reason = problem.compiled.compile_error
    row.seconds = time.perf_counter() - start
    return row


# --- output ----------------------------------------------------------------------------------------


def markdown(payload: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md, with the device and how the numbers were made."""
    settings, device = payload["settings"], payload["device"]
    headers = ["configuration", "status", "s/step", "images/h", "TFLOP/s", "% bf16 peak", "× baseline", "peak GiB"]
    rows = [[r["name"], r["status"], r["step_s"], r["images_per_hour"], r["tflops"], r["pct_of_bf16_peak"],
             r["speedup_vs_baseline"], r["peak_memory_gib"]] for r in payload["rows"]]
    lines = [f"# GPU throughput ({payload['mode']} run)", "",
             f"Device: {device.get('name')} ({device['device']}), torch {device['torch']}. {payload['note']}", "",
             markdown_table(headers, rows), ""]
    problems = [r for r in payload["rows"] if r["reason"]]
    lines += [f"- {r['name']}: {r['status']}, {r['reason']}" for r in problems]
    lines += ["", f"Targets: ≥ {TARGETS['images_per_hour']} images/h, ≥ {TARGETS['pct_of_bf16_peak']} % of the bf16 peak "
              f"({settings['peak_tflops']} TFLOP/s), ≥ {TARGETS['speedup_vs_baseline']}× the baseline. "
              f"Total {payload['elapsed_s']:.0f} s of a {settings['budget_s']:.0f} s budget."]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, payload: dict[str, Any]) -> None:
    """JSON and markdown side by side, rewritten after every configuration."""
    write_result(out, payload)
    out.with_suffix(".md").write_text(markdown(payload))


def output_path(out: Path) -> Path:
    """`--out` names the JSON file (the markdown goes next to it), or a folder to put gpu.json in."""
    return out / "gpu.json" if out.is_dir() or not out.suffix else out


# --- setup -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json", help="JSON path; the markdown goes next to it (.md)")
    parser.add_argument("--size", type=int, default=512, help="square pictures of this side, px")
    parser.add_argument("--steps", type=int, default=500, help="steps per image that images/hour is extrapolated to")
    parser.add_argument("--warmup-steps", type=int, default=51, help="untimed steps first: compiling, cuDNN autotuning, a full L-BFGS history")
    parser.add_argument("--timed-steps", type=int, default=30)
    parser.add_argument("--batches", default=None, help="comma list, e.g. 1,4,auto; default 1, 2, 4, … up to auto")
    parser.add_argument("--precisions", default=None, help=f"comma list; default {PRECISIONS} (fp32 with --tiny)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H100/H200 SXM: 989)")
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip the remaining configurations once spent")
    parser.add_argument("--compile-reserve-s", type=float, default=90.0, help="budget a compiled configuration needs left to start")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--tiny", action="store_true", help="CPU, 64 px, 3 steps (1 + 2 timed), batches 1–2, fp32: checks the script in seconds")
    args = parser.parse_args(argv)
    if args.tiny:
        args.device, args.size, args.warmup_steps, args.timed_steps = "cpu", 64, 1, 2
        args.batches = args.batches or "1,2"
        args.precisions = args.precisions or "fp32"  # bf16 autocast on a CPU: slow, and no news
    args.precisions = args.precisions or PRECISIONS
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.compile == "auto":
        args.compile = "on" if args.device.type == "cuda" else "off"
    return args


def square_pictures(size: int) -> list[torch.Tensor]:
    """The bundled photos, centre-cropped to size × size: one batch can hold any of them."""
    pictures = []
    for path in sorted(CONTENT_DIR.glob("*.jpg")):
        image = load_image(path).tensor
        height, width = image.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        pictures.append(resize(image[:, top : top + side, left : left + side], (size, size)))
    return pictures


def build_problem(args: argparse.Namespace, log: Callable[[str], None]) -> Problem:
    """The real vgg19-gatys network (tuned for the device as the worker tunes it), the reference
    objective of the other benchmarks, *The Starry Night*'s Gram targets."""
    device = args.device
    eager = tune_for_device(build_extractor(REFERENCE_NETWORK, None, REFERENCE_POOLING, device), device, False)  # type: ignore[arg-type]
    terms = [ContentLoss(ContentParams(layers=CONTENT_LAYERS, weight=CONTENT_WEIGHT)),
             StyleLoss(StyleParams(layers=STYLE_LAYERS, weight=STYLE_WEIGHT))]
    style = compute_targets([WeightedImage(load_image(DEFAULT_STYLE).tensor, 1.0)], eager, terms,
                            StyleSizing(args.size, None), device)
    compiled = None
    if args.compile == "on":
        try:
            network = build_extractor(REFERENCE_NETWORK, None, REFERENCE_POOLING, device)  # type: ignore[arg-type]
            compiled = tune_for_device(network, device, True) if device.type == "cuda" else network.compile_forward()
        except Exception as exc:  # noqa: BLE001 - the uncompiled rows are still worth having
            log(f"torch.compile could not be set up ({type(exc).__name__}: {exc}); compiled rows will fail")
    return Problem(device, args.size, square_pictures(args.size), terms, style, eager, compiled)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    args = parse_args(argv)
    out = output_path(args.out)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    problem = build_problem(args, log)
    per_image = bytes_per_image(problem.eager, problem.terms, (args.size, args.size), OptimizeSettings("lbfgs", steps=args.steps))
    auto = auto_batch_size(args.device, per_image)
    batches = batch_sizes(auto, args.batches.split(",") if args.batches else None)
    configs = plan(batches, args.precisions.split(","), args.compile == "on")
    note = (f"Images/hour at {args.size} px × {args.steps} steps, extrapolated: 3600 · batch / ({args.steps} · seconds per step), "
            f"the seconds per step timed over {args.timed_steps} steps after {args.warmup_steps} warm-up steps "
            f"(compiling, cuDNN autotuning, a full L-BFGS history); decoding, saving and style targets excluded. "
            f"TFLOP/s counts VGG19 to relu5_1, forward + input-gradient backward ({vgg_step_flops(args.size, args.size) / 1e9:.0f} "
            f"GFLOP per image and step); float32 convolutions run as TF32 where cuDNN allows it.")
    payload: dict[str, Any] = {
        "benchmark": "gpu", "mode": "tiny" if args.tiny else "full", "device": device_info(args.device),
        "settings": {"size": args.size, "steps": args.steps, "warmup_steps": args.warmup_steps, "timed_steps": args.timed_steps,
                     "peak_tflops": args.peak_tflops, "budget_s": args.budget_s, "lbfgs_history": 50,
                     "compile": args.compile == "on", "auto_batch": auto},
        "note": note, "targets": TARGETS, "rows": [], "skipped": [], "elapsed_s": 0.0,
    }
    log(f"{payload['device'].get('name')}: auto batch {auto}; {len(configs)} configurations, budget {args.budget_s:.0f} s")
    baseline: Row | None = None
    for config in configs:
        spent = time.perf_counter() - start
        reserve = args.compile_reserve_s if config.compiled else 0.0
        if spent + reserve > args.budget_s:
            row = Row(config, reason=f"budget: {spent:.0f} s of {args.budget_s:.0f} s spent" + (f", compiling needs {reserve:.0f} s" if reserve else ""))
            payload["skipped"].append(config.name)
            log(f"skipped {config.name}: {row.reason}")
        else:
            row = measure(problem, config, args, baseline)
            log(f"{config.name}: {row.status}" + (f", {row.images_per_hour:.0f} images/h, {row.tflops:.1f} TFLOP/s" if row.step_s else f" ({row.reason})"))
        if config.solver == BASELINE:
            baseline = row
        payload["rows"].append(row.as_dict())
        payload["elapsed_s"] = time.perf_counter() - start
        write_outputs(out, payload)
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
