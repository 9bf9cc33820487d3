"""Output names in any alphabet, end to end: two photos whose names share no ASCII letter make two outputs."""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image

from stylepipe.config.load import load_pipeline
from stylepipe.running.runner import run_pipeline

from conftest import sample


def test_photos_named_in_another_alphabet_make_distinct_outputs(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, source in (("猫.jpg", "chelsea"), ("犬.jpg", "coffee"), ("mon été 2024.jpg", "astronaut")):
        Image.open(sample(source)).convert("RGB").resize((40, 32)).save(photos / name)
    data = {"content": ["photos"], "styles": [str(sample("the_scream"))], "size": {"max_side": 32},
            "optimize": {"steps": 2}, "output": {"dir": "out", "html": False}, "cache": {"enabled": False}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    report = run_pipeline(load_pipeline(tmp_path / "pipeline.yaml"))
    assert [item.status for item in report.items] == ["done"] * 3
    assert sorted(p.name for p in (tmp_path / "out").glob("*.jpg")) == [
        "mon été 2024__the_scream.jpg", "犬__the_scream.jpg", "猫__the_scream.jpg"]
