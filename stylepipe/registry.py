"""`stylepipe.registry`, the documented import path of the plugin registries (docs/plugins.md).

The tables live in `stylepipe.extend.registries` and plugin-file loading in `stylepipe.extend.plugins`;
this module only re-exports them, so plugins and scripts written against it keep working.
"""

from .extend.plugins import load_plugin_file, load_plugin_folders
from .extend.registries import (
    BUILTIN,
    LOSSES,
    STYLE_SOURCES,
    Entry,
    Registry,
    register_builtins,
    register_loss,
    register_style_source,
)

__all__ = [
    "BUILTIN", "LOSSES", "STYLE_SOURCES", "Entry", "Registry", "load_plugin_file", "load_plugin_folders",
    "register_builtins", "register_loss", "register_style_source",
]
