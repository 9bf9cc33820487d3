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
from typing import TYPE_CHECKING, Any

__version__ = "1.2.0"

#: public name → the module that defines it
_EXPORTS = {
    "Stylizer": "stylepipe.api",
    "Style": "stylepipe.api",
    "run": "stylepipe.api",
    "RunReport": "stylepipe.report",
    "LossTerm": "stylepipe.losses",
    "TermParams": "stylepipe.losses",
    "LayeredTerm": "stylepipe.losses",
    "LayeredParams": "stylepipe.losses",
    "register_loss": "stylepipe.registry",
    "register_style_source": "stylepipe.registry",
    "StyleSource": "stylepipe.styles",
    "SourceParams": "stylepipe.styles",
    "StyleContext": "stylepipe.styles",
    "WeightedImage": "stylepipe.core.targets",
    "check_layers": "stylepipe.core.network",
    "layer_list": "stylepipe.core.network",
    "gram": "stylepipe.core.losses",
    "per_image_mse": "stylepipe.core.losses",
    "Features": "stylepipe.core.losses",
    "TensorDict": "stylepipe.core.losses",
    "TileSafeTerm": "stylepipe.core.losses",
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
    from .core.losses import Features, TensorDict, TileSafeTerm, gram, per_image_mse
    from .core.network import check_layers, layer_list
    from .core.targets import WeightedImage
    from .io.images import IMAGE_SUFFIXES
    from .losses import LayeredParams, LayeredTerm, LossTerm, TermParams
    from .registry import register_loss, register_style_source
    from .report import RunReport
    from .styles import SourceParams, StyleContext, StyleSource


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
