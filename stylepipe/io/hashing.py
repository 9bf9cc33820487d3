"""The one sha256 helper: cache keys, resume fingerprints, weights checks and input identities all
hash through here, so they agree on what "the same bytes" means."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .files import open_regular

_CHUNK = 1 << 20


def sha256_hex(data: bytes | str) -> str:
    """Hex sha256 of bytes (text is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def sha256_json(payload: Any) -> str:
    """Hex sha256 of canonical JSON (sorted keys, unknown types as str): equal settings, equal hash."""
    return sha256_hex(json.dumps(payload, sort_keys=True, default=str))


def sha256_file(path: Path) -> str:
    """Hash a file's bytes in chunks, at flat memory (an 80 MB weights file never sits in memory);
    a FIFO or device is refused, never read."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
