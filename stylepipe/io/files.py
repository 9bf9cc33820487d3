"""Opening input files safely: a FIFO, device or folder is refused with a reason, never waited on."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from ..core.errors import InputError


def open_regular(path: Path) -> io.BufferedReader:
    """Open a regular file for reading; a FIFO, device or folder is refused, never waited on."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise block forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise InputError(path, "dangling symbolic link" if path.is_symlink() else "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a picture") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, f"cannot open ({exc.strerror or exc})") from None
    try:
        kind = not_a_file(os.fstat(fd).st_mode)
        if kind:
            raise InputError(path, kind)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def not_a_file(mode: int) -> str | None:
    """Why an entry with this st_mode is no picture file (None when it is a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a picture"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    return "is not a regular file"
