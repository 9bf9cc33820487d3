"""Exceptions a user can act on, by family; the command line maps each family to an exit code
(`stylepipe.cli.exit_codes`)."""

from __future__ import annotations

from pathlib import Path


class StylepipeError(Exception):
    """Base of every error stylepipe raises on purpose."""


class ConfigError(StylepipeError):
    """The pipeline or command is wrong; nothing was run."""


class EnvironmentProblem(StylepipeError):
    """The machine lacks something the run needs: weights, a device."""


class PluginError(ConfigError):
    """A plugin file or entry point could not be loaded or is malformed."""


class DeviceUnavailable(EnvironmentProblem):
    """The device asked for is not on this machine; `reason` says what is missing and what to use."""

    def __init__(self, requested: str, reason: str) -> None:
        self.requested = requested
        self.reason = reason
        super().__init__(f"device {requested!r}: {reason}")


class StyleTooSmall(StylepipeError):
    """A style picture is too small at the style size for the network's deepest block."""


class InputError(StylepipeError):
    """One input file cannot be used; fails only the jobs that need it."""

    def __init__(self, path: Path | str, cause: str) -> None:
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class OptimizationError(StylepipeError):
    """The optimisation diverged (NaN/inf) and no usable image was kept."""


class TilingError(ConfigError):
    """Tiled evaluation was asked of something it cannot do exactly (a term that is not tile-safe)."""
