"""Where log records go: rich lines on a terminal; otherwise (cron, CI, `| tee`, --log-file)
one plain line per event, with a timestamp, so that logs stay greppable."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler


class OneLineFormatter(logging.Formatter):
    """`2026-11-27T03:00:12+00:00 ERROR message`: a multi-line message is folded with ` | `."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")

    def format(self, record: logging.LogRecord) -> str:
        lines = [line.strip() for line in super().format(record).splitlines()]
        return " | ".join(line for line in lines if line)


def setup_logging(console: Console, verbose: bool) -> None:
    """Rich handler when `console` is a terminal, the one-line format otherwise."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, show_time=True, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(OneLineFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)


def add_log_file(path: Path) -> None:
    """Also write every record to `path`, in the one-line format."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(OneLineFormatter())
    logging.getLogger().addHandler(handler)
