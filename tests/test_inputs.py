"""A hostile photo folder: every file becomes a job or a reported skip, nothing hangs, and every
message names its file once. Colour-managed input and tagged, metadata-carrying outputs."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image, ImageCms

from stylepipe.core.errors import InputError
from stylepipe.io.images import load_image, save_image

from conftest import sample

SCRIPT = Path(sys.executable).with_name("stylepipe")


def small(name: str, side: int = 48) -> Image.Image:
    picture = Image.open(sample(name)).convert("RGB")
    picture.thumbnail((side, side))
    return picture


def load_with_timeout(path: Path, seconds: float = 10.0):
    """load_image in a thread: a FIFO must be refused, not waited on."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = load_image(path)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"load_image({path}) hangs"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def swapped_primaries_profile() -> bytes:
    """sRGB's ICC profile with its red and blue primaries swapped: a wide-gamut stand-in whose
    effect no one could miss (pure red in it is blue in sRGB)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    data[red + 4 : red + 12], data[blue + 4 : blue + 12] = data[blue + 4 : blue + 12], data[red + 4 : red + 12]
    return bytes(data)


# --- reading --------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as info:
        load_with_timeout(fifo)
    assert info.value.cause == "is a named pipe (FIFO), not a file"


def test_a_dangling_link_says_so(tmp_path: Path) -> None:
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(InputError) as info:
        load_image(link)
    assert info.value.cause == "dangling symbolic link"


@pytest.mark.parametrize("content", [b"<html>not a picture</html>\n", b""])
def test_errors_name_the_file_once(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value).count("photo.jpg") == 1, str(info.value)
    assert "not an image Pillow can read" in str(info.value)


def test_truncated_file_names_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "half.jpg"
    path.write_bytes(sample("tubingen").read_bytes()[:3000])
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value).count("half.jpg") == 1 and "truncated or corrupt" in str(info.value)


def test_animated_gif_styles_its_first_frame_and_says_so(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image(path)
    assert loaded.tensor[:, 10, 10].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=0.02)
    assert loaded.note == "GIF with 3 frames: styled the first frame only"
    still = tmp_path / "still.gif"
    frames[1].save(still)
    assert load_image(still).note is None


@pytest.mark.parametrize("suffix, options", [(".heic", {"format": "HEIF"}), (".avif", {})])
def test_phone_formats_are_read(tmp_path: Path, suffix: str, options: dict) -> None:
    path = tmp_path / f"phone{suffix}"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path, quality=95, **options)
    tensor = load_image(path).tensor
    assert tensor.shape == (3, 30, 40)
    assert tensor[:, 15, 20].tolist() == pytest.approx([200 / 255, 30 / 255, 30 / 255], abs=0.03)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_embedded_icc_profile_is_converted_to_srgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "wide.png"
    Image.new(mode, (8, 8), (255, 0, 0, 255)[: len(mode)]).save(path, icc_profile=swapped_primaries_profile())
    red, green, blue = load_image(path).tensor[:, 4, 4].tolist()
    assert blue > 0.9 and red < 0.1 and green < 0.1  # the profile's "red" is sRGB blue


def test_outputs_are_tagged_srgb_and_carry_exif_only_when_given(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    save_image(torch.rand(3, 8, 8), tmp_path / "plain.jpg")
    save_image(torch.rand(3, 8, 8), tmp_path / "kept.jpg", exif=exif.tobytes())
    with Image.open(tmp_path / "plain.jpg") as plain, Image.open(tmp_path / "kept.jpg") as kept:
        profile = ImageCms.ImageCmsProfile(ImageCms.core.profile_frombytes(plain.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
        assert not plain.getexif() and kept.getexif()[0x010F] == "Camera Maker"


# --- a whole folder through the command line ----------------------------------------------------


def hostile_folder(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(sample("chelsea"), photos / "chelsea.jpg")
    frames = [small("coffee"), small("astronaut")]
    frames[0].save(photos / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    small("tubingen").save(photos / "phone_heic.heic", format="HEIF", quality=90)
    small("astronaut").save(photos / "phone_avif.avif", quality=90)
    (photos / "broken.jpg").write_bytes(sample("tubingen").read_bytes()[:3000])
    (photos / "notes.txt").write_text("not a picture\n")
    (photos / "album.jpg").mkdir()
    (photos / "gone.jpg").symlink_to(photos / "deleted.jpg")
    if hasattr(os, "mkfifo"):
        os.mkfifo(photos / "pipe.jpg")
    (photos / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (photos / "raw").mkdir()  # a plain sub-folder: not searched, not a file
    return photos


def test_a_hostile_folder_styles_every_picture_and_reports_every_other_file(tmp_path: Path) -> None:
    hostile_folder(tmp_path)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "content": ["photos"], "styles": [str(sample("the_scream"))],
        "size": {"max_side": 32}, "optimize": {"steps": 2},
        "output": {"dir": "out"}, "cache": {"dir": "cache"},
    }))
    run = subprocess.run([str(SCRIPT), "run", str(pipeline)], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 1, run.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by_name = {Path(item["content"]).name: item for item in report["items"]}
    done = {"chelsea.jpg", "anim.gif", "phone_heic.heic", "phone_avif.avif"}
    assert {name for name, item in by_name.items() if item["status"] == "done"} == done
    assert by_name["anim.gif"]["note"] == "GIF with 2 frames: styled the first frame only"
    failed = by_name["broken.jpg"]
    assert failed["status"] == "failed" and failed["error"].count("broken.jpg") == 1
    rejected = {Path(entry["path"]).name: entry["reason"] for entry in report["rejected"]}
    expected = {
        "notes.txt": "unsupported file type '.txt': not a picture format Pillow reads",
        "album.jpg": "is a folder, not a picture (sub-folders are not searched)",
        "gone.jpg": "dangling symbolic link",
    }
    if hasattr(os, "mkfifo"):
        expected["pipe.jpg"] = "is a named pipe (FIFO), not a file"
    assert rejected == expected
    assert report["summary"]["rejected"] == len(expected) and report["summary"]["done"] == 4
    for name in expected:  # one warning line per skipped file, naming it once
        lines = [line for line in run.stderr.splitlines() if name in line]
        assert len(lines) == 1 and lines[0].count(name) == 1, lines


def test_keep_metadata_copies_exif_without_the_orientation_already_applied(tmp_path: Path) -> None:
    from stylepipe.config.load import load_pipeline
    from stylepipe.running.runner import run_pipeline

    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90° to view
    (tmp_path / "photos").mkdir()
    small("chelsea", 64).save(tmp_path / "photos" / "cat.jpg", exif=exif.tobytes())  # stored 64×43, shown 43×64
    for keep in (True, False):
        out = tmp_path / f"out-{keep}"
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(yaml.safe_dump({
            "content": ["photos"], "styles": [str(sample("the_scream"))], "size": {"max_side": 32},
            "optimize": {"steps": 1}, "output": {"dir": str(out), "keep_metadata": keep}, "cache": {"dir": "cache"}}))
        assert run_pipeline(load_pipeline(pipeline)).exit_code == 0
        with Image.open(out / "cat__the_scream.jpg") as styled:
            assert styled.height > styled.width  # upright
            tags = styled.getexif()
            assert (tags.get(0x010F), tags.get(0x0112)) == (("Camera Maker", None) if keep else (None, None))
