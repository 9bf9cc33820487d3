"""Progress of long pictures: step k/n, loss, elapsed and ETAs on a terminal; a line now and then
in a plain log (cron). Times come from a fake clock, so the numbers are exact and nothing waits."""

from __future__ import annotations

import functools
import io
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

import stylepipe.cli.app as cli
from stylepipe.cli.progress import PlainThrottle, ProgressTracker, format_duration
from stylepipe.report.record import ItemReport

from conftest import sample


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(index: int) -> SimpleNamespace:
    return SimpleNamespace(index=index, content_ref=f"/photos/p{index}.jpg", style_ref="scream", layers=None)


def done(index: int) -> ItemReport:
    return ItemReport(f"/photos/p{index}.jpg", "scream", f"/out/p{index}__scream.jpg", "done", seconds=100.0,
                      steps=10, job=index)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (7.4, "0:07"), (410, "6:50"), (3723, "1:02:03"), (-3, "0:00")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_pictures_eta_comes_from_its_own_pace_and_the_runs_from_pictures_made() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    tracker.planned(3)
    tracker.job_started(0)
    clock.now += 40
    first = tracker.step(0, 4, 10, 123.0)
    assert (first.elapsed, first.eta, first.run_eta) == (40, 60, None)  # no picture made yet: no run ETA
    assert first.text() == "step 4/10 · loss 123 · ETA 1:00"
    clock.now += 60
    tracker.job_finished(0, made=True)  # 100 s a picture
    tracker.job_started(1)
    clock.now += 30
    second = tracker.step(1, 5, 10, 1.5e4)
    assert (second.eta, second.run_eta) == (30, 30 + 100)  # this picture's 30 s, then one more at 100 s
    assert second.text() == "step 5/10 · loss 1.5e+04 · ETA 0:30 · run ETA 2:10"
    tracker.job_finished(1, made=False)  # a failure made no picture: it must not make the run look fast
    assert tracker.per_picture() == 100
    tracker.job_started(2)
    clock.now += 70
    tracker.job_finished(2, made=True)
    assert tracker.per_picture() == (100 + 30 + 70) / 2  # wall time over pictures made: the failure's time counts
    assert tracker.run_eta() == 0.0


def test_the_plain_log_throttle_is_the_rarer_of_30_s_and_10_percent() -> None:
    clock = FakeClock()
    throttle = PlainThrottle(30.0, 0.1, clock)
    fast = []
    for step in range(1, 101):  # 100 steps of 1 s: every 10 steps is too often, every 30 s is the limit
        clock.now += 1
        fast += [step] if throttle.due(step, 100) else []
    assert fast == [30, 60, 90]
    throttle.restart()
    slow = []
    for step in range(1, 101):  # 100 steps of 60 s: every step passes 30 s, so every 10% is the limit
        clock.now += 60
        slow += [step] if throttle.due(step, 100) else []
    assert slow == [10, 20, 30, 40, 50, 60, 70, 80, 90]  # the last step's `done` line says the rest


def test_a_terminal_shows_step_loss_elapsed_and_both_etas() -> None:
    out = io.StringIO()
    clock = FakeClock()
    events = cli.CliEvents(Console(file=out, force_terminal=True, width=160), clock=clock)
    with events:
        events.planned(3, 3)
        events.job_started(job(0))
        clock.now += 100
        events.job_finished(job(0), done(0))
        events.job_started(job(1))
        clock.now += 50
        events.step(job(1), 5, 10, 2.5e4)
        events.progress.refresh()
        screen = out.getvalue()
    assert "p1.jpg × scream" in screen and "step 5/10" in screen and "loss 2.5e+04" in screen
    assert "ETA 0:50" in screen and "0:00:50" in screen  # this picture: 50 s elapsed for half its steps, 50 s left
    assert "run ETA 2:30" in screen  # 50 s for this one, then 100 s for the last
    assert re.search(r"1/3 · run ETA", screen)  # the run's bar: pictures finished of those to do
    assert "progress:" not in screen  # the bar replaces the plain lines


def test_a_plain_log_gets_progress_lines_not_a_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(sample("chelsea"), tmp_path / "chelsea.jpg")
    shutil.copy(sample("the_scream"), tmp_path / "the_scream.jpg")
    (tmp_path / "pipeline.yaml").write_text("content: chelsea.jpg\nstyles: the_scream.jpg\ncache: {enabled: false}\n")
    args = ["run", str(tmp_path / "pipeline.yaml"), "--set", "size.max_side=32", "--set", "optimize.steps=10"]
    runner = CliRunner()

    quiet = runner.invoke(cli.app, args + ["--force"])  # a 10-step picture takes well under 30 s: no lines
    assert quiet.exit_code == 0, quiet.output
    assert "progress:" not in quiet.stderr and "done: chelsea__the_scream.jpg" in quiet.stderr

    monkeypatch.setattr(cli, "CliEvents", functools.partial(cli.CliEvents, plain_every_s=0.0))  # as if each step took 30 s
    chatty = runner.invoke(cli.app, args + ["--force"])
    assert chatty.exit_code == 0, chatty.output
    lines = [line for line in chatty.stderr.splitlines() if "progress:" in line]
    assert len(lines) == 9, chatty.stderr  # one per 10% of the steps, none for the last (its `done` line)
    assert re.search(r"INFO progress: chelsea\.jpg × the_scream: step 1/10 · loss \S+ · ETA \d+:\d\d, \d+:\d\d elapsed$",
                     lines[0]), lines[0]
    assert "\x1b[" not in chatty.stderr  # no bar, no terminal codes
