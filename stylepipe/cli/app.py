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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import __version__
from ..core.errors import ConfigError, StylepipeError
from ..report.record import ItemReport
from .logs import add_log_file, setup_logging
from .progress import Clock, PlainThrottle, ProgressTracker, format_duration

# Plain click help: flags without a `<bool>` after them, and no boxes in a pipe.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Batch neural style transfer, declared in YAML.")
cache_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and repair the style-target cache.")
plugins_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Loss terms and style sources, and where each came from.")
app.add_typer(cache_app, name="cache")
app.add_typer(plugins_app, name="plugins")

stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("stylepipe")
T = TypeVar("T")

# Options shared by every command that reads a pipeline, so that `plan` previews exactly what
# `run` with the same options does. Paths on the command line are relative to the working
# directory (paths inside the pipeline file are relative to the file).
PipelineArg = Annotated[Path, typer.Argument(help="the pipeline YAML file", show_default=True)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a key: --set optimize.steps=50 (repeatable); "
                                                     "path values are relative to the working directory")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="override output.dir (relative to the working directory)")]
ShardOpt = Annotated[Optional[str], typer.Option(help="only shard I/N of the jobs (stable hash), e.g. 0/4")]
ForceOpt = Annotated[bool, typer.Option("--force", help="redo outputs that are already up to date")]
MaxJobsOpt = Annotated[Optional[int], typer.Option("--max-jobs", min=1, help="stop cleanly after this many jobs")]
ExecutorOpt = Annotated[Optional[str], typer.Option(help="override the pipeline's executor (local, ray)")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging on stderr")]


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; a StylepipeError becomes one message on stderr and its exit code."""
    try:
        return action()
    except StylepipeError as exc:
        for line in str(exc).splitlines():
            stderr.print(f"[red]error:[/red] {escape(line)}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _verbose(verbose: bool) -> None:
    """`-v` works after the subcommand too (`stylepipe run -v`), not only before it."""
    if verbose:
        setup_logging(stderr, True)


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    setup_logging(stderr, verbose)


@app.command()
def version() -> None:
    """Print the version."""
    stdout.print(__version__)


class CliEvents:
    """Renders run events: on a terminal live bars with each picture's step, loss and ETA and the
    run's ETA; otherwise (cron, logs) one line per job, and a progress line for a long picture at
    most every 30 s and every 10% of its steps."""

    def __init__(self, console: Console | None = None, clock: Clock = time.monotonic, plain_every_s: float = 30.0) -> None:
        self.console = console or stderr
        self.live = self.console.is_terminal
        self.tracker = ProgressTracker(clock)
        self.throttle = PlainThrottle(plain_every_s, clock=clock)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console, transient=True, disable=not self.live,
                                 get_time=clock)
        self.run_task: TaskID | None = None
        self.job_task: TaskID | None = None

    def __enter__(self) -> CliEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def planned(self, total: int, todo: int) -> None:
        log.info("%d job(s): %d to run, %d already done", total, todo, total - todo)
        self.tracker.planned(todo)
        self.run_task = self.progress.add_task("jobs", total=todo, info=f"0/{todo}")

    def targets(self, label: str, cached: bool) -> None:
        log.info("style %s: targets %s", label, "from cache" if cached else "computed")

    def job_started(self, job: Any) -> None:
        self.tracker.job_started(job.index)
        self.throttle.restart()
        if self.job_task is not None:
            self.progress.remove_task(self.job_task)
        self.job_task = self.progress.add_task(_job_name(job.content_ref, job.style_ref, job.layers), total=None, info="")

    def step(self, job: Any, step: int, steps: int, loss: float) -> None:
        now = self.tracker.step(job.index, step, steps, loss)
        name = _job_name(job.content_ref, job.style_ref, job.layers)  # a batch reports its first picture's steps
        if self.job_task is not None:
            self.progress.update(self.job_task, description=name, completed=step, total=steps, info=now.text())
        self._run_info(now.run_eta)
        if not self.live and self.throttle.due(step, steps):
            log.info("progress: %s: %s, %s elapsed", name, now.text(), format_duration(now.elapsed))

    def job_finished(self, job: Any, item: ItemReport) -> None:
        self.tracker.job_finished(item.job, made=item.status == "done")
        if item.status == "failed":
            log.error("failed: job %d (%s): %s", item.job, _job_name(item.content, item.style, item.layers), item.error)
        else:
            note = f"; {item.note}" if item.note else ""
            log.info("done: %s (%.1f s%s)", Path(item.output or "").name, item.seconds, note)
        if self.run_task is not None:
            self.progress.advance(self.run_task)
        self._run_info(self.tracker.run_eta())

    def _run_info(self, run_eta: float | None) -> None:
        """The run's bar: pictures finished of those to do, and the time left when it is known."""
        if self.run_task is not None:
            eta = f" · run ETA {format_duration(run_eta)}" if run_eta else ""
            self.progress.update(self.run_task, info=f"{self.tracker.finished}/{self.tracker.todo}{eta}")

    def warning(self, message: str) -> None:
        log.warning("%s", message)


def _job_name(content: str | None, style: str | None, layers: str | None) -> str:
    """`chelsea.jpg × scream`, or for a reconstruction `chelsea.jpg from conv3_1`."""
    parts = [Path(content).name if content else None, style]
    name = " × ".join(part for part in parts if part)
    return f"{name} from {layers}" if layers else name


def _style_cell(style: str | None, layers: str | None) -> str:
    """A table's style column: the style, and a reconstruction's layers in parentheses."""
    return " ".join(part for part in (style, f"({layers})" if layers else None) if part)


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
        table.add_row(f"[{colours[item.status]}]{item.status}[/]", Path(item.content).name if item.content else "",
                      _style_cell(item.style, item.layers),
                      _short(item.output) if item.status != "failed" else (item.error or ""), f"{item.seconds:.1f}",
                      f"{style_loss:.3g}" if style_loss is not None else "")
    return table


def _install_stop_handlers(bounds) -> None:
    """SIGTERM (and a first Ctrl-C) finish the current job, write the report and exit."""
    import signal

    def request_stop(signum: int, frame: object) -> None:
        if bounds.stop_requested.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (the report is still written; exit 130)
        bounds.stop_requested.set()
        log.warning("%s received: finishing the current job, then stopping", signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)


def _select(plan, shard: Optional[str]) -> None:
    """Restrict a plan to `--shard I/N`, as `run` does."""
    from ..running.schedule import Shard

    if shard:
        plan.keep(Shard.parse(shard).owns)


def _warn_all(messages: list[str]) -> None:
    for message in messages:
        log.warning("%s", message)


@app.command()
def run(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    report: Annotated[Optional[Path], typer.Option(help="where to write the JSON report (default <output dir>/report.json)")] = None,
    force: ForceOpt = False,
    set_: SetOpt = None,
    output_dir: OutputOpt = None,
    executor: ExecutorOpt = None,
    shard: ShardOpt = None,
    max_jobs: MaxJobsOpt = None,
    time_budget: Annotated[Optional[str], typer.Option("--time-budget", help="stop cleanly before this wall time is exceeded (90s, 45m, 2h)")] = None,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="also write logs to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the run summary as one JSON object on stdout")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline: style every content × style pair that is not already done."""
    from ..api import run as run_api
    from ..running.schedule import RunBounds, parse_duration

    _verbose(verbose)

    def body() -> int:
        if log_file is not None:
            add_log_file(log_file)
        bounds = RunBounds(max_jobs=max_jobs, time_budget=parse_duration(time_budget) if time_budget else None)
        _install_stop_handlers(bounds)
        try:
            with CliEvents() as events:
                result = run_api(pipeline, sets=set_ or [], force=force, report=report, output_dir=output_dir,
                                 executor=executor, shard=shard, events=events, bounds=bounds)
        except KeyboardInterrupt:
            log.error("interrupted by a second Ctrl-C: the report lists what was done and what remains")
            return 130
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
    from ..core.errors import ConfigError
    from ..report.page import page_for_folder

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
def validate(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    set_: SetOpt = None,
    output_dir: OutputOpt = None,
    executor: ExecutorOpt = None,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    max_jobs: MaxJobsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check the pipeline (schema, files, plugins) without running anything; every mistake at once."""
    from ..running.executors import get_executor
    from ..running.runner import load_checked, make_plan

    _verbose(verbose)

    def body() -> None:
        loaded = load_checked(pipeline, set_ or [])
        get_executor(executor or loaded.config.executor, loaded.config)
        plan = make_plan(loaded, force=force, output_dir=output_dir)
        _select(plan, shard)
        _warn_all(plan.warnings)
        stdout.print(f"{pipeline}: valid — {len(plan.jobs)} job(s), {len(plan.terms)} loss term(s)")

    _guard(body)


@app.command("plan")
def plan_cmd(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    set_: SetOpt = None,
    force: ForceOpt = False,
    output_dir: OutputOpt = None,
    executor: ExecutorOpt = None,
    shard: ShardOpt = None,
    max_jobs: MaxJobsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as one JSON object on stdout")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dry run: what `run` with the same options would do, what is already done, which style targets are cached."""
    from ..running.executors import get_executor
    from ..running.runner import cached_targets, load_checked, make_plan, open_cache, select_jobs
    from ..running.schedule import RunBounds

    _verbose(verbose)

    def body() -> None:
        loaded = load_checked(pipeline, set_ or [])
        get_executor(executor or loaded.config.executor, loaded.config)
        plan = make_plan(loaded, force=force, output_dir=output_dir)
        _select(plan, shard)
        _warn_all(plan.warnings)
        done = {job.index for job in plan.done}
        will_run = {job.index for job in select_jobs(plan.todo, RunBounds(max_jobs=max_jobs))}
        with open_cache(plan.pipeline) as cache:
            targets = cached_targets(plan, cache)
        status = lambda j: "done" if j.index in done else ("todo" if j.index in will_run else "later")  # noqa: E731
        jobs: list[dict[str, Any]] = [{"job": j.index, "content": j.content_ref, "style": j.style_ref, "layers": j.layers, "output": str(j.output),
                 "status": status(j), "error": j.error} for j in plan.jobs]
        if as_json:
            print(json.dumps({"jobs": jobs, "style_targets": [t.__dict__ for t in targets]}))
            return
        table = Table(box=None, pad_edge=False)
        for column in ("job", "status", "content", "style", "output"):
            table.add_column(column)
        for j in jobs:
            table.add_row(str(j["job"]), j["status"], Path(j["content"]).name if j["content"] else "",
                          _style_cell(j["style"], j["layers"]), _short(j["output"]))
        stdout.print(table)
        for t in targets:
            stdout.print(f"style target {t.label}: {'cached' if t.cached else 'to compute'}")
        later = len(plan.jobs) - len(done) - len(will_run)
        stdout.print(f"{len(will_run)} to run, {len(done)} already done" + (f", {later} left for a later run" if later else ""))

    _guard(body)


CacheDir = Annotated[Optional[Path], typer.Option("--dir", help="cache folder (default: the pipeline's cache.dir)")]


def _cache_location(pipeline: Path, directory: Optional[Path], overrides: list[str]) -> tuple[Optional[Path], int]:
    """The cache folder and its size limit: `--dir`, else the pipeline's `cache:` section."""
    from ..config.load import load_pipeline
    from ..targets.cache import DEFAULT_SIZE_LIMIT_MB

    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(f"--dir {directory}: no such cache folder (nothing was created); check the path")
        return directory, DEFAULT_SIZE_LIMIT_MB << 20
    try:
        loaded = load_pipeline(pipeline, overrides)
    except ConfigError as exc:
        if pipeline.exists():
            raise
        raise ConfigError(f"{exc}; name a pipeline file, or the cache folder with --dir DIR") from None
    cfg = loaded.config.cache
    return (loaded.resolve(cfg.dir) if cfg.enabled else None), cfg.size_limit_mb * 1024 * 1024


def _open_cache_at(pipeline: Path, directory: Optional[Path], overrides: list[str]):
    from ..targets.cache import TargetCache

    folder, limit = _cache_location(pipeline, directory, overrides)
    return TargetCache(folder, size_limit_bytes=limit)


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


@cache_app.command("info")
def cache_info(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
               verbose: VerboseOpt = False) -> None:
    """Where the cache is, how many targets it holds and how large it is (changes nothing on disk)."""
    from ..targets.disk import read_info

    _verbose(verbose)

    def body() -> None:
        folder, limit = _cache_location(pipeline, directory, set_ or [])
        if folder is None:
            stdout.print("disk cache: off (cache.enabled is false)")
            return
        lines = [f"directory: {folder}"]
        if not folder.is_dir():
            lines.append("entries: 0 (not created yet: the first run creates it)")
        else:
            info = read_info(folder, limit)
            if info.problem:
                lines.append(f"database: unreadable ({info.problem}); the next run or `stylepipe cache check` moves it aside")
            else:
                lines.append(f"entries: {info.entries}")
            lines.append(f"size: {_mib(info.size_bytes)}")
        lines.append(f"limit: {limit / 2**20:.0f} MiB")
        stdout.print("\n".join(lines))

    _guard(body)


@cache_app.command("check")
def cache_check(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
                verbose: VerboseOpt = False) -> None:
    """Verify every entry's checksum and drop the corrupt ones (they are recomputed when needed)."""
    _verbose(verbose)

    def body() -> None:
        with _open_cache_at(pipeline, directory, set_ or []) as cache:
            result = cache.check()
        stdout.print(f"checked {result.checked} entr{'y' if result.checked == 1 else 'ies'}, dropped {len(result.dropped)} corrupt")

    _guard(body)


@cache_app.command("clear")
def cache_clear(pipeline: PipelineArg = Path("pipeline.yaml"), directory: CacheDir = None, set_: SetOpt = None,
                verbose: VerboseOpt = False) -> None:
    """Remove every cached style target."""
    _verbose(verbose)

    def body() -> None:
        with _open_cache_at(pipeline, directory, set_ or []) as cache:
            removed = cache.clear()
        stdout.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")

    _guard(body)


@plugins_app.command("list")
def plugins_list(pipeline: Annotated[Optional[Path], typer.Argument(help="also load this pipeline's plugin folders")] = None,
                 set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Every loss term and style source, with where it came from."""
    from ..extend.registries import LOSSES, STYLE_SOURCES, register_builtins

    _verbose(verbose)

    def body() -> None:
        register_builtins()
        if pipeline is not None:
            from ..config.load import load_pipeline
            from ..plan.terms import load_plugins

            load_plugins(load_pipeline(pipeline, set_ or []))
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
def networks(verbose: VerboseOpt = False) -> None:
    """The networks stylepipe knows and whether their weights are available here."""
    from ..io.weights import NETWORKS, weights_availability

    _verbose(verbose)
    for name, description in NETWORKS.items():
        available, where = weights_availability(name)
        stdout.print(f"{name}: {description}\n    weights: {'available' if available else 'NOT available'} — {where}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
