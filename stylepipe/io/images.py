"""Pictures in and out: decode any file Pillow reads into an RGB tensor, resize, save atomically.

This is the edge where files become tensors. Every problem with an input file becomes an
`InputError(path, cause)`, so one bad picture fails only the jobs that need it. Outputs are
8-bit jpg/png/webp through Pillow, 16-bit PNG through pypng and TIFF through tifffile (Pillow
writes neither 16-bit RGB), all tagged sRGB and streamed through the one atomic writer.
"""

from __future__ import annotations

import io
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import numpy as np
import PIL.Image
import png
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..core.errors import InputError
from ..core.geometry import target_size
from .atomic import write_atomic
from .files import open_regular
from .hashing import sha256_hex

pillow_heif: ModuleType | None
try:  # HEIC/HEIF (phone photos); AVIF is native in Pillow >= 11.3
    import pillow_heif
except ImportError:  # pragma: no cover - a declared dependency; without it .heic files fail their own jobs
    pillow_heif = None
if pillow_heif is not None:
    pillow_heif.register_heif_opener()

DEFAULT_MAX_INPUT_PIXELS = 178_956_970  # Pillow's own error threshold (2 × MAX_IMAGE_PIXELS)

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_SAVE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF"}
#: Formats that hold 16 bits per channel; jpg and webp hold 8.
SIXTEEN_BIT_FORMATS = ("png", "tiff")
_PIL_BOMB = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")
#: Formats Pillow can only identify, not decode into pixels.
_IDENTIFY_ONLY = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "WMF"})


def readable_suffixes() -> frozenset[str]:
    """File name endings of every format this Pillow (plus its plugins) can decode."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt not in _IDENTIFY_ONLY)


#: What a content folder's files must end with to become jobs; anything else is a reported skip.
IMAGE_SUFFIXES = readable_suffixes()


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input plus the hash that identifies its bytes in cache keys and resume checks."""

    path: Path
    tensor: torch.Tensor  # (3, H, W) float32 sRGB in [0, 1], EXIF orientation applied
    sha256: str  # hex sha256 of the very bytes that were decoded
    note: str | None = None  # what a user should know about how it was read (first frame of many)
    dpi: tuple[int, int] | None = None  # the file's print resolution, when it states one: outputs keep it


def load_image(path: Path | str, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
               fit: tuple[int | None, int | None] | None = None) -> LoadedImage:
    """Decode any picture Pillow reads into upright sRGB, failing with a cause a user can act on.

    The file is read once: the hash that resume and cache keys use is that of the decoded bytes.
    `fit` (max_side, max_pixels) is the size the caller will resize to: the picture is then
    area-averaged while still 8-bit to twice that size, so a 50 MP photo styled at 512 px never
    exists as full-size float32.
    """
    path = Path(path)
    with open_regular(path) as handle:
        try:
            data = handle.read()
        except OSError as exc:
            raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():
            # Our own pixel guard below decides; Pillow's warning band would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_pixels(path, img.size, max_input_pixels)
                note = _frames_note(img)
                dpi = _dpi(img.info.get("dpi"))
                img.load()
                tensor = _decoded(path, img, fit)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(path, _pillow_bomb_cause(exc, max_input_pixels)) from None
    except UnidentifiedImageError:
        kind = "empty file" if not data else f"its first bytes {data[:8]!r} are no format it knows"
        raise InputError(path, f"not an image Pillow can read ({kind})") from None
    except MemoryError:
        raise InputError(path, "not enough memory to decode this image") from None
    except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError, struct.error…
        raise InputError(path, f"image data is truncated or corrupt ({_short(exc)})") from None
    return LoadedImage(path=path, tensor=tensor, sha256=sha256_hex(data), note=note, dpi=dpi)


def _dpi(value: object) -> tuple[int, int] | None:
    """A stated resolution as whole dots per inch; none for absent, zero or nonsense values
    (a PNG's pixels per metre read back as 299.9994 is the 300 dpi it was written as)."""
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and math.isfinite(y)) or round(x) < 1 or round(y) < 1:
        return None
    return round(x), round(y)


def from_pil(img: Image.Image, fit: tuple[int | None, int | None] | None = None,
             max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS, name: str = "picture") -> torch.Tensor:
    """A picture already in memory, read exactly as `load_image` reads a file (EXIF orientation,
    ICC profile to sRGB, any mode to RGB, the same 8-bit shrink): so the Python API given
    `Image.open(path)` styles the same pixels as the pipeline given `path`. (3, H, W) float32 in [0, 1]."""
    _check_pixels(Path(name), img.size, max_input_pixels)
    try:
        img.load()
        return _decoded(Path(name), img, fit)
    except InputError:
        raise
    except Exception as exc:  # Pillow raises OSError, ValueError… for a picture it cannot decode
        raise InputError(name, f"image data is truncated or corrupt ({_short(exc)})") from None


def _decoded(path: Path, img: Image.Image, fit: tuple[int | None, int | None] | None) -> torch.Tensor:
    rgb = _convert(path, upright(_shrink(img, fit)))
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


_REDUCIBLE = frozenset({"RGB", "L", "CMYK", "I", "F"})  # no alpha: its colours must not bleed before compositing


def _shrink(img: Image.Image, fit: tuple[int | None, int | None] | None) -> Image.Image:
    """Area-average down to twice the final size while still 8-bit; the antialiased resize finishes."""
    if fit is None or img.mode not in _REDUCIBLE or "transparency" in img.info:
        return img
    width, height = img.size
    final_h, final_w = target_size(height, width, *fit)
    scale = 2 * max(final_w / width, final_h / height)
    if scale > 0.5:
        return img  # already close to the final size: nothing worth saving
    return img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def _frames_note(img: Image.Image) -> str | None:
    """Animations and multi-page files: say that only the first frame is styled."""
    if not getattr(img, "is_animated", False):
        return None
    frames = getattr(img, "n_frames", 0)
    img.seek(0)
    return f"{img.format} with {frames} frames: styled the first frame only"


def to_pil(image: torch.Tensor) -> PIL.Image.Image:
    """Quantise a result to 8-bit RGB (or RGBA, for a (4, H, W) one), the form every viewer accepts."""
    return Image.fromarray(quantise(image, 8), mode="RGB" if image.shape[0] == 3 else "RGBA")


def quantise(image: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """(H, W, C) uint8 or uint16 of a (C, H, W) result, RGB or RGBA: clamped, rounded, NaN as black."""
    if image.dim() != 3 or image.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3, H, W) or (4, H, W) image, got shape {tuple(image.shape)}")
    pixels = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0).clamp(0.0, 1.0)
    if bit_depth == 8:
        return pixels.mul(255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    levels = pixels.mul(65535.0).round().to(torch.int32).permute(1, 2, 0).contiguous().numpy()
    return levels.astype(np.uint16)


def save_image(image: torch.Tensor, path: Path, format: str = "jpg", quality: int = 92,
               exif: bytes | None = None, *, bit_depth: int = 8, dpi: tuple[int, int] | None = None) -> None:
    """Write atomically, tagged sRGB (what the pixels are), with the source's EXIF and a print
    resolution if given; 16 bits per channel (png, tiff) keep a print's smooth gradients unbanded.
    A (4, H, W) image keeps its alpha channel (png, webp, tiff)."""
    fmt = format.lower().lstrip(".")
    pil_format = _SAVE_FORMATS.get(fmt)
    if pil_format is None:
        raise ValueError(f"unsupported output format {format!r}; use one of {sorted(_SAVE_FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and pil_format not in ("PNG", "TIFF"):
        raise ValueError(f"{fmt} holds 8 bits per channel; 16-bit output needs one of {', '.join(SIXTEEN_BIT_FORMATS)}")
    if image.shape[0] == 4 and pil_format == "JPEG":
        raise ValueError("jpg has no alpha channel; flatten the picture or use png, webp or tiff")
    if pil_format == "TIFF":
        if exif:
            raise ValueError("EXIF is not copied into tiff outputs; use png, jpg or webp to keep it")
        pixels = quantise(image, bit_depth)
        write_atomic(Path(path), lambda handle: _write_tiff(handle, pixels, dpi))
    elif bit_depth == 16:
        pixels = quantise(image, 16)
        write_atomic(Path(path), lambda handle: _write_png16(handle, pixels, dpi, exif))
    else:
        picture = to_pil(image)
        options = _save_options(pil_format, quality) | {"icc_profile": _srgb_profile()}
        if exif:
            options["exif"] = exif
        if dpi and pil_format != "WEBP":  # WebP has no resolution field
            options["dpi"] = dpi
        write_atomic(Path(path), lambda handle: picture.save(handle, format=pil_format, **options))


def _write_tiff(handle: BinaryIO, pixels: np.ndarray, dpi: tuple[int, int] | None) -> None:
    """Deflate with horizontal prediction: lossless, and what every print workflow opens."""
    named = tifffile.FileHandle(handle, name="output.tif")  # tifffile wants a name; an fdopen'ed file's is its fd
    tifffile.imwrite(named, pixels, photometric="rgb", compression="zlib", predictor=True, iccprofile=_srgb_profile(),
                     resolution=dpi, resolutionunit="INCH" if dpi else None, metadata=None, software="stylepipe",
                     extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None)


class _SrgbPngWriter(png.Writer):
    """pypng's writer plus the chunks it has no option for: the sRGB profile (iCCP) and EXIF."""

    def __init__(self, *args: object, exif: bytes | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.exif = exif

    def write_preamble(self, outfile: BinaryIO) -> None:
        super().write_preamble(outfile)
        png.write_chunk(outfile, b"iCCP", b"sRGB\0\0" + zlib.compress(_srgb_profile()))
        if self.exif:
            png.write_chunk(outfile, b"eXIf", self.exif.removeprefix(b"Exif\0\0"))  # the chunk holds bare TIFF


def _write_png16(handle: BinaryIO, pixels: np.ndarray, dpi: tuple[int, int] | None, exif: bytes | None) -> None:
    """Row by row into the handle, compressed as it goes: a print-size file never sits in memory whole."""
    height, width, channels = pixels.shape
    per_metre = {"x_pixels_per_unit": round(dpi[0] / 0.0254), "y_pixels_per_unit": round(dpi[1] / 0.0254),
                 "unit_is_meter": True} if dpi else {}
    writer = _SrgbPngWriter(width, height, greyscale=False, alpha=channels == 4, bitdepth=16, compression=6, exif=exif,
                            **per_metre)
    writer.write_packed(handle, (row.astype(">u2").tobytes() for row in pixels))  # PNG's byte order, a row at a time


def read_exif(path: Path) -> bytes | None:
    """The EXIF block of an input, orientation reset (pixels are already upright), or None."""
    try:
        with open_regular(Path(path)) as handle, Image.open(handle) as img:
            exif = img.getexif()
    except Exception:  # noqa: BLE001 - metadata is a courtesy; the picture was already read
        return None
    if not exif:
        return None
    exif.pop(0x0112, None)  # Orientation: load_image applied it
    return exif.tobytes()


_SRGB: bytes | None = None


def _srgb_profile() -> bytes:
    """The sRGB ICC profile, built once: outputs say what their pixels are."""
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _SRGB


def upright(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a malformed EXIF block should not cost the user the picture."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _convert(path: Path, img: Image.Image) -> np.ndarray:
    try:
        return _to_rgb_array(_to_srgb(img))
    except (ValueError, OSError, ImageCms.PyCMSError) as exc:
        raise InputError(path, f"unsupported colour mode {img.mode!r} ({_short(exc)})") from None


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Map every Pillow mode onto float32 RGB in [0, 1] without losing its range."""
    mode = img.mode
    if mode == "I" or mode.startswith("I;16"):
        grey = np.asarray(img, dtype=np.float64)
        peak = grey.max(initial=0.0)
        return _grey_to_rgb(grey / (65535.0 if peak <= 65535.0 else peak))
    if mode == "F":
        grey = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = grey.max(initial=0.0)
        return _grey_to_rgb(grey if peak <= 1.0 else grey / peak)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / np.float32(255.0)
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (np.float32(1.0) - alpha)  # composite onto white
    return np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)


_MANAGED = {"RGB": "RGB", "L": "L", "CMYK": "CMYK", "RGBA": "RGB", "LA": "L"}


def _to_srgb(img: Image.Image) -> Image.Image:
    """Apply the embedded ICC profile (Display P3, Adobe RGB, print CMYK…) so pixels are sRGB.

    Without a profile, or with one that cannot be used, the pixels are taken as sRGB already
    (CMYK then gets Pillow's plain conversion).
    """
    icc = img.info.get("icc_profile")
    base_mode = _MANAGED.get(img.mode)
    if not icc or base_mode is None:
        return img
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
    base = img.convert(base_mode) if alpha is not None else img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(base, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img  # an unusable profile: read the pixels as they are
    if converted is None:
        return img
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    grey = np.clip(grey, 0.0, 1.0).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2)


def _check_pixels(path: Path, size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise InputError(
            path,
            f"image is {width}×{height} = {_amount(width * height)}, above the {_amount(limit)} limit "
            "(a decompression-bomb guard); raise limits.max_input_pixels to allow it",
        )


def _pillow_bomb_cause(exc: Exception, limit: int) -> str:
    match = _PIL_BOMB.search(str(exc))
    if match is None:
        return f"refused as a possible decompression bomb ({_short(exc)})"
    pixels, pillow_limit = int(match.group(1)), int(match.group(2))
    if pixels > limit:
        return (
            f"image is {_amount(pixels)}, above the {_amount(limit)} limit "
            "(a decompression-bomb guard); raise limits.max_input_pixels to allow it"
        )
    return (
        f"image is {_amount(pixels)}, above Pillow's own {_amount(pillow_limit)} limit "
        "(PIL.Image.MAX_IMAGE_PIXELS, a decompression-bomb guard)"
    )


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels} pixels"


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _save_options(pil_format: str, quality: int) -> dict[str, object]:
    if pil_format == "JPEG":
        # No `optimize`: Pillow then gives libjpeg a buffer of one byte per pixel for the whole
        # file, and a finely painted picture at 4:4:4 needs more ("Suspension not allowed here").
        options: dict[str, object] = {"quality": quality}
        if quality >= 90:
            options["subsampling"] = 0  # 4:4:4: keep the fine colour detail style transfer makes
        return options
    if pil_format == "WEBP":
        return {"quality": quality}
    return {"compress_level": 6}
