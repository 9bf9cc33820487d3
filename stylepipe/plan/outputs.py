"""Output names: a pattern filled with safe fields, never escaping the output folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import ConfigError

#: The output folder's hidden state: sidecars (resume), the run lock and the report's thumbnails.
STATE_DIR = ".stylepipe"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of a label: no separators, no dots at the start."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "_"
    return cleaned[:120]


def output_path(out_dir: Path, pattern: str, fields: dict[str, str]) -> Path:
    """Fill the pattern; the result must stay inside out_dir whatever the labels contain."""
    try:
        name = pattern.format(**{k: safe_name(v) for k, v in fields.items()})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"output.pattern {pattern!r}: unknown field {exc}; use {{content}} {{style}} {{mode}} {{ext}} {{index}}") from None
    path = (out_dir / name).resolve()
    root = out_dir.resolve()
    if root not in path.parents:
        raise ConfigError(f"output.pattern {pattern!r} gives {name!r}, which is outside {out_dir}")
    return path


def job_label(content: str | None, style: str | None, layers: str | None = None) -> str:
    """A job in words, for progress lines and messages: `chelsea.jpg × scream`, or for a
    reconstruction `chelsea.jpg from conv3_1`; the caller chooses how much of a path to show."""
    name = " × ".join(part for part in (content, style) if part)
    return f"{name} from {layers}" if layers else name
