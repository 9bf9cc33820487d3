"""Scheduled runs: shards, the run lock, bounds and SIGTERM, through the runner and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stylepipe.cli.exit_codes import exit_code_for
from stylepipe.config.load import load_pipeline
from stylepipe.core.errors import ConfigError
from stylepipe.running.runner import make_plan, run_pipeline
from stylepipe.running.schedule import RunBounds, RunLock, RunLocked, Shard, parse_duration

from conftest import sample

STYLEPIPE = str(Path(sys.executable).parent / "stylepipe")


def write_pipeline(folder: Path, photo_dir: Path, styles=("starry_night", "the_scream"), steps: int = 3) -> Path:
    data = {
        "content": [str(photo_dir)],
        "styles": [str(sample(name)) for name in styles],
        "size": {"max_side": 32},
        "optimize": {"steps": steps},
        "cache": {"dir": str(folder / "cache")},
        "output": {"dir": str(folder / "out")},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shard_parsing_and_stability():
    assert Shard.parse("1/3") == Shard(1, 3)
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            Shard.parse(bad)
    keys = [f"photo{i}__style.jpg" for i in range(200)]
    owners = [[Shard(i, 4).owns(k) for i in range(4)] for k in keys]
    assert all(sum(row) == 1 for row in owners)  # every key in exactly one shard
    assert all(sum(col) > 20 for col in zip(*owners))  # and the split is roughly even


def test_two_shards_do_every_job_exactly_once(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir)
    all_outputs = {str(job.output) for job in make_plan(load_pipeline(pipeline)).jobs}
    reports = [run_pipeline(load_pipeline(pipeline), shard=Shard(i, 2)) for i in range(2)]
    done = [{item.output for item in report.items if item.status == "done"} for report in reports]
    assert done[0] | done[1] == all_outputs and not done[0] & done[1]
    assert {p.name for p in (tmp_path / "out").glob("report.*.json")} == {"report.shard-0-of-2.json", "report.shard-1-of-2.json"}
    again = run_pipeline(load_pipeline(pipeline), shard=Shard(1, 2))  # each shard resumes on its own
    assert {item.status for item in again.items} == {"skipped"}


def test_max_jobs_stops_cleanly_and_the_next_run_resumes(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir, styles=("shipwreck",))
    first = run_pipeline(load_pipeline(pipeline), bounds=RunBounds(max_jobs=1))
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["summary"]["done"] == 1 and data["summary"]["remaining"] == 3
    assert "max-jobs" in data["stopped"] and len(data["remaining"]) == 3 and first.exit_code == 0
    second = run_pipeline(load_pipeline(pipeline))
    assert sorted(item.status for item in second.items) == ["done", "done", "done", "skipped"]
    assert second.stopped is None and not second.remaining


def test_time_budget_resumes_where_it_stopped(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir, styles=("shipwreck",), steps=3)
    cut = run_pipeline(load_pipeline(pipeline), bounds=RunBounds(time_budget=1e-3))
    assert cut.count("done") == 0 and len(cut.remaining) == 4 and "time-budget" in cut.stopped
    ample = run_pipeline(load_pipeline(pipeline), bounds=RunBounds(time_budget=3600))
    assert ample.count("done") == 4 and not ample.remaining


def test_a_held_lock_refuses_a_second_run(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir)
    with RunLock(tmp_path / "out"):
        with pytest.raises(RunLocked, match="another stylepipe run") as info:
            run_pipeline(load_pipeline(pipeline))
        assert exit_code_for(info.value) == 4 and str(os.getpid()) in str(info.value)
    with RunLock(tmp_path / "out", Shard(0, 2)):  # shards lock separately and may overlap
        run_pipeline(load_pipeline(pipeline), shard=Shard(1, 2))


def test_overlapping_cli_runs_one_works_the_other_exits_4(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from stylepipe.running.schedule import RunLock\n"
         "with RunLock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)", str(tmp_path / "out")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([STYLEPIPE, "run", str(pipeline)], capture_output=True, text=True, timeout=120)
        assert second.returncode == 4
        assert "another stylepipe run" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert not list((tmp_path / "out").glob("*.jpg"))
    finally:
        holder.kill()
        holder.wait()
    after = subprocess.run([STYLEPIPE, "run", str(pipeline), "--max-jobs", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr  # the kernel released the dead holder's lock
    assert json.loads(after.stdout)["summary"]["done"] == 1


def test_sigterm_finishes_the_current_job_writes_the_report_and_exits(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, photo_dir, steps=15)
    out = tmp_path / "out"
    proc = subprocess.Popen([STYLEPIPE, "run", str(pipeline), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("*.jpg")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert "SIGTERM" in summary["stopped"] and summary["summary"]["remaining"] >= 1
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["done"] == len(list(out.glob("*.jpg"))) >= 1
    assert not list(out.rglob("*.part"))


def test_parse_duration():
    assert parse_duration("90") == 90 and parse_duration("45m") == 2700 and parse_duration("1h30m") == 5400
    assert parse_duration("2.5s") == 2.5
    for bad in ("", "soon", "0", "5d"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
