"""Run jobs in this process on one device, grouped by style, the next group loaded ahead.

While the device optimises one group, a background thread decodes and resizes the next one
(a queue of one), so the device never waits for JPEG decoding and memory stays flat however
many jobs there are: each group's pictures are released once its outputs are saved.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby

from ...plan.jobs import Job
from ...report.record import ItemReport
from ..context import WorkerContext
from ..events import RunEvents
from ..worker import PreparedBatch, prepare_batch, run_prepared


def job_groups(jobs: Sequence[Job], size: int) -> list[list[Job]]:
    """Jobs of one style together (their targets stay resident), in groups of at most `size`."""
    ordered = sorted(jobs, key=lambda j: (j.style_label, j.index))
    groups: list[list[Job]] = []
    for _label, same_style in groupby(ordered, key=lambda j: j.style_label):
        batch = list(same_style)
        groups += [batch[i : i + size] for i in range(0, len(batch), size)]
    return groups


class LocalExecutor:
    """The default: in-process, one device, batches of one style and size."""

    name = "local"

    def run(self, jobs: Sequence[Job], context: WorkerContext, events: RunEvents) -> Iterator[ItemReport]:
        groups = job_groups(jobs, max(1, context.batch_size) * 2)  # room to bucket by size
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylepipe-load") as loader:
            pending: Future[PreparedBatch] | None = None
            for index, group in enumerate(groups):
                if context.should_stop():
                    break
                prepared = pending.result() if pending is not None else prepare_batch(group, context)
                pending = loader.submit(prepare_batch, groups[index + 1], context) if index + 1 < len(groups) else None
                yield from run_prepared(prepared, context, events)
            if pending is not None:
                pending.cancel()
