"""The typer apps, the consoles (results to stdout, logs and progress to stderr) and the options
shared by every command that reads a pipeline, so `plan` previews exactly what `run` does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..core.errors import StylepipeError
from .exit_codes import exit_code_for
from .logs import setup_logging

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


SetOpt = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="override a key: --set optimize.steps=50 (repeatable); "
                                                     "path values are relative to the working directory")]


OutputOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="override output.dir (relative to the working directory)")]


ShardOpt = Annotated[Optional[str], typer.Option(metavar="I/N", help="only shard I/N of the jobs (stable hash), e.g. 0/4")]


ForceOpt = Annotated[bool, typer.Option("--force", help="redo outputs that are already up to date")]


MaxJobsOpt = Annotated[Optional[int], typer.Option("--max-jobs", min=1, metavar="N", help="stop cleanly after this many jobs")]


ExecutorOpt = Annotated[Optional[str], typer.Option(metavar="[local|ray]", help="override the pipeline's executor")]


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging on stderr")]


def guard(action: Callable[[], T]) -> T:
    """Run a command body; a StylepipeError becomes one message on stderr and its exit code."""
    try:
        return action()
    except StylepipeError as exc:
        for line in str(exc).splitlines():
            stderr.print(f"[red]error:[/red] {escape(line)}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code_for(exc)) from None


def verbose_logging(verbose: bool) -> None:
    """`-v` works after the subcommand too (`stylepipe run -v`), not only before it."""
    if verbose:
        setup_logging(stderr, True)
