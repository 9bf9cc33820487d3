"""The style-target cache: in memory for a run, on disk (diskcache) across runs and processes.

Values are stored as framed bytes (`targets.frames`: magic, format version, sha256, then a
``torch.save`` payload) and read back with ``torch.load(weights_only=True)``: a cache folder is not trusted code, so
nothing in it is ever unpickled. Every problem (corrupt entry, unreadable database, full disk,
lock timeout) is logged, recorded in ``TargetCache.warnings`` and worked around; the cache is
never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import diskcache
import torch

from .disk import (
    DISK_ERRORS,
    CacheInfo,
    CacheStats,
    CheckResult,
    SafeDisk,
    describe_error,
    is_broken,
    is_busy,
    move_aside,
)
from .frames import CorruptEntry, _private_copy, decode_tensors, encode_tensors

__all__ = ["DEFAULT_SIZE_LIMIT_MB", "TargetCache"]

#: The disk cache's default size (cache.size_limit_mb), for the schema, the CLI and the library alike.
DEFAULT_SIZE_LIMIT_MB = 2048

log = logging.getLogger("stylepipe.cache")


_MISSING = object()


class TargetCache:
    """Style targets, reused across content images (memory) and runs/processes (disk).

    Not for sharing across machines (SQLite is unreliable on NFS): ship targets to workers.
    Open it in the parent process before workers start. One instance is meant for one thread.
    """

    def __init__(
        self,
        directory: Path | str | None,
        *,
        size_limit_bytes: int = DEFAULT_SIZE_LIMIT_MB << 20,
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
            disk=SafeDisk,
            size_limit=self.size_limit_bytes,
            eviction_policy="least-recently-used",
        )

    def _open(self, directory: Path) -> diskcache.Cache | None:
        """Open the disk layer, moving a broken one aside once; fall back to memory only."""
        try:
            return self._open_disk(directory)
        except Exception as first:  # noqa: BLE001 - opening is best effort by design
            if is_busy(first):
                self._warn(
                    f"cache {directory} is busy ({describe_error(first)}); "
                    "continuing without a disk cache"
                )
                return None
            if not (directory.exists() or directory.is_symlink()):
                self._warn(
                    f"cannot create cache {directory} ({describe_error(first)}); "
                    "continuing without a disk cache"
                )
                return None
            if not is_broken(directory, first):
                # permissions, a full disk, too many open files: the cache is fine, this run is not
                self._warn(
                    f"cannot open cache {directory} ({describe_error(first)}); "
                    "continuing without a disk cache"
                )
                return None
            try:
                moved = move_aside(directory)
            except OSError as error:
                self._warn(
                    f"cannot open cache {directory} ({describe_error(first)}) nor move it aside "
                    f"({describe_error(error)}); continuing without a disk cache"
                )
                return None
            self._warn(
                f"cannot open cache {directory} ({describe_error(first)}); "
                f"moved it aside to {moved} and started a fresh one"
            )
        try:
            return self._open_disk(directory)
        except Exception as second:  # noqa: BLE001
            self._warn(
                f"cannot open a fresh cache at {directory} ({describe_error(second)}); "
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
        except DISK_ERRORS as error:
            self._warn(f"cache read of {key} failed ({describe_error(error)}); recomputing")
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
        except DISK_ERRORS as error:
            self._warn(f"cannot delete cache entry {key!r} ({describe_error(error)})")
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
        except DISK_ERRORS as error:
            self._warn(f"cache write of {key} failed ({describe_error(error)}); kept in memory only")
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
        except DISK_ERRORS as error:
            self._warn(f"cache lookup of {key} failed ({describe_error(error)})")
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
            except DISK_ERRORS as error:
                self._warn(f"cannot read cache statistics ({describe_error(error)})")
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
        except DISK_ERRORS as error:
            self._warn(f"cannot list cache entries ({describe_error(error)})")
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
        except DISK_ERRORS as error:
            return f"unreadable: {describe_error(error)}"
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
        except DISK_ERRORS as error:
            self._warn(f"cache clear failed ({describe_error(error)})")
            return 0

    def close(self) -> None:
        """Release the SQLite connection (the memory layer stays usable)."""
        if self._disk is not None:
            try:
                self._disk.close()
            except DISK_ERRORS as error:
                log.warning("closing cache failed (%s)", describe_error(error))

    def __enter__(self) -> TargetCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
