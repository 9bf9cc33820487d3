"""images.py on real sample pictures and on odd files made here with Pillow."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, JpegImagePlugin

from stylepipe.core.errors import InputError
from stylepipe.core.geometry import resize, target_size, tile
from stylepipe.io.hashing import sha256_file
from stylepipe.io.images import DEFAULT_MAX_INPUT_PIXELS, LoadedImage, load_image, save_image, to_pil

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PHOTO = SAMPLES / "content" / "chelsea.jpg"
PAINTING = SAMPLES / "styles" / "starry_night.jpg"
U8 = 1.0 / 255.0


def pixels(path: Path) -> np.ndarray:
    """What the loader must produce for an 8-bit RGB file: Pillow's own decode, scaled to [0, 1]."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def hwc(loaded: LoadedImage) -> np.ndarray:
    return loaded.tensor.permute(1, 2, 0).numpy()


def save(img: Image.Image, path: Path, **options: object) -> Path:
    img.save(path, **options)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims a size but holds no pixel data: cheap stand-in for a bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def png_rgb16(path: Path, array: np.ndarray) -> Path:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one)."""
    height, width, _ = array.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def cmyk_icc_profile() -> bytes:
    """A minimal ICC v2 CMYK printer profile (lut16 A2B0) with muted, paper-like inks."""
    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def node(c: int, m: int, y: int, k: int) -> bytes:
        lightness = (95 - 35 * c - 20 * m - 5 * y) * (1 - 0.9 * k)
        a, b = -40 * c + 60 * m, -45 * c - 5 * m + 80 * y
        return struct.pack(">HHH", round(lightness * 0xFF00 / 100), round((a + 128) * 256), round((b + 128) * 256))

    clut = b"".join(node((i >> 3) & 1, (i >> 2) & 1, (i >> 1) & 1, i & 1) for i in range(16))  # C slowest
    identity = struct.pack(">HH", 0, 0xFFFF)
    a2b0 = (
        b"mft2" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        + struct.pack(">HH", 2, 2) + identity * 4 + clut + identity * 3
    )
    text = b"test cmyk\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 2 + 1 + 67)
    wtpt = b"XYZ " + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"A2B0", a2b0)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    header = (
        struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"prtrCMYKLab "
        + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


# --- sha256_file / load_image on real files ----------------------------------------------------


def test_file_sha256_streams_large_files(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=(5 << 20) // 2, dtype=np.uint8).tobytes()
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("path", [PHOTO, PAINTING], ids=lambda p: p.name)
def test_load_real_jpeg(path: Path) -> None:
    loaded = load_image(str(path))
    expected = pixels(path)
    assert loaded.path == path
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.tensor.dtype == torch.float32
    assert loaded.tensor.shape == (3, *expected.shape[:2])
    np.testing.assert_allclose(hwc(loaded), expected, atol=1e-6)


def test_sha256_changes_with_bytes_not_name(tmp_path: Path) -> None:
    a = tmp_path / "a.jpg"
    b = tmp_path / "b.jpg"
    a.write_bytes(PHOTO.read_bytes())
    b.write_bytes(PHOTO.read_bytes())
    assert load_image(a).sha256 == load_image(b).sha256
    c = save(Image.open(PHOTO), tmp_path / "c.jpg", quality=50)
    assert load_image(c).sha256 != load_image(a).sha256


# --- colour modes ------------------------------------------------------------------------------


def test_greyscale_becomes_equal_rgb_channels(tmp_path: Path) -> None:
    grey = Image.open(PHOTO).convert("L")
    loaded = load_image(save(grey, tmp_path / "grey.png"))
    expected = np.asarray(grey, dtype=np.float32) / 255.0
    for channel in loaded.tensor:
        np.testing.assert_allclose(channel.numpy(), expected, atol=1e-6)


def test_bilevel_image(tmp_path: Path) -> None:
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    out = load_image(save(img, tmp_path / "bits.png")).tensor
    assert out[:, 0, 1].tolist() == [1.0, 1.0, 1.0]
    assert out[:, 0, 0].tolist() == [0.0, 0.0, 0.0]


def test_palette_with_transparency_goes_onto_white(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 200, 10, 30] + [0] * (254 * 3))  # index 0 black, index 1 red
    img.paste(1, (0, 0, 2, 4))
    path = save(img, tmp_path / "palette.png", transparency=0)
    assert Image.open(path).mode == "P"
    out = load_image(path).tensor
    np.testing.assert_allclose(out[:, 0, 0].numpy(), np.array([200, 10, 30]) * U8, atol=1e-6)
    assert torch.equal(out[:, :, 2:], torch.ones(3, 4, 2))  # transparent black became white


def test_palette_gif_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    img.paste(1, (0, 0, 4, 2))
    out = load_image(save(img, tmp_path / "anim.gif", transparency=0)).tensor
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(out[:, 3, 3].numpy(), [1.0, 1.0, 1.0])


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    array = np.zeros((2, 3, 4), dtype=np.uint8)
    array[0, 0] = (255, 0, 0, 0)  # fully transparent red → white
    array[0, 1] = (0, 0, 255, 255)  # opaque blue stays blue
    array[0, 2] = (0, 0, 0, 128)  # half-transparent black → mid grey
    path = save(Image.fromarray(array, "RGBA"), tmp_path / "alpha.png")
    out = load_image(path).tensor
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1].numpy(), [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 2].numpy(), [127 / 255] * 3, atol=1e-6)
    assert torch.equal(out[:, 1, :], torch.ones(3, 3))  # the zero (transparent) row


def test_greyscale_with_alpha(tmp_path: Path) -> None:
    img = Image.new("LA", (2, 1), (0, 255))
    img.putpixel((1, 0), (0, 0))
    out = load_image(save(img, tmp_path / "la.png")).tensor
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [0.0] * 3)
    np.testing.assert_allclose(out[:, 0, 1].numpy(), [1.0] * 3)


def test_rgba_sample_matches_manual_composite(tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).round().astype(np.uint8), (rgb.shape[0], 1))
    path = save(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), tmp_path / "fade.png")
    a = alpha[..., None] / 255.0
    expected = rgb / 255.0 * a + (1.0 - a)
    np.testing.assert_allclose(hwc(load_image(path)), expected, atol=1e-5)


def test_cmyk_jpeg_without_profile(tmp_path: Path) -> None:
    img = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    img.paste((255, 0, 0, 0), (0, 0, 8, 8))  # full cyan on the left
    path = save(img, tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path).tensor
    np.testing.assert_allclose(out[:, 4, 2].numpy(), [0.0, 1.0, 1.0], atol=3 * U8)
    np.testing.assert_allclose(out[:, 4, 13].numpy(), [1.0, 1.0, 1.0], atol=3 * U8)


def test_cmyk_jpeg_uses_embedded_icc_profile(tmp_path: Path) -> None:
    profile = cmyk_icc_profile()
    img = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    img.paste((255, 0, 0, 0), (0, 0, 8, 8))  # full cyan on the left, bare paper on the right
    path = save(img, tmp_path / "cmyk_icc.jpg", quality=100, icc_profile=profile)
    out = load_image(path).tensor
    with Image.open(path) as reread:
        managed = ImageCms.profileToProfile(
            reread, ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"), outputMode="RGB"
        )
    expected = torch.from_numpy(np.asarray(managed, dtype=np.float32) / 255.0).permute(2, 0, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    # The profile's muted cyan, not the naive formula's (0, 1, 1); paper stays white.
    cyan = out[:, 4, 2]
    assert cyan[0] < 0.05 and 0.5 < cyan[1] < 0.8 and 0.75 < cyan[2] < 0.95
    np.testing.assert_allclose(out[:, 4, 13].numpy(), [1.0, 1.0, 1.0], atol=3 * U8)


def test_cmyk_with_broken_profile_falls_back(tmp_path: Path) -> None:
    img = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    path = save(img, tmp_path / "cmyk_bad.jpg", quality=100, icc_profile=b"not really a profile" * 10)
    out = load_image(path).tensor
    assert torch.allclose(out, torch.ones_like(out), atol=2 * U8)


def test_16bit_greyscale_png_keeps_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 32768, 65000, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode in {"I;16", "I"}
    out = load_image(path).tensor
    np.testing.assert_allclose(out[0, 0].numpy(), values[0] / 65535.0, atol=1e-6)
    assert out[0, 0, 3] > 0.99 and abs(out[0, 0, 2].item() - 0.5) < 1e-3
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_16bit_big_endian_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 16384, 65535]], dtype=">u2")
    path = save(Image.frombytes("I;16B", (3, 1), values.tobytes()), tmp_path / "deep.tif")
    assert Image.open(path).mode == "I;16B"
    out = load_image(path).tensor
    np.testing.assert_allclose(out[1, 0].numpy(), values[0] / 65535.0, atol=1e-6)


def test_32bit_integer_greyscale(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.int32)
    path = save(Image.fromarray(values, "I"), tmp_path / "int.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_allclose(load_image(path).tensor[0, 0].numpy(), values[0] / 65535.0, atol=1e-6)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.25, 1.0], [0.0, 0.25, 1.0]), ([0.0, 2.0, 8.0], [0.0, 0.25, 1.0])],
    ids=["unit-range", "scaled-by-max"],
)
def test_float_greyscale(tmp_path: Path, values: list[float], expected: list[float]) -> None:
    path = save(Image.fromarray(np.array([values], dtype=np.float32), "F"), tmp_path / "float.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_allclose(load_image(path).tensor[2, 0].numpy(), expected, atol=1e-6)


def test_16bit_rgb_png(tmp_path: Path) -> None:
    values = np.array([[[65535, 0, 32768], [0, 65535, 0]]], dtype=np.uint16)
    path = png_rgb16(tmp_path / "rgb48.png", values)
    out = load_image(path).tensor  # Pillow reads 16-bit RGB as 8-bit "RGB": precision, not range, is lost
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [1.0, 0.0, 0.5], atol=1 * U8)
    np.testing.assert_allclose(out[:, 0, 1].numpy(), [0.0, 1.0, 0.0], atol=1e-6)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((20, 40, 3), dtype=np.uint8)  # stored landscape: 20 rows × 40 columns
    array[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = save(Image.fromarray(array), tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_image(path).tensor
    assert out.shape == (3, 40, 20)  # displayed portrait
    assert out[0, 2, 17] > 0.9 and out[1, 2, 17] < 0.1  # red block now top-right
    assert out[0, 2, 2] < 0.1 and out[0, 37, 2] < 0.1


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".webp", {"lossless": True}), (".tif", {}), (".bmp", {}), (".png", {})],
    ids=["webp", "tiff", "bmp", "png"],
)
def test_lossless_formats_round_trip(tmp_path: Path, suffix: str, options: dict[str, object]) -> None:
    source = Image.open(PAINTING).convert("RGB")
    path = save(source, tmp_path / f"copy{suffix}", **options)
    np.testing.assert_allclose(hwc(load_image(path)), np.asarray(source) / 255.0, atol=1e-6)


# --- failures ----------------------------------------------------------------------------------


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = PHOTO.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        load_image(path)
    assert info.value.path == path
    assert "half.jpg" in str(info.value)
    assert "truncated or corrupt" in info.value.cause


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(InputError) as info:
        load_image(path)
    assert info.value.cause.startswith("not an image Pillow can read")
    assert "notes.jpg" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError, match="not an image Pillow can read"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_image(tmp_path / "nowhere.jpg")
    assert info.value.cause == "file not found"
    assert info.value.path == tmp_path / "nowhere.jpg"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_image(tmp_path)
    assert info.value.cause == "is a folder, not a picture"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.jpg"
    path.write_bytes(PHOTO.read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(InputError) as info:
            load_image(path)
    finally:
        path.chmod(0o644)
    assert info.value.cause == "permission denied"


def test_permission_error_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(path, *args) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(InputError) as info:
        load_image(PHOTO)
    assert info.value.cause == "permission denied"


def test_pixel_limit(tmp_path: Path) -> None:
    width, height = Image.open(PHOTO).size
    with pytest.raises(InputError) as info:
        load_image(PHOTO, max_input_pixels=1000)
    cause = info.value.cause
    assert f"{width}×{height}" in cause
    assert "1000 pixels limit" in cause and "max_input_pixels" in cause
    assert load_image(PHOTO, max_input_pixels=width * height).tensor.shape == (3, height, width)


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    # The header claims 3000×3000 but there is no pixel data: decoding would fail as "corrupt".
    path = png_header_only(tmp_path / "claims.png", 3000, 3000)
    with pytest.raises(InputError, match=r"3000×3000 = 9\.0 MP, above the 1\.0 MP limit"):
        load_image(path, max_input_pixels=1_000_000)
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(path)


def test_decompression_bomb_header(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert "400.0 MP" in info.value.cause
    assert f"{DEFAULT_MAX_INPUT_PIXELS / 1e6:.1f} MP limit" in info.value.cause


def test_pillow_bomb_guard_is_reported_and_its_warning_silenced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warned = save(Image.new("RGB", (40, 40)), tmp_path / "warned.png")  # 1600 px: Pillow warns
    refused = save(Image.new("RGB", (50, 50)), tmp_path / "refused.png")  # 2500 px: Pillow refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(warned).tensor.shape == (3, 40, 40)
    with pytest.raises(InputError) as info:
        load_image(refused)
    assert "2500 pixels" in info.value.cause and "MAX_IMAGE_PIXELS" in info.value.cause


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "max_pixels", "expected"),
    [
        ((300, 451), 256, None, (170, 256)),  # landscape: width is the long side
        ((451, 300), 256, None, (256, 170)),  # portrait
        ((100, 50), 400, None, (400, 200)),  # upscales: the user asked for that size
        ((512, 512), None, None, (512, 512)),
        ((1000, 2000), None, 500_000, (500, 1000)),
        ((100, 200), None, 1_000_000, (100, 200)),  # a pixel budget never upscales
        ((1000, 2000), 1500, 500_000, (500, 1000)),  # both: the smaller result wins
        ((1000, 2000), 400, 500_000, (200, 400)),
        ((1, 10_000), None, 10, (1, 10)),  # extreme aspect ratio still fits the budget
        ((3, 5000), 10, None, (1, 10)),  # no side below 1
    ],
)
def test_target_size(
    size: tuple[int, int], max_side: int | None, max_pixels: int | None, expected: tuple[int, int]
) -> None:
    assert target_size(*size, max_side=max_side, max_pixels=max_pixels) == expected


def test_target_size_respects_budget_and_aspect() -> None:
    rng = np.random.default_rng(1)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 5000, size=2))
        budget = int(rng.integers(1, 4_000_000))
        h, w = target_size(height, width, max_pixels=budget)
        assert h * w <= max(budget, 1) and h >= 1 and w >= 1
        if min(h, w) >= 50:
            assert abs(h / w - height / width) / (height / width) < 0.05


@pytest.mark.parametrize("kwargs", [{"max_side": 0}, {"max_pixels": 0}, {"max_side": -5}])
def test_target_size_rejects_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        target_size(100, 100, **kwargs)


def test_resize_real_image() -> None:
    image = load_image(PHOTO).tensor
    out = resize(image, (64, 96))
    assert out.shape == (3, 64, 96) and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert abs(out.mean().item() - image.mean().item()) < 0.01  # brightness survives
    assert resize(image, tuple(image.shape[-2:])) is image


def test_resize_batch_matches_single() -> None:
    a = load_image(PHOTO).tensor[:, :128, :128]
    b = load_image(PAINTING).tensor[:, :128, :128]
    batch = resize(torch.stack([a, b]), (40, 50))
    assert batch.shape == (2, 3, 40, 50)
    assert torch.allclose(batch[1], resize(b, (40, 50)), atol=1e-6)


def test_resize_antialiases_and_clamps() -> None:
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(3, 64, 64)
    small = resize(checker, (8, 8))
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.02)  # no moiré, just grey
    up = resize(checker, (100, 100))  # bicubic overshoots at edges; must be clamped
    assert up.min() >= 0.0 and up.max() <= 1.0


def test_resize_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        resize(torch.zeros(4, 8, 8), (4, 4))
    with pytest.raises(ValueError):
        resize(torch.zeros(3, 8, 8), (0, 4))


def test_tile_repeats_the_picture() -> None:
    image = load_image(PAINTING).tensor[:, :50, :70]
    mosaic = tile(image, 3)
    assert mosaic.shape == (3, 150, 210)
    for row in range(3):
        for col in range(3):
            assert torch.equal(mosaic[:, row * 50 : (row + 1) * 50, col * 70 : (col + 1) * 70], image)
    assert tile(image, 1) is image
    with pytest.raises(ValueError):
        tile(image, 0)


# --- to_pil / save_image -----------------------------------------------------------------------


def test_to_pil_quantises_and_clamps() -> None:
    image = torch.tensor([[[0.5, -1.0]], [[1.5, 0.2]], [[0.0, 1.0]]])  # (3, 1, 2)
    pil = to_pil(image)
    assert pil.mode == "RGB" and pil.size == (2, 1)
    assert pil.getpixel((0, 0)) == (128, 255, 0)
    assert pil.getpixel((1, 0)) == (0, 51, 255)
    with pytest.raises(ValueError):
        to_pil(image.unsqueeze(0))


def test_save_png_is_exact(tmp_path: Path) -> None:
    image = load_image(PAINTING).tensor
    path = tmp_path / "deep" / "er" / "out.png"
    save_image(image, path, format="png")
    assert Image.open(path).format == "PNG"
    assert torch.equal(load_image(path).tensor, image)  # 8-bit source: exact
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpg", "JPEG"), ("JPEG", "JPEG"), ("webp", "WEBP")])
def test_save_lossy_round_trip(tmp_path: Path, fmt: str, pil_format: str) -> None:
    image = load_image(PHOTO).tensor
    path = tmp_path / f"out.{fmt.lower()}"
    save_image(image, path, format=fmt, quality=92)
    assert Image.open(path).format == pil_format
    back = load_image(path).tensor
    assert back.shape == image.shape
    assert (back - image).abs().mean() < 0.02


def test_jpeg_chroma_subsampling_follows_quality(tmp_path: Path) -> None:
    image = load_image(PHOTO).tensor
    save_image(image, tmp_path / "hi.jpg", quality=95)
    save_image(image, tmp_path / "lo.jpg", quality=75)
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "hi.jpg")) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(Image.open(tmp_path / "lo.jpg")) == 2  # 4:2:0
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size


@pytest.mark.parametrize(("fmt", "quality"), [("gif", 90), ("bmp", 90), ("jpg", 0), ("jpg", 101)])
def test_save_rejects_bad_arguments(tmp_path: Path, fmt: str, quality: int) -> None:
    with pytest.raises(ValueError):
        save_image(torch.zeros(3, 4, 4), tmp_path / "x", format=fmt, quality=quality)
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old contents")
    image = torch.rand(3, 16, 16)
    save_image(image, path, format="png")
    assert torch.allclose(load_image(path).tensor, image, atol=0.5 / 255 + 1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\xff\xd8\xff\xe0 half a jpeg")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.rand(3, 8, 8), tmp_path / "new.jpg")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jpg"
    save_image(load_image(PHOTO).tensor, path)
    before = path.read_bytes()

    def refuse(src: object, dst: object) -> None:
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save_image(torch.rand(3, 8, 8), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]


def test_interrupted_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_image(torch.rand(3, 8, 8), tmp_path / "out.png", format="png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quality", [90, 100])
def test_jpeg_of_a_busy_picture_saves(tmp_path: Path, quality: int) -> None:
    """Style transfer paints fine texture everywhere: worst case, noise, must still write as JPEG."""
    torch.manual_seed(0)
    out = tmp_path / "busy.jpg"
    save_image(torch.rand(3, 256, 256), out, "jpg", quality)
    with Image.open(out) as written:
        assert written.size == (256, 256) and written.format == "JPEG"


def test_a_big_photo_is_reduced_before_it_becomes_float32(tmp_path: Path) -> None:
    """Styled at 32 px, a 2400×1800 photo must never exist as full-size float32 (52 MB here)."""
    import tracemalloc

    photo = Image.open(PHOTO).convert("RGB").resize((2400, 1800))
    path = save(photo, tmp_path / "big.png")
    tracemalloc.start()
    try:
        small = load_image(path, fit=(32, None)).tensor
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB"
    assert tuple(small.shape) == (3, 48, 64)  # twice the final 24×32
    full = load_image(path).tensor
    final = target_size(1800, 2400, max_side=32)
    difference = (resize(small, final) - resize(full, final)).abs()
    assert difference.mean() < 0.005 and difference.max() < 0.04  # the same picture, to within rounding
