"""Output names: a pattern filled with safe fields, never escaping the output folder.

A field keeps every letter and digit of any alphabet (in NFC form, so `é` is one character
whichever way the file system gave it), spaces and punctuation; only what some file system cannot
hold becomes `_`: separators (`/`, `\\`), control characters and `\0`, and the characters Windows
reserves (`<>:"|?*`, replaced everywhere so that an output folder can be copied anywhere).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from ..core.errors import ConfigError

#: The output folder's hidden state: sidecars (resume), the run lock and the report's thumbnails.
STATE_DIR = ".stylepipe"
_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f-\x9f]+')
_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})
#: A field's longest form in UTF-8 bytes: file systems count bytes (255), and a name holds several fields.
MAX_FIELD_BYTES = 120


def safe_name(text: str) -> str:
    """A label as a file-name part that any file system holds: letters of every alphabet kept."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", text)).strip("._ ") or "_"
    cleaned = cleaned.encode("utf-8")[:MAX_FIELD_BYTES].decode("utf-8", errors="ignore")
    return f"_{cleaned}" if cleaned.split(".")[0].upper() in _WINDOWS_DEVICES else cleaned


def output_path(out_dir: Path, pattern: str, fields: dict[str, str]) -> Path:
    """Fill the pattern; the result must stay inside out_dir whatever the labels contain."""
    try:
        name = pattern.format(**{k: safe_name(v) for k, v in fields.items()})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"output.pattern {pattern!r}: unknown field {exc}; use {{content}} {{style}} {{mode}} {{ext}} {{index}} {{stem_hash}}") from None
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
