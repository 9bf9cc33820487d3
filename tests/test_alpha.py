"""Transparency: formats with an alpha channel keep the photo's, applied to the painted RGB; jpg says it flattened it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from stylepipe.config.load import load_pipeline
from stylepipe.running.runner import run_pipeline

from conftest import sample


def rgba_photo(path: Path) -> np.ndarray:
    """A 40 × 32 photo, transparent on its left quarter and half-transparent in a band."""
    rgb = np.asarray(Image.open(sample("chelsea")).convert("RGB").resize((40, 32)))
    alpha = np.full((32, 40), 255, np.uint8)
    alpha[:, :10] = 0
    alpha[8:16, :] = 128
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return alpha


def run(tmp_path: Path, **output) -> tuple[Path, object]:
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    alpha = rgba_photo(photos / "cut.png")
    data = {"content": ["photos"], "styles": [str(sample("the_scream"))], "size": {"max_side": 40},
            "optimize": {"steps": 2}, "output": {"dir": "out", "html": False, **output}, "cache": {"enabled": False}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data))
    (item,) = run_pipeline(load_pipeline(tmp_path / "pipeline.yaml")).items
    assert item.status == "done", item.error
    return Path(item.output), (alpha, item)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_an_rgba_photo_keeps_its_alpha_in_png_and_webp(tmp_path: Path, fmt: str) -> None:
    output, (alpha, item) = run(tmp_path, format=fmt, **({"quality": 100} if fmt == "webp" else {}))
    with Image.open(output) as out:
        assert out.mode == "RGBA"
        kept = np.asarray(out.getchannel("A"))
    assert np.abs(kept.astype(int) - alpha).max() <= 1
    assert item.note is None


def test_sixteen_bit_png_and_tiff_keep_the_alpha_too(tmp_path: Path) -> None:
    output, (alpha, _) = run(tmp_path, format="tiff", bit_depth=16)
    pixels = tifffile.imread(output)
    assert pixels.shape == (32, 40, 4) and pixels.dtype == np.uint16
    assert np.abs(pixels[..., 3] / 257.0 - alpha).max() <= 1


def test_a_jpg_output_flattens_onto_white_and_says_so(tmp_path: Path) -> None:
    output, (_, item) = run(tmp_path, format="jpg")
    with Image.open(output) as out:
        assert out.mode == "RGB"
    assert item.note and "transparency is flattened onto white" in item.note and "jpg" in item.note
