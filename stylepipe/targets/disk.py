"""The disk layer under the target cache: diskcache with pickling refused, its size and health,
and which errors are a busy database and which a broken one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_PICKLE

from .frames import CorruptEntry

# What a disk operation may raise that must never stop a run.
DISK_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, diskcache.Timeout)


class ForeignKey(bytes):
    """A pickled key found on disk, kept as opaque bytes so it is never unpickled."""


class SafeDisk(diskcache.Disk):
    """diskcache's serialiser minus unpickling: a cache folder is data, not trusted code."""

    def put(self, key: Any) -> tuple[Any, bool]:
        """Let a foreign key found on disk be addressed (deleted) without unpickling it."""
        if type(key) is ForeignKey:
            return sqlite3.Binary(bytes(key)), False
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        """Return pickled keys as opaque bytes instead of loading them."""
        if raw:
            return super().get(key, raw)
        return ForeignKey(bytes(key))

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Refuse pickled values; ours are always raw bytes."""
        if mode == MODE_PICKLE:
            raise CorruptEntry("pickled value refused (cache values must be raw bytes)")
        return super().fetch(mode, filename, value, read)


@dataclass
class CacheStats:
    """Counters that tell a run report how much work the cache saved."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0  # every get that returned None, corrupt entries included
    writes: int = 0  # every put call
    corrupt: int = 0


@dataclass(frozen=True)
class CacheInfo:
    """What `stylepipe cache info` shows."""

    directory: Path | None
    disk_enabled: bool
    entries: int
    size_bytes: int
    size_limit_bytes: int
    problem: str | None = None  # why the database could not be read (`inspect` only)


@dataclass(frozen=True)
class CheckResult:
    """What `stylepipe cache check` verified and repaired."""

    checked: int
    dropped: list[str]  # keys removed as corrupt


def is_busy(error: BaseException) -> bool:
    """Tell a lock held by another process (leave the cache alone) from a broken cache."""
    if isinstance(error, diskcache.Timeout):
        return True
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def is_broken(directory: Path, error: BaseException) -> bool:
    """Only a damaged database or a file where the folder should be is worth moving aside."""
    if not directory.is_dir():
        return True
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)


def describe_error(error: BaseException) -> str:
    """Name the error class too, since many sqlite/OS messages are terse."""
    return f"{type(error).__name__}: {error}"


def read_info(directory: Path, size_limit_bytes: int) -> CacheInfo:
    """What a cache folder holds, read without changing anything on disk: no folder or database
    is created, a broken one is reported rather than moved aside, nothing is evicted.

    The database is opened read-only and as immutable, so SQLite writes no journal either.
    """
    database = directory / diskcache.core.DBNAME
    if not database.is_file():
        return CacheInfo(directory, True, 0, 0, size_limit_bytes)
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro&immutable=1", uri=True)) as db:
            settings = dict(db.execute("SELECT key, value FROM Settings WHERE key IN ('count', 'size')").fetchall())
            (page_count,) = db.execute("PRAGMA page_count").fetchone()
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
    except sqlite3.Error as error:
        return CacheInfo(directory, True, 0, 0, size_limit_bytes, problem=describe_error(error))
    size = int(page_count) * int(page_size) + int(settings.get("size", 0))
    return CacheInfo(directory, True, int(settings.get("count", 0)), size, size_limit_bytes)


def move_aside(path: Path) -> Path:
    """Keep a broken cache for post-mortem instead of deleting it, and free the path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    suffix = 1
    while target.exists() or target.is_symlink():
        target = path.with_name(f"{path.name}.broken-{stamp}-{suffix}")
        suffix += 1
    path.rename(target)
    return target
