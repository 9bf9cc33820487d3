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


def sha256_json(payload: Any, *, strict: bool = False) -> str:
    """Hex sha256 of canonical JSON (sorted keys): equal settings, equal hash.

    Two spellings, each frozen because stored hashes were made with it: resume fingerprints
    (default) write unknown types as str with `", "` and `": "` separators; cache keys (`strict`)
    are compact ASCII JSON that refuses anything but plain JSON values (TypeError, ValueError)."""
    if strict:
        return sha256_hex(json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False))
    return sha256_hex(json.dumps(payload, sort_keys=True, default=str))


def sha256_file(path: Path) -> str:
    """Hash a file's bytes in chunks, at flat memory (an 80 MB weights file never sits in memory);
    a FIFO or device is refused, never read."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
