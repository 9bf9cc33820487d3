"""`stylepipe plugins list`: the loss terms and style sources a pipeline can name, and where each came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .options import SetOpt, VerboseOpt, guard, plugins_app, stdout, verbose_logging


@plugins_app.command("list")
def plugins_list(pipeline: Annotated[Optional[Path], typer.Argument(help="also load this pipeline's plugin folders")] = None,
                 set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Every loss term and style source, with where it came from."""
    from ..extend.registries import LOSSES, STYLE_SOURCES, register_builtins

    verbose_logging(verbose)

    def body() -> None:
        register_builtins()
        if pipeline is not None:
            from ..config.load import load_pipeline
            from ..plan.loss_setup import load_plugins

            load_plugins(load_pipeline(pipeline, set_ or []))
        table = Table(box=None, pad_edge=False)
        for column in ("kind", "name", "origin"):
            table.add_column(column, overflow="fold")
        for registry in (LOSSES, STYLE_SOURCES):
            registry.load_entry_points()
            for entry in registry.entries():
                table.add_row(registry.kind, entry.name, entry.origin)
        stdout.print(table)

    guard(body)
