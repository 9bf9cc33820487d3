"""stylepipe: batch neural style transfer (Gatys, Ecker & Bethge 2015) as a YAML pipeline, and a library.

The public names, in three groups (docs/library.md, docs/plugins.md):

* the library: `Stylizer`, `Style`, `run`, `RunReport`;
* for plugins: `LossTerm`, `TermParams`, `LayeredTerm`, `LayeredParams`, `register_loss`,
  `StyleSource`, `SourceParams`, `StyleContext`, `WeightedImage`, `register_style_source`,
  `check_layers`, `layer_list`, `gram`, `per_image_mse`, `Features`, `TensorDict`, `TileSafeTerm`
  (what a term implements to be evaluated on tiles, docs/print.md), `IMAGE_SUFFIXES`;
* errors: `StylepipeError` and its kinds `ConfigError`, `PluginError`, `InputError`,
  `EnvironmentProblem`, `OptimizationError`, `TilingError`.

They are loaded on first use (PEP 562), so `import stylepipe` — which the CLI does to print its
version — does not import torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING, Any

__version__ = _dist_version("stylepipe")  # one source: pyproject.toml's [project] version

#: public name → the module that defines it
_EXPORTS = {
    "Stylizer": "stylepipe.api",
    "Style": "stylepipe.api",
    "run": "stylepipe.api",
    "RunReport": "stylepipe.report.record",
    "LossTerm": "stylepipe.extend.terms",
    "TermParams": "stylepipe.extend.terms",
    "LayeredTerm": "stylepipe.extend.terms",
    "LayeredParams": "stylepipe.extend.terms",
    "register_loss": "stylepipe.extend.registries",
    "register_style_source": "stylepipe.extend.registries",
    "StyleSource": "stylepipe.extend.sources",
    "SourceParams": "stylepipe.extend.sources",
    "StyleContext": "stylepipe.extend.sources",
    "WeightedImage": "stylepipe.core.target_fns",
    "check_layers": "stylepipe.core.network",
    "layer_list": "stylepipe.extend.terms",
    "gram": "stylepipe.core.loss_fns",
    "per_image_mse": "stylepipe.core.loss_fns",
    "Features": "stylepipe.core.loss_fns",
    "TensorDict": "stylepipe.core.loss_fns",
    "TileSafeTerm": "stylepipe.core.loss_fns",
    "IMAGE_SUFFIXES": "stylepipe.io.images",
    "StylepipeError": "stylepipe.core.errors",
    "ConfigError": "stylepipe.core.errors",
    "PluginError": "stylepipe.core.errors",
    "InputError": "stylepipe.core.errors",
    "EnvironmentProblem": "stylepipe.core.errors",
    "OptimizationError": "stylepipe.core.errors",
    "TilingError": "stylepipe.core.errors",
}

__all__ = [  # the keys of _EXPORTS, written out for readers and linters (a test keeps them equal)
    "IMAGE_SUFFIXES", "ConfigError", "EnvironmentProblem", "Features", "InputError", "LayeredParams", "LayeredTerm",
    "LossTerm", "OptimizationError", "PluginError", "RunReport", "SourceParams", "Style", "StyleContext", "StyleSource",
    "Stylizer", "StylepipeError", "TensorDict", "TermParams", "TileSafeTerm", "TilingError", "WeightedImage", "__version__", "check_layers", "gram",
    "layer_list", "per_image_mse", "register_loss", "register_style_source", "run",
]

if TYPE_CHECKING:
    from .api import Style, Stylizer, run
    from .core.errors import (
        ConfigError,
        EnvironmentProblem,
        InputError,
        OptimizationError,
        PluginError,
        StylepipeError,
        TilingError,
    )
    from .core.loss_fns import Features, TensorDict, TileSafeTerm, gram, per_image_mse
    from .core.network import check_layers
    from .core.target_fns import WeightedImage
    from .extend.registries import register_loss, register_style_source
    from .extend.sources import SourceParams, StyleContext, StyleSource
    from .extend.terms import LayeredParams, LayeredTerm, LossTerm, TermParams, layer_list
    from .io.images import IMAGE_SUFFIXES
    from .report.record import RunReport


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used, and keep it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stylepipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
