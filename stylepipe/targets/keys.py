"""Cache keys: one stable string per target, `gram/v{N}/` + the sha256 of canonical JSON of every
input that changes it (source, network and weights, terms and layers, style size, dtype).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.target_fns import StyleSizing, style_terms
from ..extend.sources import StyleSource
from ..extend.terms import LossTerm
from ..io.hashing import sha256_json


def make_key(namespace: str, version: int, payload: Mapping[str, Any]) -> str:
    """Give every input that changes a target one stable string key, so a change means a miss."""
    try:
        digest = sha256_json(payload, strict=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"cache key payload is not plain JSON: {error}") from error
    return f"{namespace}/v{version}/{digest}"


TARGETS_VERSION = 1


def target_key(source: StyleSource | Mapping[str, Any], network: Mapping[str, str], terms: Sequence[LossTerm], sizing: StyleSizing, dtype: torch.dtype = torch.float32) -> str:
    """Content-addressed cache key: `gram/v{N}/sha256(canonical JSON)`; `network` is its fingerprint.

    `source` is a style source or its `fingerprint()`, kept by whoever has no access to its files
    (a worker given targets computed elsewhere)."""
    payload: dict[str, Any] = {
        "source": dict(source) if isinstance(source, Mapping) else source.fingerprint(),
        "network": dict(network),
        "terms": [term.fingerprint() for term in style_terms(terms)],
        "sizing": sizing.fingerprint(),
        "dtype": str(dtype),
    }
    return make_key("gram", TARGETS_VERSION, payload)
