"""Pictures in and out: decode any file Pillow reads into an RGB tensor, resize, save atomically.

This is the edge where files become tensors. Every problem with an input file becomes an
`InputError(path, cause)`, so one bad picture fails only the jobs that need it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from stylepipe.errors import InputError

DEFAULT_MAX_INPUT_PIXELS = 178_956_970  # Pillow's own error threshold (2 × MAX_IMAGE_PIXELS)

_CHUNK = 1 << 20
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_SAVE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PIL_BOMB = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input plus the hash that identifies its bytes in cache keys and resume checks."""

    path: Path
    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], EXIF orientation applied
    sha256: str  # hex sha256 of the file's bytes


def file_sha256(path: Path) -> str:
    """Hash a file's bytes in chunks so cache keys follow content, not names, at flat memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_image(path: Path | str, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> LoadedImage:
    """Decode any picture Pillow reads into upright RGB, failing with a cause a user can act on."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory")
    try:
        digest = file_sha256(path)
        with warnings.catch_warnings():
            # Our own pixel guard below decides; Pillow's warning band would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(path, img.size, max_input_pixels)
                img.load()
                rgb = _convert(path, _upright(img))
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except Image.DecompressionBombError as exc:
        raise InputError(path, _pillow_bomb_cause(exc, max_input_pixels)) from None
    except UnidentifiedImageError as exc:
        raise InputError(path, f"not an image Pillow can read ({_short(exc)})") from None
    except MemoryError:
        raise InputError(path, "not enough memory to decode this image") from None
    except Exception as exc:  # Pillow plugins raise OSError, ValueError, SyntaxError, struct.error…
        raise InputError(path, f"image data is truncated or corrupt ({_short(exc)})") from None
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return LoadedImage(path=path, tensor=tensor, sha256=digest)


def target_size(
    height: int, width: int, max_side: int | None = None, max_pixels: int | None = None
) -> tuple[int, int]:
    """Pick the working resolution: the size the user asked for, within the pixel budget."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}×{width}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    candidates = []
    if max_side is not None:
        candidates.append(_fit_side(height, width, max_side))
    if max_pixels is not None:
        candidates.append(_fit_pixels(height, width, max_pixels))
    return min(candidates, key=lambda hw: hw[0] * hw[1], default=(height, width))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample without aliasing so downscaled content and style keep their true statistics."""
    _check_image(image)
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batch, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp_(0.0, 1.0)
    return out if image.dim() == 4 else out.squeeze(0)


def tile(image: torch.Tensor, grid: int) -> torch.Tensor:
    """Turn a photo into a repeating texture so its Gram statistics describe a style, not a scene."""
    _check_image(image)
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if grid == 1:
        return image
    return image.repeat(*([1] * (image.dim() - 2)), grid, grid)


def to_pil(image: torch.Tensor) -> PIL.Image.Image:
    """Quantise a result to 8-bit RGB, the form every output format and viewer accepts."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    pixels = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0)
    pixels = pixels.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def save_image(image: torch.Tensor, path: Path, format: str = "jpg", quality: int = 92) -> None:
    """Write via a temp file and rename so a crash never leaves a half-written output behind."""
    pil_format = _SAVE_FORMATS.get(format.lower().lstrip("."))
    if pil_format is None:
        raise ValueError(f"unsupported output format {format!r}; use one of {sorted(_SAVE_FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    picture = to_pil(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    try:
        # os.open with 0o666 lets the umask decide permissions, as for any ordinary new file.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            picture.save(handle, format=pil_format, **_save_options(pil_format, quality))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _upright(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation; a malformed EXIF block should not cost the user the picture."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _convert(path: Path, img: Image.Image) -> np.ndarray:
    try:
        return _to_rgb_array(img)
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
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(img), dtype=np.float32) / np.float32(255.0)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / np.float32(255.0)
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (np.float32(1.0) - alpha)  # composite onto white
    return np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    grey = np.clip(grey, 0.0, 1.0).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """Use the embedded ICC profile when there is one: naive CMYK maths misjudges print colours."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # an unusable profile: fall back to Pillow's plain conversion
    return img.convert("RGB")


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


def _fit_side(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(height, width)
    if height >= width:
        return max_side, max(1, round(width * scale))
    return max(1, round(height * scale)), max_side


def _fit_pixels(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    if h * w > max_pixels:
        h, w = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    if h * w > max_pixels:  # extreme aspect ratios: the short side is already 1
        if h <= w:
            w = max(1, max_pixels // h)
        else:
            h = max(1, max_pixels // w)
    return h, w


def _check_image(image: torch.Tensor) -> None:
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) image, got shape {tuple(image.shape)}")


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


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself; best effort, since not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
