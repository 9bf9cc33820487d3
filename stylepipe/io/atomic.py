"""The one atomic writer: pictures, sidecars and reports all reach the disk the same way.

A temp file beside the target (same folder, so the rename cannot cross file systems), written,
flushed and fsynced, then renamed over the target, then the folder fsynced so the rename itself
survives a power cut. Readers see the old file or the new one, never half of one; a failure at
any point (disk full, read-only folder, a signal) removes the temp file.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .hashing import sha256_hex

#: A temp file left by a writer that died (kill -9, power cut) is swept after this long at the latest.
STALE_AFTER_S = 3600.0
_PART = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]{12}\.part$")


def _host_tag() -> str:
    return sha256_hex(socket.gethostname())[:8]


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `write(handle)` so that a crash never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's host and pid in the name let a later run tell a dead writer's leftovers from a live one's
    temp = path.parent / f".{path.name}.{_host_tag()}-{os.getpid()}.{secrets.token_hex(6)}.part"
    try:
        # 0o666 lets the umask decide permissions, as for any ordinary new file (mkstemp's 0600 would not).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_json_atomic(data: Any, path: Path) -> None:
    """Readers never see half a report or sidecar: the same atomic writer as the pictures."""
    write_text_atomic(json.dumps(data, indent=2) + "\n", path)


def write_text_atomic(text: str, path: Path) -> None:
    """Readers never see half a file (report, page): the one atomic writer, for text."""
    write_bytes_atomic(text.encode("utf-8"), path)


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """The one atomic writer  for bytes already in memory: pages, thumbnails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda handle: handle.write(data))


def fsync_directory(directory: Path) -> None:
    """Persist a rename; best effort, since not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep_partials(folder: Path) -> list[Path]:
    """Remove the temp files of writers that died, so a hard kill leaves nothing behind for good.

    A temp file is stale when its writer's process is gone (same host) or it is older than
    STALE_AFTER_S (any host: shards on a shared folder); a live writer's file is left alone.
    """
    removed = []
    host, now = _host_tag(), time.time()
    for candidate in Path(folder).rglob(".*.part"):
        match = _PART.match(candidate.name)
        if match is None:
            continue
        try:
            old = now - candidate.lstat().st_mtime > STALE_AFTER_S
            if old or (match["host"] == host and not _alive(int(match["pid"]))):
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    if os.name == "nt":  # signal 0 would be CTRL_C_EVENT there: leave it to the age rule
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
