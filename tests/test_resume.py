"""What a resume hash and a cache key are made of: bytes and settings actually used, never places."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import stylepipe.running.runner as runner_module
from stylepipe.config.load import load_pipeline
from stylepipe.plan.build import build_plan
from stylepipe.running.runner import run_pipeline

from conftest import sample


def project(root: Path, **settings) -> Path:
    (root / "photos").mkdir(parents=True)
    shutil.copy(sample("chelsea"), root / "photos" / "chelsea.jpg")
    shutil.copy(sample("the_scream"), root / "the_scream.jpg")
    data = {"content": ["photos"], "styles": [{"source": "tiled", "path": "the_scream.jpg", "grid": 2}],
            "size": {"max_side": 32}, "optimize": {"steps": 2}, "output": {"dir": "out"}, "cache": {"dir": "cache"},
            **settings}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return root / "pipeline.yaml"


def test_the_resume_hash_records_the_precision_a_device_will_use(tmp_path: Path, monkeypatch) -> None:
    from stylepipe.core import device

    monkeypatch.setattr(device, "cpu_bf16_units", lambda *args: None)  # a CPU without bf16 units: fp32
    pipeline = project(tmp_path)
    on_cpu = build_plan(load_pipeline(pipeline), weights_id="w")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    on_gpu = build_plan(load_pipeline(pipeline), weights_id="w")
    assert (on_cpu.settings.precision, on_gpu.settings.precision) == ("fp32", "bf16")
    # an fp32 output made on a CPU is not the bf16 one a GPU would make: resuming redoes it
    assert on_cpu.jobs[0].fingerprint != on_gpu.jobs[0].fingerprint
    explicit = build_plan(load_pipeline(pipeline, ["optimize.precision=fp32"]), weights_id="w")
    assert explicit.jobs[0].fingerprint != on_gpu.jobs[0].fingerprint


def test_the_cache_key_and_resume_hash_ignore_where_the_files_are(tmp_path: Path) -> None:
    styles = [{"source": "tiled", "path": "the_scream.jpg", "grid": 2}, "the_scream.jpg"]  # `image` paths get resolved
    here = build_plan(load_pipeline(project(tmp_path / "a", styles=styles)), weights_id="w")
    there = build_plan(load_pipeline(project(tmp_path / "b" / "clone", styles=styles)), weights_id="w")
    assert len(here.jobs) == 2
    assert [job.fingerprint for job in here.jobs] == [job.fingerprint for job in there.jobs]
    (tmp_path / "b" / "clone" / "the_scream.jpg").write_bytes(sample("shipwreck").read_bytes())
    edited = build_plan(load_pipeline(tmp_path / "b" / "clone" / "pipeline.yaml"), weights_id="w")
    assert edited.jobs[0].fingerprint != here.jobs[0].fingerprint  # the bytes still count


def test_a_photo_changed_after_planning_fails_its_job_instead_of_a_lying_sidecar(tmp_path: Path, monkeypatch) -> None:
    pipeline = project(tmp_path)
    photo = tmp_path / "photos" / "chelsea.jpg"
    real_make_plan = runner_module.make_plan

    def plan_then_edit(*args, **kwargs):
        plan = real_make_plan(*args, **kwargs)
        photo.write_bytes(sample("coffee").read_bytes())  # another process replaces the photo
        return plan

    monkeypatch.setattr(runner_module, "make_plan", plan_then_edit)
    report = run_pipeline(load_pipeline(pipeline))
    (item,) = report.items
    assert item.status == "failed" and item.error == f"{photo}: changed while the run was going; run again to style the new version"
    assert not (tmp_path / "out" / "chelsea__the_scream-tiled2.jpg").exists()

    monkeypatch.undo()
    again = run_pipeline(load_pipeline(pipeline))
    assert [item.status for item in again.items] == ["done"]


def test_reports_and_sidecars_get_ordinary_file_permissions(tmp_path: Path) -> None:
    pipeline = project(tmp_path)
    run_pipeline(load_pipeline(pipeline))
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    out = tmp_path / "out"
    for path in [out / "report.json", out / "chelsea__the_scream-tiled2.jpg", *(out / ".stylepipe").glob("*.json")]:
        assert path.stat().st_mode & 0o777 == expected, path


def test_every_run_setting_is_declared_for_the_fingerprint() -> None:
    """A new RunSettings field must say whether it changes pictures: in neither list, no fingerprint."""
    from stylepipe.plan.resume import NOT_PICTURE_SETTINGS, PICTURE_SETTINGS, undeclared_settings
    from stylepipe.plan.run_settings import RunSettings

    assert undeclared_settings(RunSettings) == set()
    assert not set(PICTURE_SETTINGS) & set(NOT_PICTURE_SETTINGS), "a setting cannot both change pictures and not"


def test_an_undeclared_setting_is_refused(tmp_path: Path) -> None:
    import dataclasses

    from stylepipe.plan.resume import settings_digest, undeclared_settings
    from stylepipe.plan.run_settings import RunSettings

    plan = build_plan(load_pipeline(project(tmp_path)), weights_id="w")
    extended = dataclasses.make_dataclass("Extended", [("sharpen", float, 0.0)], bases=(RunSettings,), frozen=True)
    assert undeclared_settings(extended) == {"sharpen"}
    settings = extended(**{field.name: getattr(plan.settings, field.name) for field in dataclasses.fields(RunSettings)})
    with pytest.raises(TypeError, match=r"declare \['sharpen'\] in PICTURE_SETTINGS or NOT_PICTURE_SETTINGS"):
        settings_digest(settings, plan.terms, plan.sizing, None)
