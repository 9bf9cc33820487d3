"""Fault injection: a full disk, read-only folders, a shared cache, a moved project, signals.

Each fault must give a clear message and the documented exit code, leave no partial or corrupt
file, and let a re-run complete the rest. The runs go through the real command line where the
fault is about processes (signals, concurrency) and in-process where a patch injects it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

import stylepipe.io.images
from stylepipe.config.load import load_pipeline
from stylepipe.io.atomic import write_atomic
from stylepipe.running.runner import run_pipeline

from conftest import sample

SCRIPT = Path(sys.executable).with_name("stylepipe")
ENV = {**os.environ, "COLUMNS": "250"}

#: Test plugins that pause at the moment a signal should land, once per "armed" file.
PAUSE_PLUGIN = '''
import time
from pathlib import Path

import stylepipe.io.atomic
import stylepipe.io.images
from stylepipe.registry import register_style_source
from stylepipe.extend.sources import ImageSource

HERE = Path(__file__).parent


def pause(what):
    armed = HERE / f"armed-{what}"
    if armed.exists():
        armed.unlink()
        (HERE / f"in-{what}").touch()
        for _ in range(200):  # until the test has sent its signal (or 10 s)
            if (HERE / "signalled").exists():
                break
            time.sleep(0.05)


@register_style_source("slow_image")
class SlowImage(ImageSource):
    name = "slow_image"

    def images(self):
        pause("targets")
        return super().images()


def paused_write(path, write):
    def write_then_pause(handle):
        write(handle)
        handle.flush()
        pause("save")
    stylepipe.io.atomic.write_atomic(path, write_then_pause)


stylepipe.io.images.write_atomic = paused_write
'''


def make_project(root: Path, **settings) -> Path:
    """A self-contained project: relative paths only, as a user would keep it in git."""
    root.mkdir(parents=True)
    (root / "photos").mkdir()
    (root / "styles").mkdir()
    (root / "plugins").mkdir()
    for name in ("chelsea", "coffee"):
        shutil.copy(sample(name), root / "photos" / f"{name}.jpg")
    shutil.copy(sample("the_scream"), root / "styles" / "the_scream.jpg")
    (root / "plugins" / "pause.py").write_text(PAUSE_PLUGIN)
    data = {"content": ["photos"], "styles": ["styles/the_scream.jpg"], "size": {"max_side": 32},
            "optimize": {"steps": 2}, "output": {"dir": "out"}, "cache": {"dir": "cache"}, **settings}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return root / "pipeline.yaml"


def cli(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def assert_complete_pictures(folder: Path, count: int) -> None:
    pictures = sorted(folder.glob("*.jpg"))
    assert len(pictures) == count, pictures
    for picture in pictures:
        with Image.open(picture) as img:
            img.load()  # a truncated file would raise here


@pytest.fixture()
def read_only() -> Iterator:
    """Make a folder read-only for real: chmod for a normal user, a read-only mount for root."""
    undo: list = []

    def apply(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(lambda: folder.chmod(0o755))
            return
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"root cannot make a read-only folder here: {done.stderr.decode().strip()}")
        undo.append(lambda: subprocess.run(["umount", str(folder)], check=True))

    yield apply
    for action in reversed(undo):
        action()


# --- writing ------------------------------------------------------------------------------------


def test_disk_full_while_saving_fails_that_output_only_and_a_rerun_completes(tmp_path: Path, monkeypatch) -> None:
    pipeline = make_project(tmp_path / "project")
    out = tmp_path / "project" / "out"
    calls = []

    def full_disk(path: Path, write) -> None:
        calls.append(path)
        if len(calls) > 1:
            return write_atomic(path, write)

        def write_some_then_fail(handle) -> None:
            handle.write(b"\xff\xd8\xff partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        write_atomic(path, write_some_then_fail)

    monkeypatch.setattr(stylepipe.io.images, "write_atomic", full_disk)
    first = run_pipeline(load_pipeline(pipeline))
    (failed,) = [item for item in first.items if item.status == "failed"]
    assert failed.error == f"{calls[0]}: cannot write (No space left on device)" and first.exit_code == 1
    assert not calls[0].exists() and not partials(out)
    assert not list((out / ".stylepipe").glob(f"{calls[0].name}.json"))  # no sidecar claims it is done

    monkeypatch.undo()
    second = run_pipeline(load_pipeline(pipeline))
    assert sorted(item.status for item in second.items) == ["done", "skipped"] and second.exit_code == 0
    assert_complete_pictures(out, 2)


def test_read_only_output_folder_is_an_environment_problem_named_in_one_line(tmp_path: Path, read_only) -> None:
    pipeline = make_project(tmp_path / "project")
    out = tmp_path / "project" / "out"
    read_only(out)
    run = cli("run", pipeline)
    assert run.returncode == 3, run.stderr
    assert f"error: {out}: cannot write to the output folder (Read-only file system)" in run.stderr or \
        f"error: {out}: cannot write to the output folder (Permission denied)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_unwritable_cache_folder_lets_the_run_go_on_with_a_warning(tmp_path: Path, read_only) -> None:
    pipeline = make_project(tmp_path / "project")
    cache = tmp_path / "project" / "cache"
    read_only(cache)
    run = cli("run", pipeline)
    assert run.returncode == 0, run.stderr
    data = report(tmp_path / "project" / "out")
    assert data["summary"]["done"] == 2
    (warning,) = [w for w in data["warnings"] if str(cache) in w]
    assert "continuing without a disk cache" in warning and warning in " ".join(run.stderr.split())
    assert not list(cache.parent.glob("cache.broken-*"))  # nothing wrong with the cache itself


# --- sharing and moving -------------------------------------------------------------------------


def test_two_concurrent_runs_with_different_outputs_share_one_cache(tmp_path: Path) -> None:
    pipeline = make_project(tmp_path / "project")
    runs = [subprocess.Popen([str(SCRIPT), "run", str(pipeline), "-o", str(tmp_path / f"out{i}")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for i in (1, 2)]
    for proc in runs:
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
    for i in (1, 2):
        assert report(tmp_path / f"out{i}")["summary"]["done"] == 2
        assert_complete_pictures(tmp_path / f"out{i}", 2)
    check = cli("cache", "check", pipeline)
    assert check.returncode == 0 and "checked 1 entry, dropped 0 corrupt" in check.stdout, check.stdout
    third = run_pipeline(load_pipeline(pipeline), output_dir=tmp_path / "out3")
    assert third.exit_code == 0 and (third.targets_computed, third.targets_cache_hits) == (0, 1)


def test_a_moved_project_hits_its_cache_and_skips_its_outputs(tmp_path: Path) -> None:
    pipeline = make_project(tmp_path / "here")
    first = run_pipeline(load_pipeline(pipeline))
    assert first.targets_computed == 1 and first.count("done") == 2
    moved = tmp_path / "elsewhere" / "clone"
    shutil.copytree(tmp_path / "here", moved, symlinks=True)
    shutil.rmtree(tmp_path / "here")
    again = run_pipeline(load_pipeline(moved / "pipeline.yaml"))
    assert [item.status for item in again.items] == ["skipped", "skipped"] and again.targets_computed == 0
    fresh = run_pipeline(load_pipeline(moved / "pipeline.yaml"), output_dir=moved / "out2")
    assert fresh.targets_computed == 0 and fresh.targets_cache_hits == 1 and fresh.count("done") == 2


# --- signals ------------------------------------------------------------------------------------


def start_paused(pipeline: Path, moment: str) -> subprocess.Popen:
    """Start a run and wait until it sits in the given moment (targets or save)."""
    plugins = pipeline.parent / "plugins"
    (plugins / f"armed-{moment}").touch()
    proc = subprocess.Popen([str(SCRIPT), "run", str(pipeline)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (plugins / f"in-{moment}").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached the pause"
        time.sleep(0.05)
    return proc


def signal_paused(proc: subprocess.Popen, sig: int) -> None:
    proc.send_signal(sig)
    time.sleep(0.2)  # let the handler run before the pause ends
    (Path(proc.args[2]).parent / "plugins" / "signalled").touch()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_signal_during_target_computation_loses_nothing(tmp_path: Path, sig: int) -> None:
    pipeline = make_project(tmp_path / "project", styles=[{"source": "slow_image", "path": "styles/the_scream.jpg"}],
                            plugins=["plugins"])
    out = tmp_path / "project" / "out"
    proc = start_paused(pipeline, "targets")
    signal_paused(proc, sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, stderr  # a clean stop: the report says what is left
        data = report(out)
        assert data["stopped"] and "SIGTERM" in data["stopped"] and data["summary"]["remaining"] == 2
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not list(out.glob("*.jpg")) and not partials(out)

    rerun = cli("run", pipeline)
    assert rerun.returncode == 0, rerun.stderr
    assert report(out)["summary"]["done"] == 2 and not partials(out)
    assert_complete_pictures(out, 2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_signal_during_a_save_leaves_no_partial_file(tmp_path: Path, sig: int) -> None:
    pipeline = make_project(tmp_path / "project", plugins=["plugins"])
    out = tmp_path / "project" / "out"
    proc = start_paused(pipeline, "save")
    assert len(partials(out)) == 1  # caught in the act: the temp file is written, not yet renamed
    signal_paused(proc, sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, stderr  # the save in progress completes, then the run stops
        data = report(out)
        assert data["summary"]["done"] == 1 and data["summary"]["remaining"] == 1
        assert not partials(out)
        assert_complete_pictures(out, 1)
    else:
        assert proc.returncode == -signal.SIGKILL
        assert not list(out.glob("*.jpg"))  # the temp file never became an output

    rerun = cli("run", pipeline)
    assert rerun.returncode == 0, rerun.stderr
    statuses = sorted(item["status"] for item in report(out)["items"])
    assert statuses == (["done", "skipped"] if sig == signal.SIGTERM else ["done", "done"])
    assert not partials(out)  # a killed writer's temp file is swept by the next run
    assert_complete_pictures(out, 2)
