"""Where a run's time goes: seconds per stage (load, targets, optimise, save) per item, summed in
the summary, shown on the report page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from stylepipe.config.load import load_pipeline
from stylepipe.report.page import page_for_folder
from stylepipe.report.record import STAGES
from stylepipe.running.runner import run_pipeline

from conftest import sample


def test_the_report_gives_each_item_its_stage_times_and_the_summary_their_sums(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        shutil.copy(sample(name), photos / f"{name}.jpg")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"content": [str(photos)], "styles": [str(sample("the_scream"))],
                                        "size": {"max_side": 32}, "optimize": {"steps": 2},
                                        "cache": {"dir": str(tmp_path / "cache")}, "output": {"dir": str(tmp_path / "out")}}))
    assert run_pipeline(load_pipeline(pipeline)).exit_code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    items = report["items"]
    assert len(items) == 2
    for item in items:
        stages = item["stages"]
        assert tuple(stages) == STAGES and all(value >= 0 for value in stages.values())
        assert stages["optimise"] > 0 and stages["load"] > 0 and stages["save"] > 0
        # the item's own seconds are its share of the batch plus its save: the stages after loading
        assert stages["targets"] + stages["optimise"] + stages["save"] == pytest.approx(item["seconds"], abs=2e-3)
    summed = report["summary"]["stages"]
    assert tuple(summed) == STAGES
    for stage in ("load", "optimise", "save"):
        assert summed[stage] == pytest.approx(sum(item["stages"][stage] for item in items), abs=2e-3)
    # the style's targets, computed once for both photos, count under `targets` too
    assert summed["targets"] > sum(item["stages"]["targets"] for item in items)
    html = page_for_folder(tmp_path / "out").read_text()
    assert "<dt>stages</dt>" in html and f"optimise {summed['optimise']:.1f} s" in html
