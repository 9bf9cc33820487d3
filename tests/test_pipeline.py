"""End to end through the runner, on real pictures with the real network at small sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from stylepipe.config.load import load_pipeline
from stylepipe.core.postprocess import rgb_to_ycbcr
from stylepipe.io.images import load_image
from stylepipe.running.runner import run_pipeline
from stylepipe.targets.cache import TargetCache

from conftest import CONTENT, sample

FAST = {"size": {"max_side": 40}, "optimize": {"steps": 4}}


def write_pipeline(folder: Path, **settings) -> Path:
    data = {"cache": {"dir": str(folder / "cache")}, "output": {"dir": str(folder / "out")}, **FAST}
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def report_of(path: Path) -> dict:
    return json.loads(path.read_text())


def test_style_targets_are_computed_once_then_cached_then_outputs_skipped(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, content=[str(photo_dir)], styles=[str(sample("starry_night"))])

    first = run_pipeline(load_pipeline(pipeline))
    data = report_of(tmp_path / "out" / "report.json")
    assert data["style_targets"] == {"computed": 1, "cache_hits": 0}
    assert data["summary"]["done"] == 4 and first.exit_code == 0
    for item in data["items"]:
        assert item["status"] == "done" and Path(item["output"]).is_file()
        assert set(item["loss"]) >= {"content", "style", "total"} and item["seconds"] > 0

    second = run_pipeline(load_pipeline(pipeline), output_dir=tmp_path / "out2")
    assert second.targets_computed == 0 and second.targets_cache_hits >= 1
    assert report_of(tmp_path / "out2" / "report.json")["summary"]["done"] == 4

    third = run_pipeline(load_pipeline(pipeline))
    data = report_of(tmp_path / "out" / "report.json")
    assert [item["status"] for item in data["items"]] == ["skipped"] * 4
    assert third.exit_code == 0 and third.targets_computed == 0

    forced = run_pipeline(load_pipeline(pipeline), force=True)
    assert forced.count("done") == 4


def test_changed_settings_redo_only_what_they_affect(tmp_path, photo_dir):
    pipeline = write_pipeline(tmp_path, content=[str(photo_dir)], styles=[str(sample("shipwreck"))])
    run_pipeline(load_pipeline(pipeline))
    (photo_dir / "coffee.jpg").write_bytes((photo_dir / "chelsea.jpg").read_bytes())  # one input changed
    again = run_pipeline(load_pipeline(pipeline))
    assert sorted(item.status for item in again.items) == ["done", "skipped", "skipped", "skipped"]
    steps = run_pipeline(load_pipeline(pipeline, ["optimize.steps=3"]))
    assert steps.count("done") == 4


def test_one_corrupt_picture_fails_only_its_own_job(tmp_path, photo_dir):
    broken = photo_dir / "broken.jpg"
    broken.write_bytes(sample("tubingen").read_bytes()[:3000])  # a JPEG cut short
    pipeline = write_pipeline(tmp_path, content=[str(photo_dir)], styles=[str(sample("the_scream"))])

    result = run_pipeline(load_pipeline(pipeline))
    assert result.exit_code == 1
    data = report_of(tmp_path / "out" / "report.json")
    failed = [item for item in data["items"] if item["status"] == "failed"]
    assert len(failed) == 1 and data["summary"]["done"] == 4
    assert "broken.jpg" in failed[0]["error"] and "truncated" in failed[0]["error"]
    assert failed[0]["output"] is None
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())
    assert outputs == sorted([f"{p.stem}__the_scream.jpg" for p in CONTENT] + ["report.html", "report.json"])
    assert not list((tmp_path / "out").rglob("*.part"))


def test_a_broken_style_fails_its_jobs_and_not_the_others(tmp_path):
    bad_style = tmp_path / "bad_style.png"
    bad_style.write_bytes(b"not a png at all")
    pipeline = write_pipeline(tmp_path, content=[str(sample("chelsea"))], styles=[str(sample("starry_night")), str(bad_style)])
    result = run_pipeline(load_pipeline(pipeline))
    statuses = {item.style: item for item in result.items}
    assert statuses["starry_night"].status == "done"
    assert statuses["bad_style"].status == "failed" and "bad_style.png" in statuses["bad_style"].error
    assert result.exit_code == 1


def test_report_is_written_even_when_the_run_is_interrupted(tmp_path, photo_dir):
    # One job per batch, so "the first finished job" is also the first output on disk. With larger
    # batches a hard interrupt can leave a batch's later outputs out of the report; their
    # sidecars still match, so the next run skips them.
    pipeline = write_pipeline(tmp_path, content=[str(photo_dir)], styles=[str(sample("starry_night"))],
                              optimize={"batch_size": 1})

    class StopAfterOne:
        def __getattr__(self, name):
            return lambda *args: None

        def job_finished(self, job, item):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(pipeline), events=StopAfterOne())
    data = report_of(tmp_path / "out" / "report.json")
    assert data["summary"]["done"] == 1
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 1
    resumed = run_pipeline(load_pipeline(pipeline))  # picks up where it stopped
    assert sorted(item.status for item in resumed.items) == ["done", "done", "done", "skipped"]


def test_corrupt_cache_entry_is_recomputed_with_a_warning(tmp_path):
    pipeline = write_pipeline(tmp_path, content=[str(sample("coffee"))], styles=[str(sample("shipwreck"))])
    run_pipeline(load_pipeline(pipeline))
    import diskcache

    with diskcache.Cache(str(tmp_path / "cache")) as raw:
        (key,) = list(raw.iterkeys())
        raw.set(key, b"SPTC\x01" + b"\x00" * 40)
    again = run_pipeline(load_pipeline(pipeline), force=True)
    assert again.targets_computed == 1 and again.count("done") == 1
    assert any(key in warning for warning in again.warnings)
    with TargetCache(tmp_path / "cache") as cache:
        assert cache.check().dropped == []  # the recomputed entry replaced the corrupt one


def test_palette_and_reconstruct_modes(tmp_path):
    palette = run_pipeline(load_pipeline(write_pipeline(tmp_path, mode="palette", styles=[str(sample("starry_night"))])))
    (item,) = palette.items
    assert item.status == "done" and item.content is None and item.loss["content"] is None
    assert load_image(item.output).tensor.shape[1:] == (25, 40)  # the style's aspect ratio at max_side 40

    rebuild = run_pipeline(load_pipeline(write_pipeline(tmp_path, mode="reconstruct", content=[str(sample("coffee"))],
                                                        output={"pattern": "{content}_{mode}.png", "format": "png"},
                                                        reconstruct={"side": "content", "layers": ["conv4_1"]})))
    (item,) = rebuild.items
    assert item.status == "done" and item.output.endswith("coffee_reconstruct-content.png")
    assert item.style is None and item.loss["style"] is None and item.layers == "conv4_1"


def test_reconstruct_sweep_low_layers_keep_the_pixels_high_layers_do_not(tmp_path):
    """The paper's Figure 1, small: content rebuilt from conv1_1 is near the photo, from conv5_1 far;
    style reconstructions differ from each other and from a palette of the same picture."""
    small = {"size": {"max_side": 40}, "optimize": {"steps": 20}, "output": {"format": "png"}}
    pipeline = write_pipeline(tmp_path, mode="reconstruct", content=[str(sample("coffee"))], styles=[str(sample("the_scream"))],
                              reconstruct={"side": "both", "layers": ["conv1_1", "conv5_1"]}, **small)
    report = run_pipeline(load_pipeline(pipeline))
    items = {(item.content is not None, item.layers): item for item in report.items}
    assert sorted(Path(item.output).name for item in report.items) == [
        "coffee__reconstruct-content__conv1_1.png", "coffee__reconstruct-content__conv5_1.png",
        "the_scream__reconstruct-style__conv1_1+conv5_1.png", "the_scream__reconstruct-style__conv1_1.png"]
    from stylepipe.core.geometry import resize

    photo = load_image(sample("coffee")).tensor
    error = {}
    for layer in ("conv1_1", "conv5_1"):
        rebuilt = load_image(items[(True, layer)].output).tensor
        error[layer] = (rebuilt - resize(photo, tuple(rebuilt.shape[1:]))).abs().mean().item()
    assert 3 * error["conv1_1"] < error["conv5_1"], error
    styles = [load_image(items[(False, key)].output).tensor for key in ("conv1_1", "conv1_1+conv5_1")]
    (tmp_path / "palette").mkdir()
    palette = run_pipeline(load_pipeline(write_pipeline(tmp_path / "palette", mode="palette", styles=[str(sample("the_scream"))], **small)))
    assert not torch.equal(styles[0], styles[1])
    assert not torch.equal(styles[1], load_image(palette.items[0].output).tensor)


def test_preserve_colors_keeps_the_photo_colours(tmp_path):
    pipeline = write_pipeline(tmp_path, content=[str(sample("chelsea"))], styles=[str(sample("starry_night"))],
                              postprocess={"preserve_colors": "ycbcr"}, output={"format": "png"})
    (item,) = run_pipeline(load_pipeline(pipeline)).items
    out = load_image(item.output).tensor
    from stylepipe.core.geometry import resize

    photo = resize(load_image(sample("chelsea")).tensor, tuple(out.shape[1:]))
    chroma_out, chroma_photo = rgb_to_ycbcr(out)[1:], rgb_to_ycbcr(photo)[1:]
    assert (chroma_out - chroma_photo).abs().mean() < 0.02


def test_a_hard_interrupt_still_writes_the_report_saying_why(tmp_path):
    from stylepipe.running.events import NullEvents

    class SecondCtrlC(NullEvents):
        def job_started(self, job):
            raise KeyboardInterrupt

    pipeline = write_pipeline(tmp_path, content=[str(sample("coffee"))], styles=[str(sample("the_scream"))])
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(pipeline), events=SecondCtrlC())
    data = report_of(tmp_path / "out" / "report.json")
    assert data["stopped"] == "interrupted (a second Ctrl-C)" and len(data["remaining"]) == 1


def test_skipped_items_keep_the_losses_of_their_sidecar(tmp_path):
    pipeline = write_pipeline(tmp_path, content=[str(sample("coffee"))], styles=[str(sample("the_scream"))])
    (done,) = run_pipeline(load_pipeline(pipeline)).items
    (skipped,) = run_pipeline(load_pipeline(pipeline)).items
    assert skipped.status == "skipped" and skipped.loss == done.loss and done.loss["style"] > 0


def test_progress_counts_only_the_jobs_this_run_will_do(tmp_path):
    from stylepipe.running.events import NullEvents
    from stylepipe.running.schedule import RunBounds

    class Recorder(NullEvents):
        def __init__(self):
            self.planned_calls, self.warnings = [], []

        def planned(self, total, todo):
            self.planned_calls.append((total, todo))

        def warning(self, message):
            self.warnings.append(message)

    events = Recorder()
    pipeline = write_pipeline(tmp_path, content=[str(sample("coffee")), str(sample("chelsea"))], styles=[str(sample("the_scream"))])
    report = run_pipeline(load_pipeline(pipeline), events=events, bounds=RunBounds(max_jobs=1))
    assert events.planned_calls == [(1, 1)] and events.warnings == ["--max-jobs 1: 1 job(s) left for a later run"]
    assert report.count("done") == 1 and len(report.remaining) == 1
