"""The `ray` executor end to end on a local Ray (2 CPUs): same results as `local`, targets computed
once by the driver, a worker killed mid-run, and the error when Ray is not installed.

Two small plugins written into a temporary folder make the remote side observable without any
test hook in stylepipe itself: a style source that logs the pid of every process that reads its
pictures (only the driver may: workers get targets, never pictures), and a loss term that kills
the worker process running it (`os._exit`) on that process's second job, once per run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.config.load import load_pipeline
from stylepipe.config.schema import PipelineConfig
from stylepipe.core.errors import ConfigError, EnvironmentProblem
from stylepipe.running.executors import EXECUTORS, get_executor
from stylepipe.running.runner import run_pipeline

from conftest import ROOT, sample

FAST = {"size": {"max_side": 32}, "optimize": {"steps": 3, "init": "noise", "seed": 7}, "output": {"format": "png"}}
SPY_PLUGIN = '''
import os
from pathlib import Path

from stylepipe.losses import LossTerm, TermParams
from stylepipe.registry import register_loss, register_style_source
from stylepipe.extend.sources import ImageSource

HERE = Path(__file__).parent


@register_style_source("spied_image")
class SpiedImage(ImageSource):
    """An image source that notes which process reads its pictures."""

    name = "spied_image"

    def images(self):
        with open(HERE / "reads.log", "a") as log:
            log.write(f"{os.getpid()}\\n")
        return super().images()


class CrashParams(TermParams):
    after: int = 2


@register_loss("crash_once")
class CrashOnce(LossTerm):
    """Kills its process on that process's `after`-th job, once per folder (the first to get there)."""

    name = "crash_once"
    side = "content"
    Params = CrashParams
    calls = 0

    def content_targets(self, features):
        type(self).calls += 1
        if type(self).calls == self.params.after:
            try:
                os.close(os.open(HERE / "crashed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return {}
            os._exit(1)
        return {}

    def loss(self, image, features, content, style):
        return image.new_zeros(image.shape[0])


@register_loss("buggy")
class Buggy(CrashOnce):
    """A plugin bug: an exception that no job-level handler expects."""

    name = "buggy"

    def content_targets(self, features):
        raise TypeError("buggy plugin")
'''
BROKEN_PLUGIN = '''
import os
from pathlib import Path

if os.getpid() != int((Path(__file__).parent / "driver.pid").read_text()):
    if (Path(__file__).parent / "exit").exists():
        os._exit(1)  # the worker process dies as it starts, every time
    raise RuntimeError("not installed on this node")
'''


pytestmark = pytest.mark.usefixtures("forget_plugins")  # conftest: each test's plugins are forgotten after it


@pytest.fixture()
def spy(tmp_path: Path) -> Path:
    folder = tmp_path / "spy_plugins"
    folder.mkdir()
    (folder / "spy.py").write_text(SPY_PLUGIN)
    return folder


def write_pipeline(folder: Path, name: str, **settings) -> Path:
    data = {"cache": {"dir": str(folder / f"cache-{name}")}, "output": {"dir": str(folder / f"out-{name}")}}
    for key, value in {**FAST, **settings}.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def spied_styles(*names: str) -> list[dict]:
    return [{"source": "spied_image", "path": str(sample(name))} for name in names]


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_ray_gives_the_local_results_and_workers_never_compute_targets(tmp_path, spy, monkeypatch, request):
    """First in the file, so the executor starts (and stops) its own Ray, as `stylepipe run` does."""
    ray = pytest.importorskip("ray")
    from stylepipe.running.executors.ray import RayExecutor

    saved = EXECUTORS.snapshot()
    EXECUTORS.register("ray", lambda config: RayExecutor(config.ray, batch_size=2), override=True)  # batches of a style
    request.addfinalizer(lambda: EXECUTORS.restore(saved))
    was_running = ray.is_initialized()
    common = {
        "content": [str(sample("chelsea")), str(sample("coffee"))],
        "styles": spied_styles("starry_night", "the_scream"),
        "plugins": [str(ROOT / "plugins"), str(spy)],  # a plugin term (mean_std) travels to the workers too
        "losses": {"extra": [{"name": "mean_std", "weight": 10}]},
    }
    local = run_pipeline(load_pipeline(write_pipeline(tmp_path, "local", **common)))
    (spy / "reads.log").unlink()
    remote = run_pipeline(load_pipeline(write_pipeline(tmp_path, "ray", executor="ray", ray={"num_workers": 2}, **common)))
    assert ray.is_initialized() == was_running  # stopped the Ray it started, and only that

    reads = (spy / "reads.log").read_text().split()
    assert reads == [str(os.getpid())] * 2  # two styles, read once each, by the driver only
    data = json.loads((tmp_path / "out-ray" / "report.json").read_text())
    assert data["style_targets"] == {"computed": 2, "cache_hits": 0}
    assert remote.exit_code == 0 and local.exit_code == 0
    mine = {item.job: item for item in remote.items}
    assert sorted(mine) == [0, 1, 2, 3] and len(remote.items) == 4
    for theirs in local.items:
        item = mine[theirs.job]
        assert item.status == "done" and Path(item.output).name == Path(theirs.output).name
        assert item.loss["style"] > 0 and item.loss["mean_std"] > 0  # the driver's targets reached the workers
        for term, value in theirs.loss.items():
            assert item.loss[term] == pytest.approx(value, rel=1e-4, abs=1e-9), term
        assert np.abs(pixels(item.output) - pixels(theirs.output)).max() <= 1


# 3 workers on 2 CPUs: the third waits for room (a dead worker's CPU) and no job waits behind it.
@pytest.mark.parametrize(("max_retries", "workers"), [(1, 3), (0, 2)])
def test_a_worker_killed_mid_run_costs_no_job_and_no_duplicate(tmp_path, spy, local_ray, caplog, max_retries, workers):
    contents = [str(sample(name)) for name in ("astronaut", "chelsea", "coffee")]
    pipeline = write_pipeline(tmp_path, "fault", executor="ray", content=contents, plugins=[str(spy)],
                              styles=spied_styles("shipwreck", "the_scream"), losses={"extra": [{"name": "crash_once"}]},
                              ray={"num_workers": workers, "max_retries": max_retries})
    with caplog.at_level(logging.WARNING, logger="stylepipe"):
        report = run_pipeline(load_pipeline(pipeline))

    assert (spy / "crashed").exists()  # a worker really died, on its second job
    assert local_ray.is_initialized()  # joined, not stopped
    assert sorted(item.job for item in report.items) == list(range(6))  # every job exactly once
    failed = [item for item in report.items if item.status == "failed"]
    if max_retries:
        assert not failed and report.exit_code == 0
        assert "goes back in the queue (retry 1 of 1)" in caplog.text
    else:
        assert len(failed) == 1 and report.exit_code == 1  # the job that killed its worker; the rest carry on
        assert re.search(r"died 1 time\(s\), more than ray.max_retries=0: ActorDiedError", failed[0].error)
    out = tmp_path / "out-fault"
    done = {Path(item.output).name for item in report.items if item.status == "done"}
    assert {p.name for p in out.glob("*.png")} == done  # nothing partial, nothing extra
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    assert len(list((out / ".stylepipe").glob("*.json"))) == len(done)
    saved = json.loads((out / "report.json").read_text())
    assert [item["job"] for item in saved["items"]] == list(range(6)) and saved["style_targets"]["computed"] == 2


@pytest.mark.parametrize(("how", "message"), [
    ("raise", r"Ray worker on .* could not start: PluginError: .*not installed on this node"),
    ("exit", r"Ray workers keep dying as they start \(3 so far\): ActorDiedError"),
])
def test_a_worker_that_cannot_start_stops_the_run_as_an_environment_problem(tmp_path, local_ray, how, message):
    broken = tmp_path / "broken_plugins"
    broken.mkdir()
    (broken / "driver.pid").write_text(str(os.getpid()))
    (broken / "needs_setup.py").write_text(BROKEN_PLUGIN)
    if how == "exit":
        (broken / "exit").touch()
    pipeline = write_pipeline(tmp_path, "broken", executor="ray", content=[str(sample("chelsea"))], plugins=[str(broken)],
                              styles=[str(sample("shipwreck"))], ray={"num_workers": 1, "max_retries": 1})
    with pytest.raises(EnvironmentProblem, match=message):
        run_pipeline(load_pipeline(pipeline))
    saved = json.loads((tmp_path / "out-broken" / "report.json").read_text())
    assert saved["items"] == [] and len(saved["remaining"]) == 1


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_an_unexpected_error_in_a_worker_fails_its_jobs_only_and_alike_in_both_executors(tmp_path, spy, local_ray, executor):
    pipeline = write_pipeline(tmp_path, "buggy", executor=executor, content=[str(sample("chelsea"))], plugins=[str(spy)],
                              styles=[str(sample("shipwreck")), str(sample("the_scream"))],
                              losses={"extra": [{"name": "buggy"}]}, ray={"num_workers": 1})
    report = run_pipeline(load_pipeline(pipeline))
    assert sorted(item.job for item in report.items) == [0, 1] and report.exit_code == 1
    assert {item.error for item in report.items} == {f"{sample('chelsea')}: TypeError: buggy plugin"}


def test_a_worker_too_big_for_every_node_is_refused_on_our_own_ray_and_awaited_on_a_cluster(caplog):
    from stylepipe.config.schema import RayConfig
    from stylepipe.running.executors.ray import _Dispatcher

    fake_ray = SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 8.0}}])
    dispatcher = SimpleNamespace(cfg=RayConfig(cpus_per_worker=4), use_gpu=False)
    with pytest.raises(EnvironmentProblem, match=r"no Ray node has room for a worker \(4 CPU, 0 GPU\)"):
        _Dispatcher._check_room(dispatcher, fake_ray, True)
    with caplog.at_level(logging.WARNING, logger="stylepipe"):
        _Dispatcher._check_room(dispatcher, fake_ray, False)
    assert "waiting for the cluster to grow" in caplog.text
    _Dispatcher._check_room(SimpleNamespace(cfg=RayConfig(cpus_per_worker=2), use_gpu=False), fake_ray, True)


def test_batches_group_jobs_by_style_in_index_order():
    from stylepipe.running.executors.ray import batches

    jobs = [SimpleNamespace(index=i, style_label="ab"[i % 2]) for i in range(7)]
    assert [[job.index for job in batch] for batch in batches(jobs, 3)] == [[0, 2, 4], [6], [1, 3, 5]]
    assert [len(batch) for batch in batches(jobs, 1)] == [1] * 7


def test_without_ray_installed_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(EnvironmentProblem, match=re.escape("pip install 'stylepipe[ray]'")) as caught:
        get_executor("ray", PipelineConfig(content=["x.jpg"], styles=["y.jpg"]))
    assert exit_code_for(caught.value) == 3
    pipeline = write_pipeline(tmp_path, "noray", executor="ray", content=[str(sample("chelsea"))], styles=[str(sample("shipwreck"))])
    with pytest.raises(EnvironmentProblem):
        run_pipeline(load_pipeline(pipeline))
    assert not (tmp_path / "out-noray").exists()  # refused before planning anything
    with pytest.raises(ConfigError, match="unknown executor 'dask'; available: local, ray"):
        get_executor("dask")


def test_the_cluster_docs_examples_parse():
    """The KubeRay RayJob manifest and the pipeline snippet in docs/cluster.md are valid as written."""
    text = (ROOT / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    documents = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    jobs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "RayJob"]
    assert len(jobs) == 1 and jobs[0]["apiVersion"] == "ray.io/v1"
    spec = jobs[0]["spec"]
    assert "stylepipe run" in spec["entrypoint"]
    assert spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"]
    pipelines = [doc for doc in documents if isinstance(doc, dict) and doc.get("executor") == "ray"]
    assert pipelines, "a pipeline example with executor: ray"
    for doc in pipelines:
        PipelineConfig.model_validate(doc)


def test_a_stop_request_is_seen_while_workers_are_still_starting():
    """On a cluster still growing, no actor answers for minutes: waiting on it must not make
    the driver deaf to SIGTERM. A stand-in Ray whose actors never start shows the driver polls."""
    from stylepipe.config.schema import RayConfig
    from stylepipe.running.context import WorkerSpec
    from stylepipe.running.executors.ray import _Dispatcher

    waits: list[float | None] = []

    def wait(refs, num_returns=1, timeout=None):
        waits.append(timeout)
        if timeout is None:
            raise AssertionError("ray.wait without a timeout blocks until an actor starts")
        return [], list(refs)

    never_ready = SimpleNamespace(ready=SimpleNamespace(remote=lambda: object()))
    actor_class = SimpleNamespace(options=lambda **kwargs: SimpleNamespace(remote=lambda *args: never_ready))
    error = type("RayError", (Exception,), {})
    killed = []
    fake_ray = SimpleNamespace(
        exceptions=SimpleNamespace(RayActorError=error, ObjectLostError=error, NodeDiedError=error, RayTaskError=error),
        cluster_resources=lambda: {"CPU": 2.0}, nodes=lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}],
        remote=lambda cls: actor_class, put=lambda value: "spec-ref", wait=wait,
        kill=lambda actor, no_restart=True: killed.append(actor))
    context = SimpleNamespace(should_stop=lambda: len(waits) >= 3, settings=SimpleNamespace(device="cpu"),
                              spec=WorkerSpec([], None, Path(".")))  # type: ignore[arg-type]
    jobs = [SimpleNamespace(index=i, style_label="s") for i in range(2)]
    dispatcher = _Dispatcher(fake_ray, RayConfig(num_workers=1), 1, context, SimpleNamespace(job_started=print))
    assert list(dispatcher.run(jobs)) == []  # stopped, the jobs left for the next run
    assert len(waits) == 3 and all(timeout is not None and timeout <= 1 for timeout in waits)
    assert killed == [never_ready]
