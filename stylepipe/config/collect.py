"""Collected errors: every independent mistake of a file found in one go and raised as one
ConfigError, in file order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from ..core.errors import ConfigError

_POSITION = re.compile(r"^[^\n]*?:(\d+):(\d+): ")


def _position(line: str) -> tuple[int, int, int]:
    """Sort key of an error line: `--set` ones first, then by file line and column, then the rest."""
    if line.startswith("--set"):
        return (0, 0, 0)
    match = _POSITION.match(line)
    return (1, int(match[1]), int(match[2])) if match else (2, 0, 0)


class ErrorCollector:
    """Gathers ConfigErrors so that one `validate` reports every mistake of a file at once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, exc: ConfigError) -> None:
        for line in str(exc).splitlines():
            if line not in self.lines:
                self.lines.append(line)

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        """Run a check; its ConfigError is recorded and the caller goes on with the next one."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def raise_if_any(self) -> None:
        """One ConfigError with every recorded line, in file order."""
        if self.lines:
            raise ConfigError("\n".join(sorted(self.lines, key=_position)))
