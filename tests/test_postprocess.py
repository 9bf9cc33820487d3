"""postprocess.py: colour spaces and luminance-only transfer on a real photo and painting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylepipe.core.geometry import resize
from stylepipe.core.postprocess import (
    clamp01,
    lab_to_rgb,
    postprocess,
    preserve_colors,
    rgb_to_lab,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from stylepipe.io.images import load_image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SIZE = (160, 240)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return resize(load_image(SAMPLES / "content" / "chelsea.jpg").tensor, SIZE)


@pytest.fixture(scope="module")
def painting() -> torch.Tensor:
    return resize(load_image(SAMPLES / "styles" / "starry_night.jpg").tensor, SIZE)


def rgb(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(3, 1, 1)


def test_clamp01() -> None:
    image = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.7]).expand(3, 1, 5)
    assert clamp01(image)[0, 0].tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0, 1.0])


@pytest.mark.parametrize(
    ("forward", "backward"), [(rgb_to_ycbcr, ycbcr_to_rgb), (rgb_to_lab, lab_to_rgb)], ids=["ycbcr", "lab"]
)
def test_round_trip_on_real_image(photo: torch.Tensor, forward, backward) -> None:  # noqa: ANN001
    back = backward(forward(photo))
    assert back.shape == photo.shape and back.dtype == torch.float32
    assert (back - photo).abs().max() < 1e-4


def test_ycbcr_known_values() -> None:
    assert rgb_to_ycbcr(rgb(1, 1, 1)).flatten().tolist() == pytest.approx([1.0, 0.5, 0.5], abs=1e-6)
    assert rgb_to_ycbcr(rgb(0.25, 0.25, 0.25)).flatten().tolist() == pytest.approx([0.25, 0.5, 0.5], abs=1e-6)
    # BT.601: Y = 0.299 R + 0.587 G + 0.114 B; pure red has Cr at its maximum.
    assert rgb_to_ycbcr(rgb(1, 0, 0)).flatten().tolist() == pytest.approx([0.299, 0.331264, 1.0], abs=1e-5)
    assert rgb_to_ycbcr(rgb(0, 0, 1)).flatten().tolist() == pytest.approx([0.114, 1.0, 0.418688], abs=1e-5)


def test_ycbcr_stays_in_unit_range(photo: torch.Tensor, painting: torch.Tensor) -> None:
    for image in (photo, painting):
        ycc = rgb_to_ycbcr(image)
        assert ycc.min() >= -1e-6 and ycc.max() <= 1 + 1e-6


@pytest.mark.parametrize(
    ("colour", "lab"),
    [
        ((1, 1, 1), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((1, 0, 0), (53.24, 80.09, 67.20)),
        ((0, 1, 0), (87.73, -86.18, 83.18)),
        ((0, 0, 1), (32.30, 79.19, -107.86)),
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),
    ],
    ids=["white", "black", "red", "green", "blue", "grey"],
)
def test_lab_known_values(colour: tuple[float, float, float], lab: tuple[float, float, float]) -> None:
    assert rgb_to_lab(rgb(*colour)).flatten().tolist() == pytest.approx(lab, abs=0.01)


def test_lab_of_white_is_exact() -> None:
    assert rgb_to_lab(rgb(1, 1, 1)).flatten().tolist() == pytest.approx([100.0, 0.0, 0.0], abs=1e-4)


def test_conversions_accept_batches(photo: torch.Tensor, painting: torch.Tensor) -> None:
    batch = torch.stack([photo, painting])
    for convert in (rgb_to_ycbcr, ycbcr_to_rgb, rgb_to_lab, lab_to_rgb):
        out = convert(batch)
        assert out.shape == batch.shape
        assert torch.allclose(out[1], convert(painting), atol=1e-5)


@pytest.mark.parametrize("convert", [rgb_to_ycbcr, ycbcr_to_rgb, rgb_to_lab, lab_to_rgb])
def test_conversions_reject_wrong_shapes(convert) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        convert(torch.zeros(4, 8, 8))


@pytest.mark.parametrize("space", ["ycbcr", "lab"])
def test_preserve_colors_mixes_luminance_and_chroma(photo: torch.Tensor, painting: torch.Tensor, space: str) -> None:
    forward, backward = (rgb_to_ycbcr, ycbcr_to_rgb) if space == "ycbcr" else (rgb_to_lab, lab_to_rgb)
    out = preserve_colors(painting, photo, space)  # the painting plays the stylised result
    assert out.shape == photo.shape and out.min() >= 0.0 and out.max() <= 1.0
    # Where the recombined colour lies inside the RGB cube, nothing was clipped: exact match.
    mixed = backward(torch.cat([forward(painting)[:1], forward(photo)[1:]]))
    in_gamut = ((mixed >= 0) & (mixed <= 1)).all(dim=0)
    assert in_gamut.float().mean() > 0.5
    got, style, content = forward(out), forward(painting), forward(photo)
    tol = 1e-4 if space == "ycbcr" else 1e-2
    assert (got[0] - style[0])[in_gamut].abs().max() < tol
    assert (got[1:] - content[1:])[:, in_gamut].abs().max() < tol
    # Everywhere, the result is far closer to the photo's colours than to the painting's.
    assert (got[1:] - content[1:]).abs().mean() < 0.25 * (style[1:] - content[1:]).abs().mean()
    assert (got[0] - style[0]).abs().mean() < 0.25 * (got[0] - content[0]).abs().mean()


def test_preserve_colors_of_grey_photo_gives_grey(painting: torch.Tensor) -> None:
    grey = rgb_to_ycbcr(painting)[:1].expand(3, -1, -1).contiguous()
    out = preserve_colors(painting, grey)
    assert torch.allclose(out[0], out[1], atol=1e-5) and torch.allclose(out[1], out[2], atol=1e-5)


def test_preserve_colors_is_identity_for_same_image(photo: torch.Tensor) -> None:
    assert torch.allclose(preserve_colors(photo, photo, "ycbcr"), photo, atol=1e-5)
    assert torch.allclose(preserve_colors(photo, photo, "lab"), photo, atol=1e-4)


def test_preserve_colors_resizes_content(photo: torch.Tensor, painting: torch.Tensor) -> None:
    big_photo = load_image(SAMPLES / "content" / "chelsea.jpg").tensor
    out = preserve_colors(painting, big_photo)
    expected = preserve_colors(painting, resize(big_photo, SIZE))
    assert out.shape == painting.shape
    assert torch.allclose(out, expected, atol=1e-6)


def test_preserve_colors_batches(photo: torch.Tensor, painting: torch.Tensor) -> None:
    stylised = torch.stack([painting, painting.flip(-1)])
    out = preserve_colors(stylised, photo)  # one content for the whole batch
    assert out.shape == (2, 3, *SIZE)
    assert torch.allclose(out[1], preserve_colors(painting.flip(-1), photo), atol=1e-6)
    paired = preserve_colors(stylised, torch.stack([photo, photo.flip(-1)]))
    assert torch.allclose(paired[1], preserve_colors(painting.flip(-1), photo.flip(-1)), atol=1e-6)
    with pytest.raises(ValueError):
        preserve_colors(stylised, torch.stack([photo] * 3))


def test_preserve_colors_rejects_unknown_space(photo: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="colour space"):
        preserve_colors(photo, photo, "hsv")  # type: ignore[arg-type]


def test_postprocess_clamps_and_preserves(photo: torch.Tensor, painting: torch.Tensor) -> None:
    overshoot = painting * 1.4 - 0.2
    plain = postprocess(overshoot)
    assert torch.equal(plain, clamp01(overshoot))
    kept = postprocess(overshoot, photo, preserve="lab")
    assert torch.allclose(kept, preserve_colors(clamp01(overshoot), photo, "lab"))
    assert torch.equal(postprocess(overshoot, photo), plain)  # content alone changes nothing
    with pytest.raises(ValueError, match="content"):
        postprocess(overshoot, preserve="ycbcr")
