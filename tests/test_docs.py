"""The scheduling examples in the docs are checked for syntax, so users can paste them."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

SCHEDULING = (ROOT / "docs" / "scheduling.md").read_text()


def blocks(language: str, text: str = SCHEDULING) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_yaml_manifests_parse_and_are_kubernetes_objects():
    manifests = [yaml.safe_load(block) for block in blocks("yaml")]
    kinds = {m["kind"] for m in manifests}
    assert {"CronJob", "Job"} <= kinds
    cron = next(m for m in manifests if m["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "run"
    indexed = next(m for m in manifests if m["kind"] == "Job")
    assert indexed["spec"]["completionMode"] == "Indexed" and "--shard" in indexed["spec"]["template"]["spec"]["containers"][0]["command"][-1]


def _check_cron_field(value: str, low: int, high: int) -> None:
    for part in value.split(","):
        base, _, step = part.partition("/")
        assert not step or step.isdigit()
        if base == "*":
            continue
        start, _, end = base.partition("-")
        for number in filter(None, (start, end)):
            assert number.isdigit() and low <= int(number) <= high, value


def test_cron_line_has_five_valid_fields_and_a_stylepipe_command():
    (block,) = blocks("cron")
    line = block.strip()
    fields = line.split(None, 5)
    for value, (low, high) in zip(fields[:5], [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]):
        _check_cron_field(value, low, high)
    assert "stylepipe run" in fields[5]


def test_systemd_units_parse_with_the_sections_systemd_needs():
    service, timer = blocks("ini")
    parsed = []
    for unit in (service, timer):
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.optionxform = str
        parser.read_string(unit)
        parsed.append(parser)
    assert parsed[0]["Service"]["Type"] == "oneshot" and "stylepipe run" in parsed[0]["Service"]["ExecStart"]
    assert parsed[1]["Timer"]["OnCalendar"] and parsed[1]["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_calendar_expression(tmp_path):
    (timer,) = [b for b in blocks("ini") if "[Timer]" in b]
    calendar = re.search(r"OnCalendar=(.*)", timer).group(1)
    assert subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True).returncode == 0


def test_slurm_script_is_valid_bash():
    (script,) = blocks("bash")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "--shard" in script


def test_every_pipeline_key_has_a_row_in_the_readme_reference() -> None:
    """A key (or the mapping it sits in, as `losses.content`) is a row of README's pipeline.yaml reference."""
    from stylepipe.config.positions import _model_in
    from stylepipe.config.schema import PipelineConfig

    readme = (ROOT / "README.md").read_text()
    first_cells = re.findall(r"^\| (`[^|]*`) \|", readme, flags=re.M)
    rows = {key for cell in first_cells for key in re.findall(r"`([^`]+)`", cell)}

    def leaves(model, prefix: str = ""):
        for name, info in model.model_fields.items():
            inner = _model_in(info.annotation)
            if inner is None or name == "styles":  # a style's keys are its source's parameters
                yield prefix + name
            else:
                yield from leaves(inner, f"{prefix}{name}.")

    def documented(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:i]) in rows for i in range(1, len(parts) + 1))

    assert [key for key in leaves(PipelineConfig) if not documented(key)] == []
    assert {"output.format", "output.bit_depth", "output.dpi"} <= rows


def test_the_step_counts_the_readme_gives_for_make_run_are_the_defaults() -> None:
    from stylepipe.config.defaults import TRANSFER

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    stated = [int(a or b) for a, b in re.findall(r"`make run` uses (\d+)|`make run` \([^)]*?\b(\d+) L-BFGS steps", text)]
    assert len(stated) >= 2, stated
    assert set(stated) == {TRANSFER.steps}, stated
    assert "steps" not in yaml.safe_load((ROOT / "pipeline.yaml").read_text()).get("optimize", {})  # make run's pipeline
    example = re.search(r'"steps": (\d+),.*?"history": \{"step": \[[^\]]*?(\d+)\]', text, re.S)
    assert example and example[1] == example[2] == str(TRANSFER.steps), "the report example's curve ends at its steps"


def test_the_sample_log_is_in_time_order() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    stamps = re.findall(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\+00:00 (?:INFO|ERROR|WARNING)", text, re.M)
    assert len(stamps) >= 3 and stamps == sorted(stamps), stamps


def test_the_exceptions_docs_library_shows_are_the_ones_raised() -> None:
    from stylepipe import Stylizer

    text = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    shown = re.findall(r"^>>> (Stylizer\(\w+=\d+\))\n(\w+): (.{40})", text, re.M)
    assert len(shown) == 3, shown
    for call, name, start in shown:
        with pytest.raises(Exception) as info:
            eval(call, {"Stylizer": Stylizer})  # noqa: S307 - the docs' own examples
        assert (type(info.value).__name__, str(info.value)[:40]) == (name, start)
