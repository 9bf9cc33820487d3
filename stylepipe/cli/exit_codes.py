"""Exit codes: 0 all done, 1 some jobs failed, 2 configuration or usage error (nothing run),
3 environment problem (no weights, no device), 4 another run holds the output folder's lock.

The mapping lives here, with the command line, so the core and the library raise plain
exceptions that know nothing of processes.
"""

from __future__ import annotations

from ..core.errors import ConfigError, EnvironmentProblem, StylepipeError
from ..running.schedule import RunLocked

#: most specific first: a PluginError or TilingError is a ConfigError
_CODES: tuple[tuple[type[StylepipeError], int], ...] = (
    (RunLocked, 4),
    (EnvironmentProblem, 3),
    (ConfigError, 2),
    (StylepipeError, 1),
)


def exit_code_for(error: StylepipeError) -> int:
    """The process exit code of a run that stopped on `error`."""
    return next(code for kind, code in _CODES if isinstance(error, kind))
