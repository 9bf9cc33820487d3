"""Input discovery: files, folders and globs expanded to pictures, and what is skipped, with why.

Also the per-process memos that read each input once: `FileHasher` and `PictureLoader`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline
from ..core.errors import InputError
from ..io.files import not_a_file
from ..io.hashing import sha256_file
from ..io.images import IMAGE_SUFFIXES, LoadedImage, load_image
from .jobs import Rejected


def expand_entry(pipeline: LoadedPipeline, entry: str, loc: tuple, rejected: list[Rejected] | None = None) -> list[Path]:
    """One file, folder (its pictures, sorted) or glob; one that matches nothing is an error.

    A folder's or glob's other entries go to `rejected` with their reason, so that nothing in a
    photo set is dropped in silence; hidden files and plain sub-folders are not entries.
    """
    path = pipeline.resolve(entry)
    if path.is_dir():
        found = sorted(path.iterdir())
    elif path.exists() or path.is_symlink():
        return [path]  # named on its own: tried as a picture, and its job fails if it is none
    elif glob.has_magic(entry):  # only the entry as written is a pattern, never the folder it lives in
        base = "" if Path(entry).expanduser().is_absolute() else glob.escape(str(pipeline.base_dir)) + "/"
        pattern = base + str(Path(entry).expanduser())
        found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
    else:
        raise pipeline.error(loc, f"file not found: {path}")
    matches, others = [], []
    for candidate in found:
        reason = skip_reason(candidate)
        if reason is None:
            matches.append(candidate)
        elif reason:
            others.append(Rejected(candidate, reason))
    if not matches:
        found_instead = f"; found only {len(others)} other file(s), e.g. {others[0]}" if others else ""
        raise pipeline.error(loc, f"no pictures match {entry!r}{found_instead}")
    if rejected is not None:
        rejected.extend(others)
    return matches


def skip_reason(path: Path) -> str | None:
    """None for a picture file to style; "" for what is not worth a word; else why it is skipped.

    Looks only at the directory entry (lstat/stat), never opens it: a FIFO cannot hang the plan.
    """
    if path.name.startswith("."):
        return ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling symbolic link" if path.is_symlink() else "vanished while listing"
    except OSError as exc:
        return f"cannot stat ({exc.strerror or exc})"
    kind = not_a_file(mode)
    suffix = path.suffix.lower()
    if kind and kind.startswith("is a folder"):
        return f"{kind} (sub-folders are not searched)" if suffix in IMAGE_SUFFIXES else ""
    if kind:
        return kind
    if suffix not in IMAGE_SUFFIXES:
        return f"unsupported file type {suffix or '(no extension)'!r}: not a picture format Pillow reads"
    return None


def expand_inputs(pipeline: LoadedPipeline, entries: Iterable[str], key: str, errors: ErrorCollector | None = None,
                  rejected: list[Rejected] | None = None) -> list[Path]:
    """Every entry expanded, in order, each picture once; with `errors`, every bad entry is
    recorded there (and skipped) instead of stopping at the first; files found but not styled go to
    `rejected` with their reason."""
    errors = errors or ErrorCollector()
    found: list[Path] = []
    for i, entry in enumerate(entries):
        with errors.check():
            found.extend(expand_entry(pipeline, entry, (key, i), rejected))
    if errors.lines and not found:
        errors.raise_if_any()
    return list(dict.fromkeys(p.resolve() for p in found))


class PictureLoader:
    """A memoised picture loader (each style picture is decoded once per process); picklable."""

    def __init__(self, max_input_pixels: int, capacity: int = 16, fit: tuple[int | None, int | None] | None = None) -> None:
        self.max_input_pixels = max_input_pixels
        self.capacity = capacity
        self.fit = fit  # the style size: pictures are kept no larger than twice it (tiles are smaller still)
        self._memo: dict[Path, LoadedImage] = {}

    def __call__(self, path: Path) -> LoadedImage:
        if path not in self._memo:
            if len(self._memo) >= self.capacity:
                self._memo.pop(next(iter(self._memo)))
            self._memo[path] = load_image(path, self.max_input_pixels, self.fit)
        return self._memo[path]

    def __getstate__(self) -> dict[str, Any]:
        return {"max_input_pixels": self.max_input_pixels, "capacity": self.capacity, "fit": self.fit, "_memo": {}}


class FileHasher:
    """sha256 of files, each read once per process; unreadable files become InputErrors."""

    def __init__(self) -> None:
        self._hashes: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        if path not in self._hashes:
            try:
                self._hashes[path] = sha256_file(path)
            except OSError as exc:
                raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
        return self._hashes[path]
