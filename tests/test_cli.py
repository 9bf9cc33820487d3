"""The command line: exit codes, one-line errors on stderr, results on stdout, logs on stderr."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path

import diskcache
import pytest
import torch
from typer.testing import CliRunner

import stylepipe
from stylepipe.cli.app import app
from stylepipe.config.load import load_pipeline
from stylepipe.plan.resume import sidecar_path
from stylepipe.running.runner import make_plan
from stylepipe.targets.cache import TargetCache

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SCRIPT = Path(sys.executable).with_name("stylepipe")
TINY = ["--set", "size.max_side=32", "--set", "optimize.steps=2"]

runner = CliRunner()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(SAMPLES / "content" / "chelsea.jpg", root / "chelsea.jpg")
    shutil.copy(SAMPLES / "styles" / "the_scream.jpg", root / "the_scream.jpg")
    return root


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


GOOD = """
content: chelsea.jpg
styles: the_scream.jpg
"""


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- help and info commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["validate"], ["plan"], ["cache"], ["cache", "info"], ["cache", "check"], ["cache", "clear"],
     ["plugins"], ["plugins", "list"], ["networks"], ["version"], ["report"]],
    ids=lambda c: "-".join(c) or "top",
)
def test_help_for_every_command(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


def test_help_lists_the_commands() -> None:
    out = invoke("--help").stdout
    for name in ("run", "validate", "plan", "cache", "plugins", "networks", "report"):
        assert re.search(rf"\b{name}\b", out), name


def test_version() -> None:
    result = invoke("version")
    assert result.exit_code == 0 and result.stdout.strip() == stylepipe.__version__


def test_plugins_list_shows_builtins_and_origin() -> None:
    result = invoke("plugins", "list")
    assert result.exit_code == 0, result.output
    for kind, name in [("loss term", "content"), ("loss term", "style"), ("loss term", "tv"),
                       ("style source", "image"), ("style source", "tiled"), ("style source", "blend")]:
        assert re.search(rf"^{kind}\s+{name}\s+built-in\s*$", result.stdout, re.M), (kind, name, result.stdout)


def test_networks_lists_both() -> None:
    result = invoke("networks")
    assert result.exit_code == 0, result.output
    assert re.search(r"^vgg19-gatys: ", result.stdout, re.M) and re.search(r"^vgg19: ", result.stdout, re.M)
    assert "vgg_normalised.pth" in result.stdout  # the offline default is available here


# --- validate ----------------------------------------------------------------------------------------


def test_validate_good_pipeline(project: Path) -> None:
    path = write(project, GOOD)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{path}: valid — 1 job(s), 3 loss term(s)"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        pytest.param("content: chelsea.jpg\nstyles: the_scream.jpg\ncolour: red\n", "3:1", "colour", id="unknown-key"),
        pytest.param("content: chelsea.jpg\nstyles: the_scream.jpg\nsize:\n  max_side: big\n", "4:13", "size.max_side",
                     id="wrong-type"),
        pytest.param("content:\n  - chelsea.jpg\n  - nosuch.jpg\nstyles: the_scream.jpg\n", "3:5", "content.1",
                     id="missing-content-file"),
        pytest.param("content: chelsea.jpg\nstyles:\n  - source: nosuch\n    path: the_scream.jpg\n", "3:13", "styles.0.source",
                     id="unknown-style-source"),
        pytest.param("content: chelsea.jpg\nstyles:\n  - path: the_scream.jpg\n    weigth: 2\n", "4:5", "styles.0.weigth",
                     id="unknown-style-parameter"),
        pytest.param("content: chelsea.jpg\nstyles: the_scream.jpg\n  bad: 1\n", "3:", "", id="invalid-yaml"),
    ],
)
def test_validate_bad_pipeline_exit_2_one_line(project: Path, text: str, where: str, key: str) -> None:
    path = write(project, text)
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}:{where}"), lines[0]
    if key:
        assert re.match(rf"error: {re.escape(str(path))}:\d+:\d+: {re.escape(key)}: ", lines[0]), lines[0]


def test_validate_missing_pipeline_file(tmp_path: Path) -> None:
    result = invoke("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [f"error: {tmp_path / 'nope.yaml'}: pipeline file not found"]


def test_validate_bad_set(project: Path) -> None:
    path = write(project, GOOD)
    result = invoke("validate", path, "--set", "optimize.steps=0")
    assert result.exit_code == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --set: optimize.steps: ")
    result = invoke("validate", path, "--set", "foo")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.stderr


def test_unknown_option_is_a_usage_error(project: Path) -> None:
    assert invoke("validate", write(project, GOOD), "--nope").exit_code == 2


def test_console_script_exit_codes(project: Path) -> None:
    """The installed script, as a user runs it: real process, real exit status, real streams."""
    assert SCRIPT.is_file(), SCRIPT
    path = write(project, "content: chelsea.jpg\nstyles: the_scream.jpg\ncolour: red\n")
    proc = subprocess.run([str(SCRIPT), "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert error_lines(proc.stderr) == [f"error: {path}:3:1: colour: Extra inputs are not permitted"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_console_script_missing_device_exit_3(project: Path) -> None:
    path = write(project, GOOD)
    proc = subprocess.run([str(SCRIPT), "run", str(path), "--set", "network.device=cuda"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "network.device is 'cuda' but no CUDA device is available" in proc.stderr
    assert proc.stdout == ""
    assert not (project / "outputs" / "chelsea__the_scream.jpg").exists()


# --- plan ----------------------------------------------------------------------------------------------


def test_plan_lists_jobs_then_shows_done(project: Path) -> None:
    shutil.copy(SAMPLES / "content" / "coffee.jpg", project / "coffee.jpg")
    path = write(project, "content: [chelsea.jpg, coffee.jpg]\nstyles: the_scream.jpg\ncache: {dir: c}\n")

    result = invoke("plan", path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(j["job"], Path(j["content"]).name, j["style"], j["status"], j["error"]) for j in data["jobs"]] == [
        (0, "chelsea.jpg", "the_scream", "todo", None), (1, "coffee.jpg", "the_scream", "todo", None)]
    assert [Path(j["output"]) for j in data["jobs"]] == [
        project / "outputs" / "chelsea__the_scream.jpg", project / "outputs" / "coffee__the_scream.jpg"]
    assert [(t["label"], t["cached"]) for t in data["style_targets"]] == [("the_scream", False)]
    assert not (project / "outputs").exists(), "a dry run writes no outputs"

    # finish job 1 by hand: an output and a sidecar holding its fingerprint
    plan = make_plan(load_pipeline(path))
    job = plan.jobs[1]
    job.output.parent.mkdir(parents=True)
    job.output.write_bytes(b"picture")
    side = sidecar_path(plan.output_dir, job.output)
    side.parent.mkdir()
    side.write_text(json.dumps({"fingerprint": job.fingerprint}))

    data = json.loads(invoke("plan", path, "--json").stdout)
    assert [j["status"] for j in data["jobs"]] == ["todo", "done"]
    forced = json.loads(invoke("plan", path, "--json", "--force").stdout)
    assert [j["status"] for j in forced["jobs"]] == ["todo", "todo"]
    # a setting that changes the output makes it todo again
    changed = json.loads(invoke("plan", path, "--json", "--set", "optimize.steps=7").stdout)
    assert [j["status"] for j in changed["jobs"]] == ["todo", "todo"]

    table = invoke("plan", path)
    assert table.exit_code == 0
    assert re.search(r"^0\s+todo\s+chelsea\.jpg\s+the_scream", table.stdout, re.M), table.stdout
    assert re.search(r"^1\s+done\s+coffee\.jpg\s+the_scream", table.stdout, re.M), table.stdout
    assert "style target the_scream: to compute" in table.stdout
    assert "1 to run, 1 already done" in table.stdout


def test_plan_bad_pipeline_exit_2(project: Path) -> None:
    result = invoke("plan", write(project, "content: nosuch.jpg\nstyles: the_scream.jpg\n"), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "content.0: file not found" in result.stderr


# --- run: environment problems -------------------------------------------------------------------------


def test_run_vgg19_offline_without_weights_exit_3(project: Path, monkeypatch) -> None:
    """torchvision's download is attempted once, fails (as offline), and the message lists the options."""
    import torchvision.models._api as tv_api

    calls: list[str] = []

    def offline(url: str, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("offline (simulated)")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(project / "torch-home"))
    path = write(project, GOOD)
    result = invoke("run", path, "--set", "network.name=vgg19", *TINY)
    assert result.exit_code == 3, result.output
    assert len(calls) == 1 and calls[0].endswith("vgg19-dcbb9e9d.pth"), calls
    errors = [line for line in error_lines(result.stderr) if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "network.weights" in errors[0] and "vgg19-gatys" in errors[0]
    assert not (project / "outputs" / "chelsea__the_scream.jpg").exists()


def test_run_vgg19_with_missing_local_weights_exit_3(project: Path) -> None:
    path = write(project, GOOD)
    result = invoke("run", path, "--set", "network.name=vgg19", "--set", "network.weights=nosuch.pth", *TINY)
    assert result.exit_code == 3, result.output
    # a path given on the command line is relative to the working directory, like -o
    assert "weights file not found" in result.stderr and str(Path.cwd() / "nosuch.pth") in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_on_absent_cuda_exit_3(project: Path) -> None:
    result = invoke("run", write(project, GOOD), "--set", "network.device=cuda:0")
    assert result.exit_code == 3, result.output
    assert "no CUDA device is available" in result.stderr
    assert result.stdout == ""


def test_run_bad_config_exit_2_and_nothing_written(project: Path) -> None:
    result = invoke("run", write(project, GOOD), "--set", "optimize.steps=-1")
    assert result.exit_code == 2
    assert not (project / "outputs").exists()


# --- cache -----------------------------------------------------------------------------------------------


def test_cache_commands_on_empty_and_populated_cache(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()

    info = invoke("cache", "info", "--dir", folder)
    assert info.exit_code == 0, info.output
    assert f"directory: {folder}" in info.stdout and "entries: 0" in info.stdout and "limit: 2048 MiB" in info.stdout
    assert invoke("cache", "check", "--dir", folder).stdout.strip() == "checked 0 entries, dropped 0 corrupt"
    assert invoke("cache", "clear", "--dir", folder).stdout.strip() == "removed 0 entries"

    with TargetCache(folder) as cache:
        cache.put("gram/v1/x", {"a": torch.ones(2)})
        cache.put("gram/v1/y", {"b": torch.zeros(3, 3)})
    assert "entries: 2" in invoke("cache", "info", "--dir", folder).stdout
    assert invoke("cache", "check", "--dir", folder).stdout.strip() == "checked 2 entries, dropped 0 corrupt"

    with diskcache.Cache(str(folder)) as raw:  # a damaged entry: check drops it and says so
        raw.set("gram/v1/bad", b"not a target")
    check = invoke("cache", "check", "--dir", folder)
    assert check.exit_code == 0
    assert check.stdout.strip() == "checked 3 entries, dropped 1 corrupt"
    assert "gram/v1/bad" in check.stderr  # the warning is a log line: stderr
    assert "entries: 2" in invoke("cache", "info", "--dir", folder).stdout

    assert invoke("cache", "clear", "--dir", folder).stdout.strip() == "removed 2 entries"
    assert "entries: 0" in invoke("cache", "info", "--dir", folder).stdout
    with TargetCache(folder) as cache:
        assert cache.get("gram/v1/x") is None


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("command", ["info", "check", "clear"])
def test_cache_commands_with_a_misspelt_dir_create_nothing(tmp_path: Path, command: str) -> None:
    result = invoke("cache", command, "--dir", tmp_path / "cahce")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [f"error: --dir {tmp_path / 'cahce'}: no such cache folder (nothing was created); check the path"]
    assert list(tmp_path.iterdir()) == []


def test_cache_info_changes_nothing_on_disk(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    with TargetCache(folder) as cache:
        cache.put("gram/v1/x", {"a": torch.ones(1000)})
    before = _tree(folder)
    info = invoke("cache", "info", "--dir", folder)
    assert info.exit_code == 0 and "entries: 1" in info.stdout
    assert re.search(r"^size: \d+\.\d\d MiB$", info.stdout, re.M), info.stdout
    assert _tree(folder) == before

    (folder / "cache.db").write_bytes(b"not a database" * 100)  # broken: reported, not moved aside
    before = _tree(tmp_path)
    info = invoke("cache", "info", "--dir", folder)
    assert info.exit_code == 0 and "database: unreadable" in info.stdout
    assert _tree(tmp_path) == before


def test_cache_info_without_a_pipeline_mentions_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("cache", "info")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == ["error: pipeline.yaml: pipeline file not found; name a pipeline file, "
                                          "or the cache folder with --dir DIR"]


def test_cache_info_uses_the_pipelines_cache_dir(project: Path) -> None:
    path = write(project, GOOD + "cache: {dir: my-cache}\n")
    result = invoke("cache", "info", path)
    assert result.exit_code == 0, result.output
    assert f"directory: {project / 'my-cache'}" in result.stdout


# --- run end to end: the real network at a tiny size -------------------------------------------------------


def test_run_end_to_end(project: Path) -> None:
    path = write(project, GOOD + "cache: {dir: cache}\n")
    out = project / "outputs"

    first = invoke("run", path, *TINY, "--json")
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(data, dict) and {"items", "style_targets", "summary"} <= set(data)
    assert data["summary"]["done"] == 1 and data["summary"]["failed"] == 0
    assert data["style_targets"] == {"computed": 1, "cache_hits": 0}
    (item,) = data["items"]
    assert item["status"] == "done" and item["steps"] == 2 and item["style"] == "the_scream"
    assert Path(item["output"]) == out / "chelsea__the_scream.jpg"
    assert (out / "chelsea__the_scream.jpg").is_file()
    assert sidecar_path(out, out / "chelsea__the_scream.jpg").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["items"] == data["items"] and report["summary"] == data["summary"]
    assert "1 job(s): 1 to run" in first.stderr  # logs go to stderr...
    assert "INFO" not in first.stdout and "job(s)" not in first.stdout  # ...never to stdout

    second = invoke("run", path, *TINY)
    assert second.exit_code == 0, second.output
    assert re.search(r"^skipped\s+chelsea\.jpg\s+the_scream\s", second.stdout, re.M), second.stdout
    assert re.search(r"^0 done, 1 skipped, 0 failed, 0 remaining in [\d.]+ s; style targets: 0 computed, 0 from cache$",
                     second.stdout, re.M), second.stdout
    assert "INFO" not in second.stdout and "already done" in second.stderr
    assert json.loads((out / "report.json").read_text())["summary"]["skipped"] == 1


def test_run_with_a_broken_picture_exit_1(project: Path) -> None:
    (project / "broken.jpg").write_bytes(b"this is not a jpeg")
    path = write(project, "content: broken.jpg\nstyles: the_scream.jpg\n")
    result = invoke("run", path, *TINY, "--report", project / "r.json")
    assert result.exit_code == 1, result.output
    assert re.search(r"^failed\s+broken\.jpg\s+the_scream\s", result.stdout, re.M), result.stdout
    assert "0 done, 0 skipped, 1 failed" in result.stdout
    report = json.loads((project / "r.json").read_text())
    (item,) = report["items"]
    assert item["status"] == "failed" and "broken.jpg" in item["error"]
    assert not (project / "outputs" / "broken__the_scream.jpg").exists()


# --- the first hour: options everywhere, plain logs -----------------------------------------------------


def test_help_shows_no_type_after_flags() -> None:
    out = invoke("run", "--help").stdout
    assert "<bool>" not in out and re.search(r"^\s+--force\s+redo outputs", out, re.M), out


def test_verbose_works_after_the_subcommand(project: Path) -> None:
    path = write(project, GOOD)
    result = invoke("validate", path, "-v")
    assert result.exit_code == 0, result.output


def test_networks_says_whether_weights_are_here() -> None:
    out = invoke("networks").stdout
    assert re.search(r"^    weights: available — .*vgg_normalised\.pth \(sha256 verified\)$", out, re.M), out


def test_plan_takes_runs_options_and_previews_exactly(project: Path) -> None:
    shutil.copy(SAMPLES / "content" / "coffee.jpg", project / "coffee.jpg")
    shutil.copy(SAMPLES / "styles" / "starry_night.jpg", project / "starry_night.jpg")
    path = write(project, "content: [chelsea.jpg, coffee.jpg]\nstyles: [the_scream.jpg, starry_night.jpg]\n")
    result = invoke("plan", path, "-o", project / "elsewhere", "--max-jobs", "3", "--json")
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert [j["status"] for j in jobs].count("todo") == 3 and [j["status"] for j in jobs].count("later") == 1
    assert all(Path(j["output"]).parent == project / "elsewhere" for j in jobs)
    shards = [{j["job"] for j in json.loads(invoke("plan", path, "--shard", f"{i}/2", "--json").stdout)["jobs"]} for i in (0, 1)]
    assert shards[0] | shards[1] == {0, 1, 2, 3} and not shards[0] & shards[1]
    assert invoke("validate", path, "-o", project / "x", "--shard", "0/2").exit_code == 0
    assert invoke("validate", path, "--max-jobs", "1").exit_code == 2, "validate runs nothing: a job bound means nothing to it"


def test_plain_log_of_a_run_with_a_failure_is_one_timestamped_line_per_event(project: Path) -> None:
    (project / "broken.jpg").write_bytes(b"this is not a jpeg")
    path = write(project, "content: [broken.jpg, chelsea.jpg]\nstyles: the_scream.jpg\n")
    proc = subprocess.run([str(SCRIPT), "run", str(path), *TINY], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (INFO|WARNING|ERROR) "
    assert lines and all(re.match(stamp, line) for line in lines), proc.stderr
    (failure,) = [line for line in lines if " ERROR " in line]
    assert re.search(r"ERROR failed: job 0 \(broken\.jpg × the_scream\): \S*broken\.jpg: not an image Pillow can read", failure), failure
    assert any(re.search(r"INFO done: chelsea__the_scream\.jpg", line) for line in lines), proc.stderr
    assert not any(line.endswith(" ") for line in lines)  # no padding to a terminal's width


# --- the second hour: the command line's rough edges ---------------------------------------------------


def test_version_flag_prints_the_version() -> None:
    from stylepipe import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == __version__


@pytest.mark.parametrize("command", [["report"], ["version"], ["networks"], ["plugins", "list"], ["cache", "info"]])
def test_every_command_takes_verbose(project: Path, command: list[str]) -> None:
    extra = [str(project)] if command == ["report"] else []
    result = invoke(*command, *extra, "-v")
    assert "No such option" not in result.output, result.output


def test_validate_checks_the_device_and_weights_like_run(project: Path, monkeypatch) -> None:
    path = write(project, GOOD)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = invoke("validate", path, "--set", "network.device=cuda")
    assert result.exit_code == 3, result.output
    assert "network.device is 'cuda'" in result.output
    missing = invoke("validate", path, "--set", f"network.weights={project / 'nope.pth'}")
    assert missing.exit_code == 3 and "nope.pth: file not found" in missing.output, missing.output


def test_each_command_shows_only_its_options_with_typed_metavars() -> None:
    validate = invoke("validate", "--help").stdout
    assert "--force" not in validate and "--max-jobs" not in validate
    run = invoke("run", "--help").stdout
    assert "--set KEY=VALUE" in run and "--executor [local|ray]" in run and "--shard I/N" in run
    assert "<list[str]>" not in run and "<str>" not in run


def test_a_bad_set_value_is_blamed_on_set(project: Path) -> None:
    path = write(project, GOOD, "ok.yaml")
    result = invoke("validate", path, "--set", "size.max_side=")
    assert result.exit_code == 2
    assert error_lines(result.stderr)[0].startswith("error: --set: size:"), result.stderr
    assert "ok.yaml:1:1" not in result.stderr


def test_did_you_mean_finds_nested_keys_in_the_file_and_after_set(project: Path) -> None:
    path = write(project, GOOD + "steps: 3\nmax_side: 40\n")
    lines = error_lines(invoke("validate", path).stderr)
    assert lines[0].endswith("steps: Extra inputs are not permitted (did you mean `optimize.steps`?)"), lines
    assert lines[1].endswith("max_side: Extra inputs are not permitted (did you mean `size.max_side`?)"), lines
    result = invoke("validate", write(project, GOOD), "--set", "max_side=300")
    assert result.exit_code == 2 and "(did you mean `size.max_side`?)" in result.stderr
