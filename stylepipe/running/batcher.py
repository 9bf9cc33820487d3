"""Device batches that survive running out of memory: a batch that does not fit is halved and
retried, and the smaller size is kept for the rest of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from ..core.network import is_out_of_memory
from .context import WorkerContext

log = logging.getLogger("stylepipe")
T = TypeVar("T")
R = TypeVar("R")


def in_batches(items: list[T], ctx: WorkerContext, run: Callable[[list[T]], R]) -> Iterator[tuple[list[T], R | Exception]]:
    """Run items (one style, one size) in device batches of `ctx.batch_size`, each batch's result
    or exception paired with it. An out-of-memory batch is split in half and retried, and the smaller
    size is kept for the rest of the run; a single item out of memory is yielded with its exception.
    Stops between batches when `ctx.should_stop()`. Shared by the file pipeline and the Python API.
    """
    queue = [items[i : i + ctx.batch_size] for i in range(0, len(items), ctx.batch_size)]
    while queue:
        if ctx.should_stop():
            return  # a stop (SIGTERM, a bound) between batches: the rest stays for the next run
        chunk = queue.pop(0)
        try:
            outcome: R | Exception = run(chunk)
        except Exception as exc:  # noqa: BLE001 - the caller decides what a failed batch means
            if is_out_of_memory(exc) and ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            if not is_out_of_memory(exc) or len(chunk) == 1:
                outcome = exc
            else:
                half = len(chunk) // 2
                ctx.batch_size = max(1, half)  # remember: later batches start at the size that fitted
                log.warning("out of memory with a batch of %d; retrying as %d + %d", len(chunk), half, len(chunk) - half)
                queue[:0] = [chunk[:half], chunk[half:]]
                continue
        yield chunk, outcome
