"""The command line (typer app, terminal rendering, progress, logging set-up): the top layer.
May import every layer below and the library face (`stylepipe.api`); nothing imports it."""

from .app import main

__all__ = ["main"]
