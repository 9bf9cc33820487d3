"""Plugin files: Python files from the folders that `plugins:` names, imported by path under a
private namespace, so a broken one is reported with its file and line rather than as our bug.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
import types
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import InputError, PluginError
from ..io.hashing import sha256_file
from .registries import LOADING, OVERRIDING, PLUGIN_NAMESPACE


def plugin_namespace() -> None:
    """Make plugin classes picklable by reference: pickle imports a class's module by its dotted
    name, so the private package that plugin files are loaded under must exist in sys.modules.
    Needed to load a plugin file, and on a Ray driver and worker to send and receive plugin terms."""
    if PLUGIN_NAMESPACE not in sys.modules:
        package = types.ModuleType(PLUGIN_NAMESPACE, "stylepipe's plugin files, loaded by path")
        package.__path__ = []  # a package with no folder: its modules only come from plugin files
        sys.modules[PLUGIN_NAMESPACE] = package


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(ch if ch.isalnum() else "_" for ch in path.stem)
    return f"{PLUGIN_NAMESPACE}._{digest}_{stem}"


def load_plugin_file(path: Path, *, override: bool = False) -> None:
    """Import one plugin file under a private namespace; errors name the file and the cause."""
    path = path.resolve()
    name = _module_name(path)
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__stylepipe_mtime__", None) == path.stat().st_mtime_ns:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a loadable Python file")
    plugin_namespace()
    module = importlib.util.module_from_spec(spec)
    module.__stylepipe_mtime__ = path.stat().st_mtime_ns  # type: ignore[attr-defined]
    sys.modules[name] = module
    token = OVERRIDING.set(override)
    loading = LOADING.set(str(path))
    try:
        spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not look like our bug
        sys.modules.pop(name, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = f":{frames[-1].lineno}" if frames else ""
        raise PluginError(f"{path}{where}: plugin failed to load: {type(exc).__name__}: {exc}") from exc
    finally:
        OVERRIDING.reset(token)
        LOADING.reset(loading)


def plugin_code_sha(obj: object) -> str | None:
    """The sha256 of the plugin file that defines `obj`'s class (a term, a style source), or None
    for built-ins and installed packages: editing a folder plugin then redoes the outputs it made."""
    module = sys.modules.get(type(obj).__module__)
    filename = getattr(module, "__file__", None)
    if module is None or not module.__name__.startswith(PLUGIN_NAMESPACE + ".") or not filename:
        return None
    try:
        return sha256_file(Path(filename))
    except (OSError, InputError) as exc:
        raise PluginError(f"{filename}: cannot read the plugin file to fingerprint it ({exc})") from None


def load_plugin_folders(folders: Iterable[Path], *, override: bool = False) -> list[Path]:
    """Load every `*.py` (not starting with `_`) in the named folders, in name order."""
    loaded: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise PluginError(f"{folder}: plugin folder not found")
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                load_plugin_file(path, override=override)
                loaded.append(path)
    return loaded
