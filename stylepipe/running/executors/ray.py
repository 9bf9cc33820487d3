"""Run jobs on a Ray cluster, or on a Ray started for this run: long-lived actors, targets shipped once.

The driver (the runner) has already computed every style target before this executor runs, so
the WorkerSpec it hands over is complete: it goes into the object store once (`ray.put`) and
every actor reads it from there. Each actor loads the plugins, then the spec, then the network,
once, and then runs batches of jobs that share a style through `running.worker.process_batch`. Workers
never compute style targets and never open the cache: the cache lives with the driver only.

Why Ray Core actors rather than Ray Data `map_batches`: Ray Data needs pyarrow and pandas (well
over 100 MB more on top of Ray), turns jobs into table rows, and retries at the level of its own
blocks; a block that still fails fails the whole dataset. What a run needs is simpler and
stricter: every job reported exactly once, a job whose worker died retried a bounded number of
times (`ray.max_retries`) on another worker, and a job that keeps killing workers reported as
failed while the rest carry on. A small dispatcher over `ray.wait` does exactly that in about a
hundred lines, with results streaming back to the runner as each batch finishes.

Jobs go only to actors that have answered a `ready` probe, so on a cluster without room for
every worker (or one still autoscaling) no job waits behind an actor that cannot start yet.

Retries are ours, not Ray's (actors get `max_restarts=0`, `max_task_retries=0`): a Ray-level
retry would be invisible to the report and could run a job twice. The jobs of a batch whose
actor died are re-queued one by one, so a job that kills its worker only takes itself down.
Outputs are written atomically (temp file, then rename), so a worker killed mid-job leaves no
partial file, and a job redone after a death just writes the same file again.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ...config.schema import RayConfig
from ...core.errors import EnvironmentProblem
from ...core.target_fns import targets_to
from ...extend.plugins import plugin_namespace
from ...plan.jobs import Job
from ...report.record import ItemReport, failed_item
from ..context import WorkerContext, WorkerSpec
from ..events import RunEvents
from ..worker import process_batch
from .local import job_groups

log = logging.getLogger("stylepipe")

INSTALL_HINT = "pip install 'stylepipe[ray]'"
#: Jobs per actor call on GPU workers when `optimize.batch_size` is `auto`: the driver cannot see
#: an actor's free device memory, so it sends enough jobs for a large batch and the actor splits
#: them into the batches its own memory allows (`running.context.auto_batch_size`, halved on OOM).
AUTO_GPU_JOBS_PER_CALL = 32


def jobs_per_call(context: WorkerContext, use_gpu: bool, jobs: int, workers: int) -> int:
    """Jobs per actor call, grouped as the local executor groups them: room for two device batches
    (a group split by picture size still fills one), but never so many that a worker sits idle.

    A call is also the unit of load balancing, of re-queueing after a worker dies (each job of a
    lost call spends one of its `ray.max_retries`) and of what a stop (SIGTERM, --max-jobs) lets
    finish, so where the device batch is one image (CPU workers) a call is one job.
    """
    configured = context.settings.batch_size
    if configured == "auto":
        batch = AUTO_GPU_JOBS_PER_CALL // 2 if use_gpu else context.batch_size
    else:
        batch = int(configured)
    per_call = 1 if batch <= 1 else 2 * batch
    return max(1, min(per_call, math.ceil(jobs / max(1, workers))))


#: Seconds between checks for a stop request while waiting on workers.
_POLL_S = 0.5


def import_ray() -> ModuleType:
    """Ray is an optional extra; without it the `ray` executor is an environment problem (exit 3)."""
    try:
        import ray
    except ImportError as exc:
        raise EnvironmentProblem(f"the ray executor needs Ray, which is not installed here: {INSTALL_HINT}") from exc
    return ray


def _targets_on(spec: WorkerSpec, device: torch.device) -> WorkerSpec:
    """A spec whose style targets live on `device`: CPU to travel, the actor's device to run."""
    return replace(spec, style_targets={label: [targets_to(targets, device) for targets in levels]
                                        for label, levels in spec.style_targets.items()})


#: Jobs grouped by style (so a batch shares its targets), in index order: the local executor's rule.
batches = job_groups


class StyleWorker:
    """The body of one Ray actor: plugins, then the spec, then the network, once; then batches.

    The spec travels inside a list so that Ray does not resolve it before `__init__` runs: its
    loss terms may be plugin classes, which can only be unpickled once the plugin folders are
    loaded. A failure to start is kept and raised from every call as an EnvironmentProblem, so
    the driver can tell "this worker cannot work here" from "this worker died".
    """

    def __init__(self, spec_box: list[Any], plugin_folders: tuple[Path, ...], override: bool, threads: int) -> None:
        self.context: WorkerContext | None = None
        self.problem: str | None = None
        try:
            import ray

            from ...extend.plugins import load_plugin_folders
            from ...extend.registries import register_builtins

            torch.set_num_threads(threads)  # else every actor on a node uses every core
            register_builtins()
            plugin_namespace()
            load_plugin_folders(plugin_folders, override=override)
            device = torch.device("cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu")
            spec = _targets_on(ray.get(spec_box[0]), device)
            self.context = WorkerContext.build(spec, device)
        except Exception as exc:  # noqa: BLE001 - reported to the driver with its cause
            self.problem = f"{type(exc).__name__}: {exc}"

    def ready(self) -> str:
        """Answered once the actor is up: jobs go only to ready actors, never queue behind one
        that the cluster has no room for yet."""
        if self.context is None:
            raise EnvironmentProblem(f"a Ray worker on {socket.gethostname()} could not start: {self.problem}")
        return socket.gethostname()

    def run_batch(self, jobs: list[Job]) -> list[ItemReport]:
        """Make a batch of outputs; a job's own failure is a failed ItemReport, as with `local`."""
        self.ready()
        return process_batch(jobs, self.context)  # type: ignore[arg-type]


@dataclass
class _Flight:
    actor: Any
    jobs: list[Job]


class RayExecutor:
    """Jobs on Ray actors (one per GPU, else per `cpus_per_worker` CPUs); results stream back as they finish."""

    name = "ray"

    def __init__(self, config: RayConfig | None = None, *, batch_size: int | None = None) -> None:
        import_ray()  # fail before any planning or target computation when Ray is missing
        self.config = config or RayConfig()
        self.batch_size = max(1, batch_size) if batch_size is not None else None  # None: `jobs_per_call`

    def run(self, jobs: Sequence[Job], context: WorkerContext, events: RunEvents) -> Iterator[ItemReport]:
        if not jobs:
            return
        ray = import_ray()
        with ray_session(ray, self.config) as started_here:
            yield from _Dispatcher(ray, self.config, self.batch_size, context, events, started_here).run(jobs)


@contextmanager
def ray_session(ray: ModuleType, cfg: RayConfig) -> Iterator[bool]:
    """Join `ray.address`, reuse a Ray already set up in this process, or start one (→ True); stop only our own."""
    if ray.is_initialized():
        yield False
        return
    handlers = _signal_handlers()
    try:
        if cfg.address:
            ray.init(address=cfg.address)
        else:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {cfg.address!r}" if cfg.address else "locally"
        raise EnvironmentProblem(f"cannot start or reach Ray {where} (ray.address): {exc}") from exc
    finally:
        _restore(handlers)
    try:
        yield not cfg.address
    finally:
        ray.shutdown()  # a started instance stops; a joined cluster only loses this driver


def _signal_handlers() -> dict[int, Any]:
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers: dict[int, Any]) -> None:
    """`ray.init` replaces SIGTERM with an immediate exit; a handler of ours (the CLI's "finish,
    report, exit") must win. Without one, Ray's stays: it stops Ray's processes on the way out."""
    if threading.current_thread() is threading.main_thread():
        for sig, handler in handlers.items():
            if callable(handler) and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


class _Dispatcher:
    """One run's bookkeeping: queued batches, actors starting or idle, one batch in flight per
    ready actor, and deaths per job."""

    def __init__(self, ray: ModuleType, cfg: RayConfig, batch_size: int | None, context: WorkerContext, events: RunEvents,
                 fixed_size: bool = False) -> None:
        self.ray, self.cfg, self.context, self.events = ray, cfg, context, events
        self.batch_size = batch_size
        self.lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)
        resources = ray.cluster_resources()
        self.use_gpu = resources.get("GPU", 0) > 0 and cfg.gpus_per_worker > 0 and context.settings.device != "cpu"
        if cfg.num_workers:
            self.workers = cfg.num_workers
        elif self.use_gpu:
            self.workers = max(1, math.floor(resources["GPU"] / cfg.gpus_per_worker))
        else:
            self.workers = max(1, math.floor(resources.get("CPU", 1) / cfg.cpus_per_worker))
        self._check_room(ray, fixed_size)
        self.actor_class = ray.remote(StyleWorker)
        self.spec = context.spec
        self.spec_ref: Any = None
        self.actors: list[Any] = []  # every actor started, to kill at the end
        self.idle: list[Any] = []  # ready and waiting for a batch
        self.live = 0  # actors starting, idle or busy
        self.pending: deque[list[Job]] = deque()
        self.in_flight: dict[Any, _Flight] = {}  # ref → (actor, its batch); no jobs: the actor's ready probe
        self.deaths: dict[int, int] = {}  # job index → workers that died running it
        self.startup_deaths = 0
        self.yielded: set[int] = set()

    def _check_room(self, ray: ModuleType, fixed_size: bool) -> None:
        """When no node can hold a worker, Ray waits (for an autoscaler) in silence: say so, and
        on the Ray started for this run, which will never grow, stop at once."""
        need_gpu = self.cfg.gpus_per_worker if self.use_gpu else 0
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        if any(r.get("CPU", 0) >= self.cfg.cpus_per_worker and r.get("GPU", 0) >= need_gpu for r in nodes):
            return
        message = f"no Ray node has room for a worker ({self.cfg.cpus_per_worker:g} CPU, {need_gpu:g} GPU)"
        if fixed_size:
            raise EnvironmentProblem(f"{message}: lower ray.cpus_per_worker / ray.gpus_per_worker")
        log.warning("%s yet; waiting for the cluster to grow", message)

    def run(self, jobs: Sequence[Job]) -> Iterator[ItemReport]:
        ray = self.ray
        plugin_namespace()
        self.spec_ref = ray.put(_targets_on(self.spec, torch.device("cpu")))  # once, for every actor
        size = self.batch_size or jobs_per_call(self.context, self.use_gpu, len(jobs), self.workers)
        self.pending.extend(batches(jobs, size))
        self.workers = min(self.workers, len(self.pending))
        try:
            while True:
                stopping = self.context.should_stop()
                if not stopping:
                    self._fill()
                working = any(flight.jobs for flight in self.in_flight.values())
                if not working and (stopping or not self.pending):
                    break  # done, or asked to stop: what is still queued is left for the next run
                ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=_POLL_S)
                if not ready:
                    continue  # look at should_stop again: SIGTERM must not wait for actors to start
                [ref] = ready
                # The runner records these before the next _fill, so a stop (--max-jobs) sees them.
                yield from self._once(self._settle(ref, self.in_flight.pop(ref)))
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)

    def _fill(self) -> None:
        """Give each ready actor a batch; start actors while batches outnumber those starting."""
        while self.pending and self.idle:
            actor, batch = self.idle.pop(), self.pending.popleft()
            for job in batch:
                self.events.job_started(job)
            self.in_flight[actor.run_batch.remote(batch)] = _Flight(actor, batch)
        starting = sum(1 for flight in self.in_flight.values() if not flight.jobs)
        while self.live < self.workers and len(self.pending) > starting:
            actor = self._spawn()
            self.in_flight[actor.ready.remote()] = _Flight(actor, [])
            starting += 1

    def _spawn(self) -> Any:
        options: dict[str, Any] = {"num_cpus": self.cfg.cpus_per_worker, "max_restarts": 0, "max_task_retries": 0}
        if self.use_gpu:
            options["num_gpus"] = self.cfg.gpus_per_worker
        threads = max(1, int(self.cfg.cpus_per_worker))
        spec = self.spec
        actor = self.actor_class.options(**options).remote([self.spec_ref], spec.plugin_folders, spec.override_plugins, threads)
        self.actors.append(actor)
        self.live += 1
        return actor

    def _settle(self, ref: Any, flight: _Flight) -> list[ItemReport]:
        """The reports of a finished call; a lost actor's jobs re-queued; a worker that cannot start stops the run."""
        try:
            reports = self.ray.get(ref)
        except self.lost as exc:
            self.live -= 1
            self.ray.kill(flight.actor, no_restart=True)
            if flight.jobs:
                return self._after_death(flight.jobs, exc)
            self.startup_deaths += 1
            if self.startup_deaths > self.workers * (self.cfg.max_retries + 1):
                raise EnvironmentProblem(f"Ray workers keep dying as they start ({self.startup_deaths} so far): "
                                         f"{type(exc).__name__}: {_first_line(exc)}") from None
            return []
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, EnvironmentProblem):
                raise EnvironmentProblem(str(cause)) from None
            self.idle.append(flight.actor)
            return [failed_item(job, f"worker error: {type(cause).__name__}: {_first_line(cause)}") for job in flight.jobs]
        self.idle.append(flight.actor)
        return reports if flight.jobs else []

    def _after_death(self, jobs: list[Job], exc: Exception) -> list[ItemReport]:
        """Re-queue each job of a lost batch on its own (first in line), or fail it past max_retries."""
        failed, retry = [], []
        for job in jobs:
            self.deaths[job.index] = deaths = self.deaths.get(job.index, 0) + 1
            if deaths > self.cfg.max_retries:
                failed.append(failed_item(job, f"the Ray worker running it died {deaths} time(s), more than ray.max_retries="
                                           f"{self.cfg.max_retries}: {type(exc).__name__}: {_first_line(exc)}"))
            else:
                log.warning("a Ray worker died; job %d (%s × %s) goes back in the queue (retry %d of %d)",
                            job.index, Path(job.content_label).name, job.style_label, deaths, self.cfg.max_retries)
                retry.append([job])
        self.pending.extendleft(reversed(retry))
        return failed

    def _once(self, items: list[ItemReport]) -> Iterator[ItemReport]:
        """Every job is reported exactly once, whatever happened on the way."""
        for item in items:
            if item.job in self.yielded:
                log.warning("job %d was reported twice by Ray workers; the second report is dropped", item.job)
                continue
            self.yielded.add(item.job)
            yield item



def _first_line(exc: BaseException, limit: int = 300) -> str:
    """Ray's messages run to many lines of troubleshooting; a report entry needs the gist."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
