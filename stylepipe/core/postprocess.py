"""Pure tensor maths applied after optimisation: clamping and colour preservation.

Colour preservation is the "luminance-only transfer" of Gatys et al., *Preserving Color in
Neural Artistic Style Transfer* (2016): keep the stylised image's luminance (the brush strokes)
and take the chroma from the content photo, so the output keeps the photo's colours.

Every function takes (3, H, W) or (B, 3, H, W) float tensors, channels first, RGB in [0, 1],
and does no I/O, so it serves as well from a notebook as from the pipeline.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from .geometry import resize

ColorSpace = Literal["ycbcr", "lab"]

# ITU-R BT.601 luma weights; full range (JPEG/JFIF) so every channel stays in [0, 1].
_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB
_RGB_TO_YCBCR = (
    (_KR, _KG, _KB),
    (-_KR / (2 * (1 - _KB)), -_KG / (2 * (1 - _KB)), 0.5),
    (0.5, -_KG / (2 * (1 - _KR)), -_KB / (2 * (1 - _KR))),
)
_YCBCR_TO_RGB = (
    (1.0, 0.0, 2 * (1 - _KR)),
    (1.0, -2 * (1 - _KB) * _KB / _KG, -2 * (1 - _KR) * _KR / _KG),
    (1.0, 2 * (1 - _KB), 0.0),
)
_CHROMA_OFFSET = 0.5

# Linear sRGB → CIE XYZ (IEC 61966-2-1, D65). The white point is this matrix's row sums, so
# RGB white maps exactly to L=100, a=b=0 (they agree with D65 = (0.95047, 1, 1.08883) to 1e-7).
_RGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_XYZ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).tolist()))
_LAB_DELTA = 6.0 / 29.0


def clamp01(image: torch.Tensor) -> torch.Tensor:
    """Bring optimiser overshoot back into the displayable range before anything is judged."""
    return image.clamp(0.0, 1.0)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """Separate luma from chroma cheaply; the split the colour-preservation paper uses first."""
    _check(image)
    out = _apply_matrix(_RGB_TO_YCBCR, image)
    return torch.cat([out[..., :1, :, :], out[..., 1:, :, :] + _CHROMA_OFFSET], dim=-3)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Recombine a luma and a chroma taken from different images back into RGB."""
    _check(image)
    shifted = torch.cat([image[..., :1, :, :], image[..., 1:, :, :] - _CHROMA_OFFSET], dim=-3)
    return _apply_matrix(_YCBCR_TO_RGB, shifted)


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """Move to a perceptual space whose lightness matches what the eye sees as luminance."""
    _check(image)
    xyz = _apply_matrix(_RGB_TO_XYZ, _srgb_to_linear(image))
    white = _white(image)
    f = _lab_f(xyz / white)
    fx, fy, fz = f[..., 0:1, :, :], f[..., 1:2, :, :], f[..., 2:3, :, :]
    return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Return from Lab to sRGB; not clamped, so out-of-gamut colours stay visible to the caller."""
    _check(image)
    lightness, a, b = image[..., 0:1, :, :], image[..., 1:2, :, :], image[..., 2:3, :, :]
    fy = (lightness + 16.0) / 116.0
    f = torch.cat([fy + a / 500.0, fy, fy - b / 200.0], dim=-3)
    xyz = _lab_f_inverse(f) * _white(image)
    return _linear_to_srgb(_apply_matrix(_XYZ_TO_RGB, xyz))


def preserve_colors(stylized: torch.Tensor, content: torch.Tensor, space: ColorSpace = "ycbcr") -> torch.Tensor:
    """Keep the strokes but not the palette: luminance from the result, chroma from the photo."""
    _check(stylized)
    _check(content)
    if space not in get_args(ColorSpace):
        raise ValueError(f"unknown colour space {space!r}; use one of {get_args(ColorSpace)}")
    content = _match(clamp01(content), stylized)
    forward, backward = (rgb_to_ycbcr, ycbcr_to_rgb) if space == "ycbcr" else (rgb_to_lab, lab_to_rgb)
    luminance = forward(clamp01(stylized))[..., :1, :, :]
    chroma = forward(content)[..., 1:, :, :]
    return clamp01(backward(torch.cat([luminance, chroma], dim=-3)))


def postprocess(
    image: torch.Tensor, content: torch.Tensor | None = None, preserve: ColorSpace | None = None
) -> torch.Tensor:
    """Turn an optimised image into a final one: in range, and in the photo's colours if asked."""
    image = clamp01(image)
    if preserve is None:
        return image
    if content is None:
        raise ValueError("colour preservation needs the content image")
    return preserve_colors(image, content, preserve)


def _check(image: torch.Tensor) -> None:
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) image, got shape {tuple(image.shape)}")


def _apply_matrix(matrix: tuple[tuple[float, ...], ...], image: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(matrix, dtype=image.dtype, device=image.device)
    return torch.einsum("ij,...jhw->...ihw", weights, image)


def _white(image: torch.Tensor) -> torch.Tensor:
    white = torch.tensor([sum(row) for row in _RGB_TO_XYZ], dtype=image.dtype, device=image.device)
    return white.view(3, 1, 1)


def _srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    # torch.where evaluates both branches: feed pow only values where its branch applies.
    curved = ((image.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(image <= 0.04045, image / 12.92, curved)


def _linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    curved = 1.055 * image.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055
    return torch.where(image <= 0.0031308, image * 12.92, curved)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    threshold = _LAB_DELTA**3
    cube_root = t.clamp(min=threshold) ** (1.0 / 3.0)
    return torch.where(t > threshold, cube_root, t / (3 * _LAB_DELTA**2) + 4.0 / 29.0)


def _lab_f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > _LAB_DELTA, f**3, 3 * _LAB_DELTA**2 * (f - 4.0 / 29.0))


def _match(content: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
    """Bring the content to the result's size and batch so the two can be recombined per pixel."""
    if content.dim() == 4 and stylized.dim() == 3:
        if content.shape[0] != 1:
            raise ValueError(f"a batch of {content.shape[0]} content images for one stylised image")
        content = content.squeeze(0)
    content = resize(content, (stylized.shape[-2], stylized.shape[-1]))
    if stylized.dim() == 4:
        if content.dim() == 3:
            content = content.unsqueeze(0)
        if content.shape[0] not in (1, stylized.shape[0]):
            raise ValueError(
                f"content batch of {content.shape[0]} does not match stylised batch of {stylized.shape[0]}"
            )
        content = content.expand(stylized.shape[0], -1, -1, -1)
    return content
