"""The style-target cache: in memory for a run, on disk (diskcache) across runs and processes.

Values are stored as framed bytes (magic, format version, sha256, then a ``torch.save`` payload)
and read back with ``torch.load(weights_only=True)``: a cache folder is not trusted code, so
nothing in it is ever unpickled. Every problem (corrupt entry, unreadable database, full disk,
lock timeout) is logged, recorded in ``TargetCache.warnings`` and worked around; the cache is
never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import diskcache
import torch
from diskcache.core import MODE_PICKLE

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheInfo",
    "CacheStats",
    "CheckResult",
    "CorruptEntry",
    "TargetCache",
    "decode_tensors",
    "encode_tensors",
    "read_info",
    "make_key",
]

log = logging.getLogger("stylepipe.cache")

CACHE_FORMAT_VERSION = 1

_MAGIC = b"SPTC"
_DIGEST_SIZE = 32
_HEADER_SIZE = len(_MAGIC) + 1 + _DIGEST_SIZE
_MISSING = object()
# What a disk operation may raise that must never stop a run.
_DISK_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, diskcache.Timeout)


class CorruptEntry(Exception):
    """A cached value failed verification; the caller drops it and recomputes."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def make_key(namespace: str, version: int, payload: Mapping[str, Any]) -> str:
    """Give every input that changes a target one stable string key, so a change means a miss."""
    try:
        canonical = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache key payload is not plain JSON: {error}") from error
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return f"{namespace}/v{version}/{digest}"


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """Detach to CPU and drop any larger storage a view would drag into the file."""
    tensor = tensor.detach().cpu()
    if not tensor.is_contiguous() or (
        tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()
    ):
        tensor = tensor.contiguous().clone()
    return tensor


def _check_target(name: object, tensor: object) -> torch.Tensor:
    """Fail early (a programming error) on anything decode_tensors would later reject."""
    if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"targets must map str to Tensor, got {type(name).__name__} → {type(tensor).__name__}"
        )
    return tensor


def _private_copy(name: object, tensor: object) -> torch.Tensor:
    """Copy to a compact CPU tensor, so later in-place edits by the caller cannot leak in."""
    checked = _check_target(name, tensor)
    return checked.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)


def encode_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise targets to bytes that diskcache stores raw (no pickle) and that we can verify."""
    plain = {name: _compact(_check_target(name, tensor)) for name, tensor in tensors.items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    payload = buffer.getvalue()
    header = _MAGIC + bytes([CACHE_FORMAT_VERSION]) + hashlib.sha256(payload).digest()
    return header + payload


def decode_tensors(blob: bytes) -> dict[str, torch.Tensor]:
    """Read back only verified plain tensors; anything else is a corrupt entry, never code."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptEntry(f"value is {type(blob).__name__}, not bytes")
    blob = bytes(blob)
    if len(blob) < _HEADER_SIZE:
        raise CorruptEntry(f"value too short ({len(blob)} bytes)")
    if blob[: len(_MAGIC)] != _MAGIC:
        raise CorruptEntry("bad magic (not a stylepipe cache value)")
    version = blob[len(_MAGIC)]
    if version != CACHE_FORMAT_VERSION:
        raise CorruptEntry(f"format version {version}, expected {CACHE_FORMAT_VERSION}")
    digest = blob[len(_MAGIC) + 1 : _HEADER_SIZE]
    payload = blob[_HEADER_SIZE:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("checksum mismatch")
    try:
        loaded = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure means a bad entry
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise CorruptEntry(f"cannot load payload: {type(error).__name__}: {message}") from error
    if not isinstance(loaded, dict):
        raise CorruptEntry(f"payload is {type(loaded).__name__}, not a dict")
    for name, tensor in loaded.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            kinds = f"{type(name).__name__} → {type(tensor).__name__}"
            raise CorruptEntry(f"payload maps {kinds}, not str → Tensor")
    return dict(loaded)


class _ForeignKey(bytes):
    """A pickled key found on disk, kept as opaque bytes so it is never unpickled."""


class _SafeDisk(diskcache.Disk):
    """diskcache's serialiser minus unpickling: a cache folder is data, not trusted code."""

    def put(self, key: Any) -> tuple[Any, bool]:
        """Let a foreign key found on disk be addressed (deleted) without unpickling it."""
        if type(key) is _ForeignKey:
            return sqlite3.Binary(bytes(key)), False
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        """Return pickled keys as opaque bytes instead of loading them."""
        if raw:
            return super().get(key, raw)
        return _ForeignKey(bytes(key))

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


def _is_busy(error: BaseException) -> bool:
    """Tell a lock held by another process (leave the cache alone) from a broken cache."""
    if isinstance(error, diskcache.Timeout):
        return True
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _is_broken(directory: Path, error: BaseException) -> bool:
    """Only a damaged database or a file where the folder should be is worth moving aside."""
    if not directory.is_dir():
        return True
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError)


def _describe(error: BaseException) -> str:
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
        return CacheInfo(directory, True, 0, 0, size_limit_bytes, problem=_describe(error))
    size = int(page_count) * int(page_size) + int(settings.get("size", 0))
    return CacheInfo(directory, True, int(settings.get("count", 0)), size, size_limit_bytes)


def _move_aside(path: Path) -> Path:
    """Keep a broken cache for post-mortem instead of deleting it, and free the path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    suffix = 1
    while target.exists() or target.is_symlink():
        target = path.with_name(f"{path.name}.broken-{stamp}-{suffix}")
        suffix += 1
    path.rename(target)
    return target


class TargetCache:
    """Style targets, reused across content images (memory) and runs/processes (disk).

    Not for sharing across machines (SQLite is unreliable on NFS): ship targets to workers.
    Open it in the parent process before workers start. One instance is meant for one thread.
    """

    def __init__(
        self,
        directory: Path | str | None,
        *,
        size_limit_bytes: int = 2 * 1024**3,
        timeout: float = 30.0,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.size_limit_bytes = size_limit_bytes
        self.timeout = timeout
        self.warnings: list[str] = []
        self.stats = CacheStats()
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self._disk: diskcache.Cache | None = None
        if self.directory is not None:
            self._disk = self._open(self.directory)

    # -- opening -------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        """Record a problem for the run report and log it; never raise."""
        self.warnings.append(message)
        log.warning("%s", message)

    def _open_disk(self, directory: Path) -> diskcache.Cache:
        """Open a plain Cache, not FanoutCache: that one swallows timeouts we must report."""
        return diskcache.Cache(
            str(directory),
            timeout=self.timeout,
            disk=_SafeDisk,
            size_limit=self.size_limit_bytes,
            eviction_policy="least-recently-used",
        )

    def _open(self, directory: Path) -> diskcache.Cache | None:
        """Open the disk layer, moving a broken one aside once; fall back to memory only."""
        try:
            return self._open_disk(directory)
        except Exception as first:  # noqa: BLE001 - opening is best effort by design
            if _is_busy(first):
                self._warn(
                    f"cache {directory} is busy ({_describe(first)}); "
                    "continuing without a disk cache"
                )
                return None
            if not (directory.exists() or directory.is_symlink()):
                self._warn(
                    f"cannot create cache {directory} ({_describe(first)}); "
                    "continuing without a disk cache"
                )
                return None
            if not _is_broken(directory, first):
                # permissions, a full disk, too many open files: the cache is fine, this run is not
                self._warn(
                    f"cannot open cache {directory} ({_describe(first)}); "
                    "continuing without a disk cache"
                )
                return None
            try:
                moved = _move_aside(directory)
            except OSError as error:
                self._warn(
                    f"cannot open cache {directory} ({_describe(first)}) nor move it aside "
                    f"({_describe(error)}); continuing without a disk cache"
                )
                return None
            self._warn(
                f"cannot open cache {directory} ({_describe(first)}); "
                f"moved it aside to {moved} and started a fresh one"
            )
        try:
            return self._open_disk(directory)
        except Exception as second:  # noqa: BLE001
            self._warn(
                f"cannot open a fresh cache at {directory} ({_describe(second)}); "
                "continuing without a disk cache"
            )
            return None

    # -- reading and writing -------------------------------------------------------------

    @staticmethod
    def _check_key(key: object) -> str:
        """Refuse non-string keys: diskcache would pickle them and compare pickled bytes."""
        if not isinstance(key, str):
            raise TypeError(f"cache keys must be str (see make_key), got {type(key).__name__}")
        return key

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """Return cached targets or None (recompute); the dict is yours, its tensors are shared.

        Tensors are on the CPU and shared with the in-memory layer: treat them as read-only
        (no in-place ops); ``.to(device)`` gives a private copy on an accelerator.
        """
        self._check_key(key)
        found = self._memory.get(key)
        if found is not None:
            self.stats.memory_hits += 1
            return dict(found)
        value = self._read_disk(key)
        if value is None:
            self.stats.misses += 1
            return None
        self._memory[key] = value
        self.stats.disk_hits += 1
        return dict(value)

    def _read_disk(self, key: str) -> dict[str, torch.Tensor] | None:
        """Read and verify one disk entry; drop it if corrupt, treat errors as a miss."""
        if self._disk is None:
            return None
        try:
            blob = self._disk.get(key, default=_MISSING)
            if blob is _MISSING:
                return None
            return decode_tensors(blob)
        except CorruptEntry as corrupt:
            self._drop_corrupt(key, corrupt.reason)
        except _DISK_ERRORS as error:
            self._warn(f"cache read of {key} failed ({_describe(error)}); recomputing")
        return None

    def _drop_corrupt(self, key: str, reason: str) -> None:
        """Remove a bad entry so the recomputed value replaces it."""
        self.stats.corrupt += 1
        self._warn(f"cache entry {key} is corrupt ({reason}); dropped, will recompute")
        self._delete_disk(key)

    def _delete_disk(self, key: Any) -> bool:
        """Delete one disk entry, reporting (not raising) failures."""
        if self._disk is None:
            return False
        try:
            return bool(self._disk.delete(key))
        except _DISK_ERRORS as error:
            self._warn(f"cannot delete cache entry {key!r} ({_describe(error)})")
            return False

    def put(self, key: str, value: Mapping[str, torch.Tensor]) -> None:
        """Keep targets for this run and later ones; a failed disk write only costs a recompute."""
        self._check_key(key)
        stored = {name: _private_copy(name, tensor) for name, tensor in value.items()}
        self._memory[key] = stored
        self.stats.writes += 1
        if self._disk is None:
            return
        blob = encode_tensors(stored)
        try:
            ok = self._disk.set(key, blob)
        except _DISK_ERRORS as error:
            self._warn(f"cache write of {key} failed ({_describe(error)}); kept in memory only")
            return
        if not ok:
            self._warn(f"cache write of {key} was refused by diskcache; kept in memory only")

    def __contains__(self, key: object) -> bool:
        """Say whether a target is cached without decoding it (for dry-run plans)."""
        if not isinstance(key, str):
            return False
        if key in self._memory:
            return True
        if self._disk is None:
            return False
        try:
            return key in self._disk
        except _DISK_ERRORS as error:
            self._warn(f"cache lookup of {key} failed ({_describe(error)})")
            return False

    # -- maintenance ---------------------------------------------------------------------

    @property
    def disk_enabled(self) -> bool:
        """Whether targets survive this process."""
        return self._disk is not None

    def info(self) -> CacheInfo:
        """Summarise what is cached and how much room it takes."""
        if self._disk is None:
            entries = len(self._memory)
            size = sum(
                t.numel() * t.element_size() for v in self._memory.values() for t in v.values()
            )
        else:
            try:
                entries = len(self._disk)
                size = int(self._disk.volume())
            except _DISK_ERRORS as error:
                self._warn(f"cannot read cache statistics ({_describe(error)})")
                entries, size = 0, 0
        return CacheInfo(
            directory=self.directory,
            disk_enabled=self._disk is not None,
            entries=entries,
            size_bytes=size,
            size_limit_bytes=self.size_limit_bytes,
        )

    def check(self) -> CheckResult:
        """Verify every disk entry and drop the bad ones, so later runs only see good targets."""
        if self._disk is None:
            return CheckResult(checked=0, dropped=[])
        dropped: list[str] = []
        checked = 0
        try:
            keys = list(self._disk.iterkeys())  # a snapshot: entries are deleted while checking
        except _DISK_ERRORS as error:
            self._warn(f"cannot list cache entries ({_describe(error)})")
            return CheckResult(checked=0, dropped=[])
        for key in keys:
            checked += 1
            reason = self._verify(key)
            if reason is None:
                continue
            shown = key if isinstance(key, str) else f"<non-string key {bytes(key)[:16]!r}…>"
            self.stats.corrupt += 1
            self._warn(f"cache entry {shown} is corrupt ({reason}); dropped")
            if isinstance(key, str):
                self._memory.pop(key, None)
            if self._delete_disk(key):
                dropped.append(shown)
        return CheckResult(checked=checked, dropped=dropped)

    def _verify(self, key: Any) -> str | None:
        """Return why a disk entry is unusable, or None when it decodes."""
        if not isinstance(key, str):
            return "key is not a string"
        try:
            blob: Any = self._disk.get(key, default=_MISSING) if self._disk is not None else _MISSING
            if blob is _MISSING:
                return "value missing (file deleted?)"
            decode_tensors(blob)
        except CorruptEntry as corrupt:
            return corrupt.reason
        except _DISK_ERRORS as error:
            return f"unreadable: {_describe(error)}"
        return None

    def clear(self) -> int:
        """Empty both layers; return how many disk entries went."""
        self._memory.clear()
        if self._disk is None:
            return 0
        try:
            return int(self._disk.clear())
        except diskcache.Timeout as timeout:
            removed = int(timeout.args[0]) if timeout.args else 0
            self._warn(f"cache clear timed out after removing {removed} entries")
            return removed
        except _DISK_ERRORS as error:
            self._warn(f"cache clear failed ({_describe(error)})")
            return 0

    def close(self) -> None:
        """Release the SQLite connection (the memory layer stays usable)."""
        if self._disk is not None:
            try:
                self._disk.close()
            except _DISK_ERRORS as error:
                log.warning("closing cache failed (%s)", _describe(error))

    def __enter__(self) -> TargetCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
