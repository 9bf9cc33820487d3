"""Re-encode instead of repainting: each painting is kept at 16 bits, so a change of how outputs are
encoded or named re-encodes them, a change of what paints them repaints, and plan says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from stylepipe.cli.app import app
from stylepipe.config.load import load_pipeline
from stylepipe.io.images import load_image
from stylepipe.io.paintings import load_painting, save_painting
from stylepipe.running.runner import make_plan, run_pipeline

from conftest import CONTENT, sample


def five_photos(root: Path, **output) -> Path:
    """Five small photos (crops of the samples) and a pipeline at 32 px, 2 steps."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i in range(5):
        with Image.open(CONTENT[i % len(CONTENT)]) as img:
            img.convert("RGB").crop((i * 10, 0, i * 10 + 200, 150)).resize((48, 36)).save(photos / f"p{i}.png")
    data = {"content": ["photos"], "styles": [str(sample("the_scream"))], "size": {"max_side": 32},
            "optimize": {"steps": 2}, "output": {"dir": "out", "format": "jpg", "html": False, **output},
            "cache": {"dir": "cache"}}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return root / "pipeline.yaml"


def reasons(pipeline: Path, *overrides: str) -> list[tuple[str, str]]:
    result = CliRunner().invoke(app, ["plan", str(pipeline), "--json", *[a for o in overrides for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    return [(job["status"], job["reason"]) for job in json.loads(result.stdout)["jobs"]]


def test_a_kept_painting_reads_back_at_sixteen_bits(tmp_path: Path) -> None:
    image = Image.open(sample("chelsea")).convert("RGB").resize((40, 30))
    tensor = load_image(sample("chelsea")).tensor[:, :30, :40].clone()
    tensor[0, 0, 0] = 0.123456
    save_painting(tensor, tmp_path / "p.png")
    back = load_painting(tmp_path / "p.png")
    assert back.shape == tensor.shape and image.size == (40, 30)
    assert float((back - tensor).abs().max()) <= 0.5 / 65535 + 1e-7  # 16 bits, not 8 (1/510)


@pytest.mark.parametrize("change", [["output.quality=60"], ["output.format=png"], ["output.pattern={content}-{style}.{ext}"]])
def test_an_output_only_change_re_encodes_every_output_without_optimising(tmp_path: Path, change: list[str]) -> None:
    pipeline = five_photos(tmp_path)
    first = run_pipeline(load_pipeline(pipeline))
    assert [item.status for item in first.items] == ["done"] * 5
    assert all(item.steps > 0 and item.reason == "new" for item in first.items)
    kept = sorted((tmp_path / "out" / ".stylepipe" / "paintings").glob("*.png"))
    assert len(kept) == 5
    assert reasons(pipeline, *change) == [("re-encode", "output settings changed: re-encode")] * 5

    again = run_pipeline(load_pipeline(pipeline, change))
    assert [(item.status, item.steps, item.reencoded) for item in again.items] == [("done", 0, True)] * 5
    assert again.to_dict()["summary"]["reencoded"] == 5
    for item in again.items:
        painted = load_painting(kept[0].parent / f"{make_plan(load_pipeline(pipeline, change)).jobs[item.job].painting}.png")
        out = load_image(item.output).tensor
        assert out.shape == painted.shape and float((out - painted).abs().mean()) < 0.05  # the same picture, re-encoded
        assert item.loss == first.items[item.job].loss  # kept beside the painting
    if "format" in change[0]:
        assert all(Path(item.output).suffix == ".png" for item in again.items)
    # and now everything is done
    assert reasons(pipeline, *change) == [("done", None)] * 5


def test_a_painting_change_repaints_and_names_the_key_and_a_missing_painting_repaints(tmp_path: Path) -> None:
    pipeline = five_photos(tmp_path)
    run_pipeline(load_pipeline(pipeline))
    assert reasons(pipeline, "optimize.steps=3") == [("todo", "painting settings changed: optimize.steps")] * 5
    repainted = run_pipeline(load_pipeline(pipeline, ["optimize.steps=3"]))
    assert all(item.steps > 0 and not item.reencoded for item in repainted.items)
    assert all(item.reason == "painting settings changed: optimize.steps" for item in repainted.items)
    folder = tmp_path / "out" / ".stylepipe" / "paintings"
    assert len(list(folder.glob("*.png"))) == 5, "the 2-step paintings no job paints any more are cleaned up"

    for stored in folder.glob("*.png"):
        stored.unlink()
    assert reasons(pipeline, "optimize.steps=3", "output.quality=50") == [("todo", "the stored picture is missing")] * 5


def test_keep_painting_off_keeps_nothing_and_removes_what_was_kept(tmp_path: Path) -> None:
    pipeline = five_photos(tmp_path)
    run_pipeline(load_pipeline(pipeline))
    folder = tmp_path / "out" / ".stylepipe" / "paintings"
    assert len(list(folder.glob("*.png"))) == 5
    report = run_pipeline(load_pipeline(pipeline, ["output.keep_painting=false", "output.quality=70"]))
    assert all(item.steps > 0 and not item.reencoded for item in report.items)
    assert not list(folder.iterdir())
    assert np.asarray(Image.open(report.items[0].output)).shape == (24, 32, 3)


def test_a_photo_gone_before_its_re_encode_fails_its_own_job_only(tmp_path: Path, monkeypatch) -> None:
    import stylepipe.running.runner as runner_module

    pipeline = five_photos(tmp_path)
    run_pipeline(load_pipeline(pipeline))
    real_make_plan = runner_module.make_plan

    def plan_then_remove(*args, **kwargs):
        plan = real_make_plan(*args, **kwargs)
        (tmp_path / "photos" / "p0.png").unlink()  # another process removes a photo after planning
        return plan

    monkeypatch.setattr(runner_module, "make_plan", plan_then_remove)
    report = run_pipeline(load_pipeline(pipeline, ["output.format=webp"]))
    statuses = sorted((item.job, item.status) for item in report.items)
    assert statuses == [(0, "failed")] + [(i, "done") for i in range(1, 5)]
    failed = next(item for item in report.items if item.status == "failed")
    assert "cannot re-encode" in failed.error and "p0.png" in failed.error
