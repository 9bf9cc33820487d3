"""Plumbing shared by the hand-run benchmarks (never imported by stylepipe or its tests).

Every benchmark runs stylepipe the way a user does — a `stylepipe run` child process on a
pipeline file written into a scratch folder — and scores what it made with one fixed yardstick,
`ReferenceLoss`, so that runs with different settings (or a different tool) are compared on the
same scale. Child processes run under a small launcher process that reaps them with `os.wait4`,
which gives that child's own peak RSS and CPU time. (RUSAGE_CHILDREN would only give the maximum
over every child so far, and on Linux a child forked straight from this process — which holds
torch and a network — inherits this process's resident size as the starting point of its peak.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image, ImageOps

from stylepipe.config.overrides import apply_override
from stylepipe.core.network import BLOCKS, CHANNELS
from stylepipe.extend.terms import ContentParams, StyleParams

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
RESULTS = BENCHMARKS / "results"
STYLEPIPE = REPO / ".venv" / "bin" / "stylepipe"
CONTENT_DIR = REPO / "samples" / "content"
DEFAULT_STYLE = REPO / "samples" / "styles" / "starry_night.jpg"

#: The reference objective: stylepipe's defaults (README, "Losses and their normalisation").
REFERENCE_NETWORK = "vgg19-gatys"
REFERENCE_POOLING = "avg"
CONTENT_LAYERS = ContentParams().layers  # the product's defaults, read from it rather than copied
STYLE_LAYERS = StyleParams().layers
CONTENT_WEIGHT = ContentParams().weight
STYLE_WEIGHT = StyleParams().weight


# --- the machine --------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines, plus how busy this one was."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def describe_machine(info: Mapping[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"{info['cpu_model']}, {info['cores']} cores, {info['ram_gib']} GiB RAM{gpu}; torch {info['torch']} "
            f"({info['torch_threads']} threads); load average at start {info['loadavg_at_start']}")


# --- child processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessResult:
    """One child's exit code, wall time, own peak RSS and CPU time (user + system)."""

    command: list[str]
    returncode: int
    wall_s: float
    max_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str
    gpu_peak_mb: float | None = None  # device memory in use at its peak, less what was in use before

    @property
    def cpu_use(self) -> float:
        """Cores kept busy on average: well below the core count means the box was contended."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class GpuMemoryWatch:
    """Peak device memory while a child runs, sampled with nvidia-smi (a child's torch counters
    cannot be read from outside it). Counts the whole GPU, so it assumes nobody else uses it."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.available = shutil.which("nvidia-smi") is not None
        self.baseline = self._used() if self.available else None
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _used(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            used = self._used()
            if used is not None and self.baseline is not None:
                self.peak = max(self.peak or 0.0, used - self.baseline)

    def __enter__(self) -> GpuMemoryWatch:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


#: Forked from a ~10 MB interpreter, the measured child starts its peak RSS from nearly nothing.
_LAUNCHER = """
import json, os, resource, subprocess, sys, time
cap = int(os.environ.get("BENCH_MEMORY_CAP_MB", "0")) << 20
limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))) if cap else None
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], preexec_fn=limit)
_, status, usage = os.wait4(child.pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "wall": time.perf_counter() - start, "maxrss_kb": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, out)
sys.exit(code if code >= 0 else 1)
"""


def run_process(command: Sequence[str | Path], *, check: bool = True, env: Mapping[str, str] | None = None) -> ProcessResult:
    """Run a child to completion via the launcher; its output goes to temp files so a chatty child
    never blocks. `BENCH_MEMORY_CAP_MB` in `env` caps the child's address space, so a run that
    cannot fit fails with an allocation error instead of waking the kernel's OOM killer."""
    argv = [str(part) for part in command]
    with (tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err,
          tempfile.TemporaryDirectory() as temp, GpuMemoryWatch() as gpu):
        usage_file = Path(temp) / "usage.json"
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(usage_file), *argv], stdout=out, stderr=err,
                       env=dict(env) if env is not None else None, check=False)
        out.seek(0), err.seek(0)
        if not usage_file.exists():  # the launcher itself failed, e.g. the command does not exist
            raise RuntimeError(f"could not run {' '.join(argv)}:\n{err.read().strip()[-2000:]}")
        usage = json.loads(usage_file.read_text())
        result = ProcessResult(argv, usage["code"], usage["wall"], usage["maxrss_kb"] / 1024, usage["cpu"],
                               out.read(), err.read(), gpu.peak)
    if check and result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"exit {result.returncode}: {' '.join(argv)}\n{tail}")
    return result


# --- stylepipe as a user runs it -----------------------------------------------------------------


def setting_available(assignment: str) -> bool:
    """Whether this stylepipe accepts a setting (`optimize.pyramid.levels=3`): features still landing
    are detected, not assumed."""
    pipeline = REPO / "pipeline.yaml"
    result = run_process([STYLEPIPE, "validate", pipeline, "--set", assignment], check=False)
    return result.returncode == 0


def write_pipeline(folder: Path, content: Path | Sequence[Path], style: Path, *, max_side: int, steps: int,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """A pipeline with the reference objective, lossless PNG outputs and a cache inside `folder`."""
    config: dict[str, Any] = {
        "version": 1,
        "mode": "transfer",
        "content": str(content) if isinstance(content, Path) else [str(p) for p in content],
        "styles": [str(style)],
        "size": {"max_side": max_side, "style_scale": 1.0},
        "optimize": {"optimizer": "lbfgs", "steps": steps, "init": "content", "seed": 0},
        "network": {"name": REFERENCE_NETWORK, "pooling": REFERENCE_POOLING, "device": "auto"},
        "losses": {"content": {"layers": CONTENT_LAYERS, "weight": CONTENT_WEIGHT},
                   "style": {"layers": STYLE_LAYERS, "weight": STYLE_WEIGHT},
                   "tv": {"weight": 0.0}},
        "output": {"dir": "outputs", "pattern": "{content}__{style}.{ext}", "format": "png"},
        "cache": {"dir": str(folder / "cache")},
    }
    for dotted, value in (extra or {}).items():  # as `--set` applies a dotted key
        apply_override(config, dotted.split("."), value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(frozen=True)
class StylepipeRun:
    """A finished `stylepipe run`: the process and the report it wrote."""

    process: ProcessResult
    report: dict[str, Any]
    out_dir: Path

    @property
    def done(self) -> list[dict[str, Any]]:
        return [item for item in self.report["items"] if item["status"] == "done"]

    @property
    def item_seconds(self) -> float:
        """Seconds inside jobs (optimise, score, save): the run without start-up and style targets."""
        return sum(item["seconds"] for item in self.done)

    def outputs(self) -> list[Path]:
        return [Path(item["output"]) for item in self.done]


def run_stylepipe(pipeline: Path, out_dir: Path, settings: Sequence[str] = ()) -> StylepipeRun:
    """One `stylepipe run` process into a fresh output folder; fails loudly if any job failed."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    report_path = out_dir / "report.json"
    command: list[str | Path] = [STYLEPIPE, "run", pipeline, "-o", out_dir, "--report", report_path]
    for assignment in settings:
        command += ["--set", assignment]
    process = run_process(command)
    report = json.loads(report_path.read_text())
    failed = [item for item in report["items"] if item["status"] == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) failed, first: {failed[0]['error']}")
    return StylepipeRun(process, report, out_dir)


# --- inputs ---------------------------------------------------------------------------------------


def bundled_photos() -> list[Path]:
    """The sample photos under samples/content, in name order: every benchmark's default content."""
    return sorted(p for p in CONTENT_DIR.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def content_set(folder: Path, count: int, *, same_size: bool = False) -> list[Path]:
    """`count` distinct content pictures: the bundled photos, then mirrored copies of them.

    Mirrored copies keep their original's size, so with the bundled photos a batch bucket (one
    style, one size) holds at most two pictures. `same_size` centre-crops every picture to 4:3
    first, as a camera roll would be, so that all of them can share one batch.
    """
    originals = bundled_photos()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        source = originals[index % len(originals)]
        round_ = index // len(originals)
        with Image.open(source) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB")
        if same_size:
            picture = ImageOps.fit(picture, (512, 384))
        if round_ % 2 == 1:
            picture = ImageOps.mirror(picture)
        if round_ >= 2:
            picture = ImageOps.flip(picture)
        name = source.stem if round_ == 0 else f"{source.stem}-v{round_}"
        path = folder / f"{name}.jpg"
        picture.save(path, quality=95)
        paths.append(path)
    return paths


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """A scratch folder: `keep` if given (left for inspection), else a temp folder removed after."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="stylepipe-bench-") as temp:
        yield Path(temp)


# --- the yardstick ----------------------------------------------------------------------------------


class ReferenceLoss:
    """stylepipe's default objective at fixed settings, evaluated on any picture at full size.

    Tools and settings optimise different objectives (another network, other weights, a pyramid),
    so each output is scored here instead of trusting the loss its own run reported: vgg19-gatys,
    avg pooling, content relu4_2 × 1, style relu1_1…relu5_1 × STYLE_WEIGHT, the style picture at the same
    max_side as the outputs.
    """

    def __init__(self, style: Path, max_side: int, device: str = "cpu") -> None:
        from stylepipe.core.target_fns import StyleSizing, WeightedImage, compute_targets
        from stylepipe.extend.networks import build_extractor
        from stylepipe.extend.terms import ContentLoss, ContentParams, StyleLoss, StyleParams
        from stylepipe.io.images import load_image

        self.max_side = max_side
        self.device = torch.device(device)
        self.extractor = build_extractor(REFERENCE_NETWORK, None, REFERENCE_POOLING, self.device)
        self.terms = [ContentLoss(ContentParams(layers=CONTENT_LAYERS, weight=CONTENT_WEIGHT)),
                      StyleLoss(StyleParams(layers=STYLE_LAYERS, weight=STYLE_WEIGHT))]
        picture = WeightedImage(load_image(style).tensor, 1.0)
        self.style = compute_targets([picture], self.extractor, self.terms, StyleSizing(max_side, None), self.device)

    def _content(self, path: Path) -> torch.Tensor:
        from stylepipe.core.geometry import resize, target_size
        from stylepipe.io.images import load_image

        image = load_image(path).tensor
        return resize(image, target_size(image.shape[-2], image.shape[-1], self.max_side, None))

    def score(self, image_path: Path, content_path: Path) -> dict[str, float]:
        """Unweighted content and style and the weighted total of one output against its photo."""
        from stylepipe.core.geometry import resize
        from stylepipe.core.objective import Objective, content_targets
        from stylepipe.io.images import load_image

        content = self._content(content_path).unsqueeze(0).to(self.device)
        image = load_image(image_path).tensor
        if tuple(image.shape[-2:]) != tuple(content.shape[-2:]):  # another tool rounded the size otherwise
            image = resize(image, tuple(content.shape[-2:]))
        objective = Objective(self.extractor, self.terms, content_targets(self.extractor, self.terms, content), self.style)
        values = objective.evaluate(image.unsqueeze(0).to(self.device))
        return {name: float(value[0]) for name, value in values.items()}

    def mean(self, pairs: Sequence[tuple[Path, Path]]) -> dict[str, float]:
        """Mean of each part over (output, content photo) pairs."""
        scores = [self.score(output, content) for output, content in pairs]
        return {name: sum(s[name] for s in scores) / len(scores) for name in scores[0]}


def vgg_step_flops(height: int, width: int, deepest_block: int = 5) -> float:
    """Model FLOPs of one loss evaluation of one picture: the convolutions of VGG19 up to the first
    convolution of `deepest_block` (relu5_1), forward and backward to the input (the weights are
    frozen, so the backward pass is one transposed convolution per layer: the forward's cost)."""
    flops, in_ch, h, w = 0.0, 3, height, width
    for block, (out_ch, count) in enumerate(zip(CHANNELS, BLOCKS), start=1):
        for _ in range(1 if block == deepest_block else count):
            flops += 2 * 9 * in_ch * out_ch * h * w
            in_ch = out_ch
        if block == deepest_block:
            break
        h, w = -(-h // 2), -(-w // 2)  # ceil-mode pools, as vgg19-gatys
    return 2 * flops


def pair_outputs(outputs: Sequence[Path], contents: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Match outputs named `{content stem}__…` to their content photos."""
    by_stem = {path.stem: path for path in contents}
    return [(output, by_stem[output.name.split("__", 1)[0]]) for output in outputs]


# --- output ---------------------------------------------------------------------------------------


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """Options every benchmark shares: where the JSON goes and an optional kept work folder."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--json", type=Path, default=RESULTS / f"{name}.json", help="where to write the JSON result")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep inputs, outputs and reports in this folder; without it, a temp folder is removed")
    return parser


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A pipe table, printed as-is and pasteable into docs/benchmarks.md."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if magnitude >= 0.01 else f"{value:.3g}"
    return str(value)


def write_result(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write the JSON result (with the load average at the end, to judge contention)."""
    data = dict(payload)
    data.setdefault("machine", {})["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
