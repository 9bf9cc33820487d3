"""Small JPEG copies of outputs and inputs for the report page, made once and reused.

A page of thousands of full-size pictures would be slow to open and heavy to scroll; thumbnails
live in the output folder's hidden state directory, named by the source file's path, size and
modification time, so a re-render only makes the ones whose source is new or changed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from ..io.atomic import write_bytes_atomic

THUMB_DIR = "thumbs"
THUMB_SIDE = 256  # px, longest side: sharp at the page's 128 px cells on a 2× screen
THUMB_QUALITY = 80
#: Inputs larger than this are not thumbnailed (the page shows their name instead).
MAX_SOURCE_PIXELS = 100_000_000
log = logging.getLogger("stylepipe")


def thumbnail_path(state_dir: Path, source: Path) -> Path | None:
    """Where the thumbnail of `source` lives; None when the source cannot be read."""
    try:
        stat = source.stat()
    except OSError:
        return None
    key = f"{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return state_dir / THUMB_DIR / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".jpg")


@dataclass(frozen=True)
class Thumb:
    """A thumbnail file and its size (the page reserves the space before it loads)."""

    path: Path
    width: int
    height: int


def ensure_thumbnail(state_dir: Path, source: Path) -> Thumb | None:
    """The thumbnail of `source`, made now if missing; None when the source is no readable picture."""
    target = thumbnail_path(state_dir, source)
    if target is None:
        return None
    try:
        with Image.open(target) as existing:  # reads the header only
            return Thumb(target, existing.width, existing.height)
    except (OSError, ValueError):
        pass  # missing or damaged: make it (again)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_SOURCE_PIXELS:
                    return None
                img.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at a reduced scale
                small = ImageOps.exif_transpose(img).convert("RGB")
                small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    except Exception as exc:  # Pillow raises many kinds for bad files; the page shows the name instead
        log.debug("no thumbnail for %s: %s", source, exc)
        return None
    encoded = io.BytesIO()
    small.save(encoded, format="JPEG", quality=THUMB_QUALITY)
    write_bytes_atomic(encoded.getvalue(), target)
    return Thumb(target, small.width, small.height)


def prune_thumbnails(state_dir: Path, keep: frozenset[Path]) -> list[Path]:
    """Remove the thumbnails no picture of the page uses any more (outputs and inputs that left the
    run, or changed: a thumbnail is named by its source's size and time); returns what was removed."""
    removed = []
    for thumb in sorted((state_dir / THUMB_DIR).glob("*.jpg")):
        if thumb not in keep:
            try:
                thumb.unlink()
            except OSError as exc:
                log.debug("cannot remove the stale thumbnail %s: %s", thumb, exc)
                continue
            removed.append(thumb)
    return removed
