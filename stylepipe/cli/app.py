"""The command line's main commands (run, plan, validate, report, networks, version); each turns
stylepipe's exceptions into exit codes (`cli.exit_codes`).

Results (tables, JSON) go to stdout; logs and progress go to stderr, with live bars only when
stderr is a terminal. Exit codes: 0 all done or skipped (or stopped cleanly by a bound or
SIGTERM, with the rest reported as remaining), 1 some jobs failed, 2 configuration or usage
error (nothing run), 3 environment problem (no weights, no device), 4 another run holds the
output folder's lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from .. import __version__
from ..core.errors import ConfigError
from . import cache_commands, plugin_commands  # noqa: F401 - their commands register on import
from .logs import add_log_file, setup_logging
from .options import (
    ExecutorOpt,
    ForceOpt,
    MaxJobsOpt,
    OutputOpt,
    PipelineArg,
    SetOpt,
    ShardOpt,
    VerboseOpt,
    app,
    guard,
    log,
    stderr,
    stdout,
    verbose_logging,
)
from .render import CliEvents, short_path, style_cell, summary_table


def _print_version(value: bool) -> None:
    if value:
        stdout.print(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: VerboseOpt = False,
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    setup_logging(stderr, verbose)


@app.command()
def version(verbose: VerboseOpt = False) -> None:
    """Print the version."""
    verbose_logging(verbose)
    stdout.print(__version__)


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


def _checked_plan(pipeline: Path, overrides: list[str], executor: Optional[str], force: bool,
                  output_dir: Optional[Path], shard: Optional[str]):
    """What `validate` and `plan` check as `run` would: the pipeline, the executor's name and
    settings, and the plan of this shard (its warnings logged)."""
    from ..running.executors import get_executor
    from ..running.runner import load_checked, make_plan

    loaded = load_checked(pipeline, overrides)
    get_executor(executor or loaded.config.executor, loaded.config)
    plan = make_plan(loaded, force=force, output_dir=output_dir)
    _select(plan, shard)
    _warn_all(plan.warnings)
    return plan


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
    time_budget: Annotated[Optional[str], typer.Option("--time-budget", metavar="DURATION", help="stop cleanly before this wall time is exceeded (90s, 45m, 2h)")] = None,
    log_file: Annotated[Optional[Path], typer.Option("--log-file", help="also write logs to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the run summary as one JSON object on stdout")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the pipeline: style every content × style pair that is not already done."""
    from ..api import run as run_api
    from ..running.schedule import RunBounds, parse_duration

    verbose_logging(verbose)

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
            stdout.print(summary_table(result.items))
            s, t = data["summary"], data["style_targets"]
            rejected = f", {s['rejected']} file(s) not styled (listed above)" if s["rejected"] else ""
            stdout.print(f"{s['done']} done, {s['skipped']} skipped, {s['failed']} failed{rejected}, {s['remaining']} remaining "
                         f"in {s['seconds']:.1f} s; style targets: {t['computed']} computed, {t['cache_hits']} from cache")
            if result.stopped:
                stdout.print(f"stopped early: {result.stopped}; run again to continue")
        return result.exit_code

    raise typer.Exit(guard(body))


@app.command("report")
def report_cmd(
    output_dir: Annotated[Path, typer.Argument(help="an output folder with report.json (and any shard reports)")],
    open_page: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rebuild report.html from the folder's report files and pictures (all shards on one page)."""
    from ..report.page import page_for_folder

    verbose_logging(verbose)

    def body() -> None:
        if not output_dir.is_dir():
            raise ConfigError(f"{output_dir}: no such folder")
        page = page_for_folder(output_dir.resolve())
        stdout.print(str(page))
        if open_page:
            import webbrowser

            webbrowser.open(page.as_uri())

    guard(body)


@app.command()
def validate(
    pipeline: PipelineArg = Path("pipeline.yaml"),
    set_: SetOpt = None,
    output_dir: OutputOpt = None,
    executor: ExecutorOpt = None,
    shard: ShardOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check the pipeline (schema, files, plugins) and the environment (device, weights) without
    running anything; every mistake of the file at once (exit 2), then what this machine lacks (exit 3)."""
    from ..running.runner import check_environment

    verbose_logging(verbose)

    def body() -> None:
        plan = _checked_plan(pipeline, set_ or [], executor, False, output_dir, shard)
        check_environment(plan.settings)
        stdout.print(f"{pipeline}: valid — {len(plan.jobs)} job(s), {len(plan.terms)} loss term(s)")

    guard(body)


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
    from ..plan.run_settings import describe_levels, level_rows
    from ..running.runner import cached_targets, open_cache, select_jobs
    from ..running.schedule import RunBounds

    verbose_logging(verbose)

    def body() -> None:
        plan = _checked_plan(pipeline, set_ or [], executor, force, output_dir, shard)
        done = {job.index for job in plan.done}
        will_run = {job.index for job in select_jobs(plan.todo, RunBounds(max_jobs=max_jobs))}
        with open_cache(plan.pipeline) as cache:
            targets = cached_targets(plan, cache)
        levels = level_rows(plan.settings, plan.level_sizings)
        status = lambda j: "done" if j.index in done else (  # noqa: E731
            ("re-encode" if j.index in plan.reencode else "todo") if j.index in will_run else "later")
        jobs: list[dict[str, Any]] = [{"job": j.index, "content": j.content_ref, "style": j.style_ref, "layers": j.layers, "output": str(j.output),
                 "status": status(j), "reason": plan.reasons.get(j.index), "error": j.error} for j in plan.jobs]
        if as_json:
            print(json.dumps({"jobs": jobs, "levels": levels, "precision": plan.settings.precision,
                              "precision_reason": plan.settings.precision_reason,
                              "style_targets": [t.__dict__ for t in targets]}))
            return
        table = Table(box=None, pad_edge=False)
        for column in ("job", "status", "content", "style", "output", "why"):
            table.add_column(column)
        for j in jobs:
            table.add_row(str(j["job"]), j["status"], Path(j["content"]).name if j["content"] else "",
                          style_cell(j["style"], j["layers"]), short_path(j["output"]), j["reason"] or "")
        stdout.print(table)
        if len(levels) > 1:  # one level: the output size, as before levels existed
            stdout.print(f"levels: {describe_levels(levels)}", markup=False)
        stdout.print(f"precision: {plan.settings.precision} ({plan.settings.precision_reason})", markup=False)
        for t in targets:
            size = "" if len(levels) == 1 else (f" at {t.style_side} px" if t.style_side else f" at {t.style_pixels} pixels")
            stdout.print(f"style target {t.label}{size}: {'cached' if t.cached else 'to compute'}")
        later = len(plan.jobs) - len(done) - len(will_run)
        reencode = len(will_run & set(plan.reencode))
        stdout.print(f"{len(will_run)} to run" + (f" ({reencode} re-encoded from kept paintings)" if reencode else "")
                     + f", {len(done)} already done" + (f", {later} left for a later run" if later else ""))

    guard(body)


@app.command()
def networks(verbose: VerboseOpt = False) -> None:
    """The networks stylepipe knows and whether their weights are available here."""
    from ..extend.networks import NETWORKS

    verbose_logging(verbose)
    for name in NETWORKS.names():
        spec = NETWORKS.get(name)
        available, where = spec.availability()
        stdout.print(f"{name}: {spec.description}\n    weights: {'available' if available else 'NOT available'} — {where}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
