"""`--set key=value` overrides: parsed as YAML values, paths taken relative to the working directory,
and applied to the raw config before validation, so they get the file's error messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from ..core.errors import ConfigError
from .positions import format_loc


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """`--set optimize.steps=50` → (["optimize", "steps"], 50); values are YAML, and a value
    that is not valid YAML (`{mode}/{content}.{ext}`) is taken as the string it is."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set optimize.steps=50")
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


#: Keys whose values are paths (`*` is any list index or key). Paths in the file are relative to
#: the file; paths given on the command line (`--set`, like `-o`) to the working directory.
PATH_KEYS = ("content", "content.*", "plugins", "plugins.*", "styles.*", "styles.*.path", "styles.*.styles.*.path",
             "output.dir", "cache.dir", "network.weights", "optimize.init")


_NOT_PATHS = {"optimize.init": {"content", "noise"}}


_ONE_OR_MANY = ("content", "styles", "plugins")  # a string stands for a list of one


def command_line_paths(parts: Sequence[str | int], value: Any, cwd: Path) -> Any:
    """Path values of a `--set` made absolute against the working directory (one rule for the
    whole command line); other values, and paths already absolute, are returned unchanged."""
    if isinstance(value, dict):
        return {k: command_line_paths([*parts, k], v, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [command_line_paths([*parts, i], v, cwd) for i, v in enumerate(value)]
    key = [str(part) for part in parts]
    is_path = any(_matches(key, pattern.split(".")) for pattern in PATH_KEYS)
    if not isinstance(value, str) or not is_path or value in _NOT_PATHS.get(".".join(key), ()):
        return value
    path = Path(value).expanduser()
    return value if path.is_absolute() else str(cwd / path)


def _matches(key: Sequence[str], pattern: Sequence[str]) -> bool:
    return len(key) == len(pattern) and all(p in ("*", k) for k, p in zip(key, pattern))


@dataclass(frozen=True)
class Override:
    """A value set from outside the file: `--set key=value` on the command line, or a keyword
    setting of the Python API (`stylepipe.run(path, steps=3)`); `label` is what error lines
    name as its origin."""

    parts: tuple[str | int, ...]
    value: Any
    label: str = "--set"


def apply_override(raw: dict[str, Any], parts: Sequence[str | int], value: Any, label: str = "--set") -> None:
    """Set a dotted key in the raw YAML mapping, creating mappings on the way; a shorthand style
    entry (a bare path) grows into `{path: …}` when a key is set inside it."""
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else (
            node.get(part) if isinstance(node, dict) else None)
        if isinstance(nxt, str) and i == 0 and part in _ONE_OR_MANY:
            nxt = node[part] = [nxt]
        if isinstance(nxt, str) and i == 1 and parts[0] == "styles":
            nxt = node[part] = {"path": nxt}
        if nxt is None:
            if isinstance(node, list):
                raise ConfigError(f"{label} {format_loc(parts)}: index {part} is past the end of the list")
            nxt = node[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise ConfigError(f"{label} {format_loc(parts)}: {format_loc(parts[: i + 1])} is not a mapping")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError(f"{label} {format_loc(parts)}: no such list item")
    if not isinstance(node, (dict, list)):
        raise ConfigError(f"{label} {format_loc(parts)}: {format_loc(parts[:-1])} is not a mapping")
    cast(Any, node)[last] = value  # into a list only with an int index: checked above
