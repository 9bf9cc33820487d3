"""Outputs fit for printing: 16-bit PNG and TIFF, the sRGB profile and a print resolution in every
format, written whole or not at all; and the same end to end through `stylepipe run`."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
import torch
import yaml
from PIL import Image, ImageCms
from typer.testing import CliRunner

from stylepipe.cli.app import app
from stylepipe.config.load import load_pipeline
from stylepipe.io.images import _save_options, _srgb_profile, load_image, save_image, to_pil
from stylepipe.plan.build import build_plan

from conftest import sample

#: A smooth ramp 1024 columns wide: 8 bits can hold 256 of its levels, 16 bits all of them.
RAMP = torch.linspace(0.0, 1.0, 1024).expand(3, 8, 1024).clone()


def png_levels(path: Path) -> np.ndarray:
    """(H, W, 3) of a PNG at its own bit depth (Pillow reads 16-bit RGB PNG as 8-bit)."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    assert info["bitdepth"] == 16 and info["planes"] == 3
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, 3)


def profile_name(icc: bytes | None) -> str:
    assert icc, "no ICC profile embedded"
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()


def distinct_levels(array: np.ndarray) -> list[int]:
    return [len(np.unique(array[..., c])) for c in range(3)]


# --- 16 bits, profile and resolution, format by format ----------------------------------------------


def test_16_bit_png_keeps_every_level_of_a_smooth_ramp_with_srgb_and_dpi(tmp_path: Path) -> None:
    path = tmp_path / "ramp.png"
    save_image(RAMP, path, "png", bit_depth=16, dpi=(300, 300))
    levels = png_levels(path)
    assert min(distinct_levels(levels)) == 1024 > 256
    assert np.array_equal(levels[0, :, 0], np.round(RAMP[0, 0].numpy() * 65535).astype(np.uint16))
    with Image.open(path) as img:  # what viewers and print drivers read
        assert profile_name(img.info.get("icc_profile")) == "sRGB built-in"
        assert tuple(round(v) for v in img.info["dpi"]) == (300, 300)
    assert os.listdir(tmp_path) == ["ramp.png"]


@pytest.mark.parametrize(("bit_depth", "dtype", "levels"), [(16, np.uint16, 1024), (8, np.uint8, 256)])
def test_tiff_holds_the_depth_asked_for_with_srgb_and_dpi(tmp_path: Path, bit_depth: int, dtype: type, levels: int) -> None:
    path = tmp_path / "ramp.tif"
    save_image(RAMP, path, "tif", bit_depth=bit_depth, dpi=(300, 300))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        array = page.asarray()
        tags = {tag.name: tag.value for tag in page.tags.values()}
    assert array.dtype == dtype and array.shape == (8, 1024, 3)
    assert min(distinct_levels(array)) == levels
    assert profile_name(tags["InterColorProfile"]) == "sRGB built-in"
    assert tags["XResolution"] == tags["YResolution"] == (300, 1) and tags["ResolutionUnit"] == 2  # inch
    with Image.open(path) as img:
        assert img.info["dpi"] == (300.0, 300.0) and profile_name(img.info.get("icc_profile")) == "sRGB built-in"


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_8_bit_formats_carry_a_print_resolution_when_given(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    save_image(RAMP, path, fmt, dpi=(240, 240))
    with Image.open(path) as img:
        assert tuple(round(v) for v in img.info["dpi"]) == (240, 240)
        assert profile_name(img.info.get("icc_profile")) == "sRGB built-in"


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_8_bit_outputs_without_a_resolution_are_the_bytes_they_always_were(tmp_path: Path, fmt: str, pil_format: str) -> None:
    image = load_image(sample("chelsea")).tensor
    path = tmp_path / f"out.{fmt}"
    save_image(image, path, fmt, 92)
    before = io.BytesIO()  # what save_image wrote before 16 bits and resolutions existed
    to_pil(image).save(before, format=pil_format, **_save_options(pil_format, 92), icc_profile=_srgb_profile())
    assert path.read_bytes() == before.getvalue()


def test_16_bit_png_keeps_the_photos_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    path = tmp_path / "out.png"
    save_image(RAMP, path, "png", exif=exif.tobytes(), bit_depth=16)
    with Image.open(path) as img:
        assert img.getexif().get(0x010F) == "TestCam"
    assert min(distinct_levels(png_levels(path))) > 256


@pytest.mark.parametrize(("fmt", "options", "message"), [
    ("jpg", {"bit_depth": 16}, "jpg holds 8 bits per channel; 16-bit output needs one of png, tiff"),
    ("webp", {"bit_depth": 16}, "webp holds 8 bits"),
    ("png", {"bit_depth": 12}, "bit_depth must be 8 or 16"),
    ("tiff", {"exif": b"Exif\0\0II*\0"}, "EXIF is not copied into tiff outputs"),
])
def test_combinations_a_format_cannot_hold_are_refused_before_any_file(tmp_path: Path, fmt: str, options: dict,
                                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_image(RAMP, tmp_path / f"out.{fmt}", fmt, **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_a_16_bit_write_that_fails_halfway_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               fmt: str) -> None:
    """Streamed through the one atomic writer: a disk that fills mid-picture leaves no half file."""

    def half_then_disk_full(handle: object, *args: object, **kwargs: object) -> None:
        target = handle if hasattr(handle, "write") else args[0]
        target.write(b"half a picture")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    if fmt == "png":
        monkeypatch.setattr(png.Writer, "write_packed", lambda self, handle, rows: half_then_disk_full(handle))
    else:
        monkeypatch.setattr(tifffile, "imwrite", half_then_disk_full)
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(b"the old picture")
    with pytest.raises(OSError, match="No space left"):
        save_image(RAMP, path, fmt, bit_depth=16)
    assert path.read_bytes() == b"the old picture" and os.listdir(tmp_path) == [path.name]


# --- the content photo's resolution -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "dpi", "expected"), [
    ("JPEG", (300, 300), (300, 300)), ("PNG", (300, 300), (300, 300)), ("TIFF", (240, 180), (240, 180)),
    ("JPEG", None, None), ("PNG", (0, 0), None),
])
def test_load_reads_the_photos_print_resolution(tmp_path: Path, fmt: str, dpi: tuple | None, expected: tuple | None) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    options = {"dpi": dpi} if dpi else {}
    Image.open(sample("chelsea")).convert("RGB").resize((64, 48)).save(path, format=fmt, **options)
    assert load_image(path).dpi == expected


# --- the pipeline: config to file, and resume -----------------------------------------------------------


def photo_with_dpi(folder: Path, dpi: int) -> Path:
    path = folder / "chelsea.jpg"
    Image.open(sample("chelsea")).save(path, quality=95, dpi=(dpi, dpi))
    return path


def write_pipeline(root: Path, **output: object) -> Path:
    photo_with_dpi(root, 300)
    shutil.copy(sample("the_scream"), root / "the_scream.jpg")
    data = {"content": "chelsea.jpg", "styles": "the_scream.jpg", "size": {"max_side": 64}, "optimize": {"steps": 3},
            "cache": {"dir": "cache"}, "output": {"dir": "out", "html": False, **output}}
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fingerprint(pipeline: Path, *overrides: str) -> str | None:
    return build_plan(load_pipeline(pipeline, overrides), weights_id="w").jobs[0].fingerprint


def test_bit_depth_and_dpi_are_in_the_resume_hash_and_their_defaults_change_nothing(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, format="png")
    plain = fingerprint(pipeline)
    assert fingerprint(pipeline, "output.bit_depth=8") == plain  # an upgrade redoes no finished picture
    sixteen, dpi = fingerprint(pipeline, "output.bit_depth=16"), fingerprint(pipeline, "output.dpi=300")
    assert len({plain, sixteen, dpi, fingerprint(pipeline, "output.dpi=150")}) == 4


runner = CliRunner()


def test_stylepipe_run_writes_a_16_bit_tiff_that_keeps_the_photos_dpi(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path, format="tif", bit_depth=16)
    out = tmp_path / "out" / "chelsea__the_scream.tiff"

    first = runner.invoke(app, ["run", str(pipeline), "--json"])
    assert first.exit_code == 0, first.output
    (item,) = json.loads(first.stdout)["items"]
    assert item["status"] == "done" and Path(item["output"]) == out
    assert item["steps"] == 3 and item["seconds"] > 0  # per picture: steps actually run, seconds
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        styled = page.asarray()
        tags = {tag.name: tag.value for tag in page.tags.values()}
    assert styled.dtype == np.uint16 and styled.shape[1:] == (64, 3)
    assert min(distinct_levels(styled)) > 256  # a real styled result, not 8 bits padded out
    assert profile_name(tags["InterColorProfile"]) == "sRGB built-in"
    assert tags["XResolution"] == (300, 1)  # kept from the photo
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["output"] == "tiff 16-bit"

    again = runner.invoke(app, ["run", str(pipeline), "--json"])
    assert json.loads(again.stdout)["summary"]["skipped"] == 1

    redone = runner.invoke(app, ["run", str(pipeline), "--json", "--set", "output.dpi=150"])
    assert json.loads(redone.stdout)["summary"]["done"] == 1, redone.output
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].tags["XResolution"].value == (150, 1)

    eight = runner.invoke(app, ["run", str(pipeline), "--json", "--set", "output.dpi=150", "--set", "output.bit_depth=8"])
    assert json.loads(eight.stdout)["summary"]["done"] == 1, eight.output
    assert tifffile.imread(out).dtype == np.uint8
