"""The command line: typer commands that turn stylepipe's exceptions into exit codes.

Results (tables, JSON) go to stdout; logs and progress go to stderr, with live bars only when
stderr is a terminal. Exit codes: 0 all done or skipped (or stopped cleanly by a bound or
SIGTERM, with the rest reported as remaining), 1 some jobs failed, 2 configuration or usage
error (nothing run), 3 environment problem (no weights, no device), 4 another run holds the
output folder's lock.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import StylepipeError
from .report import ItemReport

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Batch neural style transfer, declared in YAML.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect and repair the style-target cache.")
plugins_app = typer.Typer(no_args_is_help=True, help="Loss terms and style sources, and where each came from.")
app.add_typer(cache_app, name="cache")
app.add_typer(plugins_app, name="plugins")

stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False)
log = logging.getLogger("stylepipe")
T = TypeVar("T")

PipelineArg = Annotated[Path, typer.Argument(help="the pipeline YAML file", show_default=True)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a key: --set optimize.steps=50 (repeatable)")]


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=stderr, show_path=False, show_time=stderr.is_terminal, markup=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], format="%(message)s", force=True)


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; a StylepipeError becomes one message on stderr and its exit code."""
    try:
        return action()
    except StylepipeError as exc:
        for line in str(exc).splitlines():
            stderr.print(f"[red]error:[/red] {escape(line)}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging on stderr")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    stdout.print(__version__)


class CliEvents:
    """Renders run events: live bars on a terminal, one log line per job otherwise."""

    def __init__(self) -> None:
        self.live = stderr.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=stderr, transient=True, disable=not self.live)
        self.run_task = None
        self.job_task = None

    def __enter__(self) -> CliEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def planned(self, total: int, todo: int) -> None:
        log.info("%d job(s): %d to run, %d already done", total, todo, total - todo)
        self.run_task = self.progress.add_task("jobs", total=todo)

    def targets(self, label: str, cached: bool) -> None:
        log.info("style %s: targets %s", label, "from cache" if cached else "computed")

    def job_started(self, job: Any) -> None:
        name = f"{Path(job.content_label).name} × {job.style_label}"
        if self.job_task is not None:
            self.progress.remove_task(self.job_task)
        self.job_task = self.progress.add_task(name, total=None)

    def step(self, job: Any, step: int, steps: int, loss: float) -> None:
        if self.job_task is not None:
            self.progress.update(self.job_task, completed=step, total=steps)

    def job_finished(self, job: Any, item: ItemReport) -> None:
        if item.status == "failed":
            log.error("failed: %s", item.error)
        else:
            note = f"; {item.note}" if item.note else ""
            log.info("done: %s (%.1f s%s)", Path(item.output or "").name, item.seconds, note)
        if self.run_task is not None:
            self.progress.advance(self.run_task)

    def warning(self, message: str) -> None:
        log.warning("%s", message)


def _short(path: str | None) -> str:
    """Paths relative to the working directory when they are below it: tables stay readable."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _summary_table(items: list[ItemReport]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("status", "content", "style", "output / error", "seconds", "style loss"):
        table.add_column(column)
    colours = {"done": "green", "skipped": "cyan", "failed": "red"}
    for item in sorted(items, key=lambda i: i.job):
        style_loss = item.loss.get("style") if item.loss else None
        table.add_row(f"[{colours[item.status]}]{item.status}[/]", Path(item.content).name, item.style,
                      _short(item.output) if item.status != "failed" else (item.error or ""), f"{item.seconds:.1f}",
                      f"{style_loss:.3g}" if style_loss is not None else "")
    return table


def _install_stop_handlers(bounds) -> None:
    """SIGTERM (and a first Ctrl-C) finish the current job, write the report and exit."""
    import signal

    def request_stop(signum: int, frame: object) -> None:
        if bounds.stop_requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the report is still written)
        bounds.stop_requested.set()
        log.warning("%s received: finishing the current job, then stopping", signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)


def _add_log_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


@app.command()
def run(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    report: Annotated[Optional[Path], typer.Option(help="where to write the JSON report (default <output dir>/report.json)")] = None,
    force: Annotated[bool, typer.Option("--force", help="redo outputs that are already up to date")] = False,
    set_: SetOpt = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="override output.dir")] = None,
    executor: Annotated[Optional[str], typer.Option(help="override the pipeline's executor (local, ray)")] = None,
    shard: Annotated[Optional[str], typer.Option(help="run shard I/N of the jobs (stable hash), e.g. 0/4")] = None,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs", min=1, help="stop cleanly after this many jobs")] = None,
    time_budget: Annotated[Optional[str], typer.Option("--time-budget", help="stop cleanly before this wall time is exceeded (90s, 45m, 2h)")] = None,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="also write logs to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the run summary as one JSON object on stdout")] = False,
) -> None:
    """Run the pipeline: style every content × style pair that is not already done."""
    from .config import load_pipeline
    from .runner import run_pipeline
    from .schedule import RunBounds, Shard, parse_duration

    def body() -> int:
        if log_file is not None:
            _add_log_file(log_file)
        bounds = RunBounds(max_jobs=max_jobs, time_budget=parse_duration(time_budget) if time_budget else None)
        selected = Shard.parse(shard) if shard else None
        loaded = load_pipeline(pipeline, set_ or [])
        _install_stop_handlers(bounds)
        with CliEvents() as events:
            result = run_pipeline(loaded, force=force, report_path=report, output_dir=output_dir, executor=executor,
                                  events=events, shard=selected, bounds=bounds)
        data = result.to_dict()
        if as_json:
            print(json.dumps({key: data[key] for key in ("summary", "style_targets", "stopped", "shard", "pipeline")}
                             | {"items": data["items"], "remaining": data["remaining"]}))
        else:
            stdout.print(_summary_table(result.items))
            s, t = data["summary"], data["style_targets"]
            rejected = f", {s['rejected']} file(s) not styled (listed above)" if s["rejected"] else ""
            stdout.print(f"{s['done']} done, {s['skipped']} skipped, {s['failed']} failed{rejected}, {s['remaining']} remaining "
                         f"in {s['seconds']:.1f} s; style targets: {t['computed']} computed, {t['cache_hits']} from cache")
            if result.stopped:
                stdout.print(f"stopped early: {result.stopped}; run again to continue")
        return result.exit_code

    raise typer.Exit(_guard(body))


@app.command("report")
def report_cmd(
    output_dir: Annotated[Path, typer.Argument(help="an output folder with report.json (and any shard reports)")],
    open_page: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
) -> None:
    """Rebuild report.html from the folder's report files and pictures (all shards on one page)."""
    from .errors import ConfigError
    from .gallery import page_for_folder

    def body() -> None:
        if not output_dir.is_dir():
            raise ConfigError(f"{output_dir}: no such folder")
        page = page_for_folder(output_dir.resolve())
        stdout.print(str(page))
        if open_page:
            import webbrowser

            webbrowser.open(page.as_uri())

    _guard(body)


@app.command()
def validate(pipeline: PipelineArg = Path("pipeline.yaml"), set_: SetOpt = None) -> None:
    """Check the pipeline (schema, files, plugins) without running anything."""
    from .config import load_pipeline
    from .runner import make_plan

    def body() -> None:
        plan = make_plan(load_pipeline(pipeline, set_ or []))
        stdout.print(f"{pipeline}: valid — {len(plan.jobs)} job(s), {len(plan.terms)} loss term(s)")

    _guard(body)


@app.command("plan")
def plan_cmd(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Dry run: what would run, what is already done, which style targets are cached."""
    from .config import load_pipeline
    from .runner import cached_targets, make_plan, open_cache

    def body() -> None:
        plan = make_plan(load_pipeline(pipeline, set_ or []), force=force)
        done = {job.index for job in plan.done}
        with open_cache(plan.pipeline) as cache:
            targets = cached_targets(plan, cache)
        jobs = [{"job": j.index, "content": j.content_label, "style": j.style_label, "output": str(j.output),
                 "status": "done" if j.index in done else "todo", "error": j.error} for j in plan.jobs]
        if as_json:
            print(json.dumps({"jobs": jobs, "style_targets": [t.__dict__ for t in targets]}))
            return
        table = Table(box=None, pad_edge=False)
        for column in ("job", "status", "content", "style", "output"):
            table.add_column(column)
        for j in jobs:
            table.add_row(str(j["job"]), j["status"], Path(j["content"]).name, j["style"], _short(j["output"]))
        stdout.print(table)
        for t in targets:
            stdout.print(f"style target {t.label}: {'cached' if t.cached else 'to compute'}")
        stdout.print(f"{len(jobs) - len(done)} to run, {len(done)} already done")

    _guard(body)


def _cache_for(pipeline: Path, directory: Optional[Path]):
    from .cache import TargetCache
    from .config import load_pipeline
    from .runner import open_cache

    if directory is not None:
        return TargetCache(directory)
    return open_cache(load_pipeline(pipeline))


CacheDir = Annotated[Optional[Path], typer.Option("--dir", help="cache folder (default: the pipeline's cache.dir)")]


@cache_app.command("info")
def cache_info(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None) -> None:
    """Where the cache is, how many targets it holds and how large it is."""

    def body() -> None:
        with _cache_for(pipeline, directory) as cache:
            info = cache.info()
        stdout.print(f"directory: {info.directory}\nentries: {info.entries}\nsize: {info.size_bytes / 1e6:.2f} MB "
                     f"(limit {info.size_limit_bytes / 1e6:.0f} MB)\ndisk: {'on' if info.disk_enabled else 'off'}")

    _guard(body)


@cache_app.command("check")
def cache_check(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None) -> None:
    """Verify every entry's checksum and drop the corrupt ones (they are recomputed when needed)."""

    def body() -> None:
        with _cache_for(pipeline, directory) as cache:
            result = cache.check()
        stdout.print(f"checked {result.checked} entr{'y' if result.checked == 1 else 'ies'}, dropped {len(result.dropped)} corrupt")

    _guard(body)


@cache_app.command("clear")
def cache_clear(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None) -> None:
    """Remove every cached style target."""

    def body() -> None:
        with _cache_for(pipeline, directory) as cache:
            removed = cache.clear()
        stdout.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")

    _guard(body)


@plugins_app.command("list")
def plugins_list(pipeline: Annotated[Optional[Path], typer.Argument(help="also load this pipeline's plugin folders")] = None) -> None:
    """Every loss term and style source, with where it came from."""
    from .registry import LOSSES, STYLE_SOURCES, register_builtins

    def body() -> None:
        register_builtins()
        if pipeline is not None:
            from .config import load_pipeline
            from .plan import load_plugins

            load_plugins(load_pipeline(pipeline))
        table = Table(box=None, pad_edge=False)
        for column in ("kind", "name", "origin"):
            table.add_column(column, overflow="fold")
        for registry in (LOSSES, STYLE_SOURCES):
            registry.load_entry_points()
            for entry in registry.entries():
                table.add_row(registry.kind, entry.name, entry.origin)
        stdout.print(table)

    _guard(body)


@app.command()
def networks() -> None:
    """The networks stylepipe knows and whether their weights are available here."""
    from .network import NETWORKS, gatys_weights_path

    for name, description in NETWORKS.items():
        status = ""
        if name == "vgg19-gatys":
            try:
                status = f"weights: {gatys_weights_path()}"
            except StylepipeError as exc:
                status = f"unavailable: {exc}"
        else:
            status = "weights: downloaded by torchvision, or network.weights"
        stdout.print(f"{name}: {description}\n    {status}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
