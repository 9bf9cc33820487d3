"""Cache values as framed bytes: magic, format version, sha256, then a `torch.save` payload read
back with `weights_only=True`, so a cache folder (not trusted code) is never unpickled.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping

import torch

CACHE_FORMAT_VERSION = 1


_MAGIC = b"SPTC"


_DIGEST_SIZE = 32


_HEADER_SIZE = len(_MAGIC) + 1 + _DIGEST_SIZE


class CorruptEntry(Exception):
    """A cached value failed verification; the caller drops it and recomputes."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """Detach to CPU and drop any larger storage a view would drag into the file."""
    tensor = tensor.detach().cpu()
    if not tensor.is_contiguous() or (
        tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()
    ):
        tensor = tensor.contiguous().clone()
    return tensor


def _check_target(name: object, tensor: object) -> torch.Tensor:
    """Fail early (a programming error) on anything decode_tensors would later reject."""
    if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"targets must map str to Tensor, got {type(name).__name__} → {type(tensor).__name__}"
        )
    return tensor


def _private_copy(name: object, tensor: object) -> torch.Tensor:
    """Copy to a compact CPU tensor, so later in-place edits by the caller cannot leak in."""
    checked = _check_target(name, tensor)
    return checked.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)


def encode_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise targets to bytes that diskcache stores raw (no pickle) and that we can verify."""
    plain = {name: _compact(_check_target(name, tensor)) for name, tensor in tensors.items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    payload = buffer.getvalue()
    header = _MAGIC + bytes([CACHE_FORMAT_VERSION]) + hashlib.sha256(payload).digest()
    return header + payload


def decode_tensors(blob: bytes) -> dict[str, torch.Tensor]:
    """Read back only verified plain tensors; anything else is a corrupt entry, never code."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise CorruptEntry(f"value is {type(blob).__name__}, not bytes")
    blob = bytes(blob)
    if len(blob) < _HEADER_SIZE:
        raise CorruptEntry(f"value too short ({len(blob)} bytes)")
    if blob[: len(_MAGIC)] != _MAGIC:
        raise CorruptEntry("bad magic (not a stylepipe cache value)")
    version = blob[len(_MAGIC)]
    if version != CACHE_FORMAT_VERSION:
        raise CorruptEntry(f"format version {version}, expected {CACHE_FORMAT_VERSION}")
    digest = blob[len(_MAGIC) + 1 : _HEADER_SIZE]
    payload = blob[_HEADER_SIZE:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("checksum mismatch")
    try:
        loaded = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure means a bad entry
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise CorruptEntry(f"cannot load payload: {type(error).__name__}: {message}") from error
    if not isinstance(loaded, dict):
        raise CorruptEntry(f"payload is {type(loaded).__name__}, not a dict")
    for name, tensor in loaded.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            kinds = f"{type(name).__name__} → {type(tensor).__name__}"
            raise CorruptEntry(f"payload maps {kinds}, not str → Tensor")
    return dict(loaded)
