"""`stylepipe.losses`, the documented import path of loss terms (docs/plugins.md), kept for plugins.

The terms live in `stylepipe.extend.terms`; this module only re-exports its public names.
"""

from .extend.terms import *  # noqa: F403
from .extend.terms import __all__  # noqa: F401
