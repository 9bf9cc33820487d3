"""Style sources from a config: each `styles:` entry validated against its source's own model.
"""

from __future__ import annotations

import glob
from typing import Any

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline, validate_model
from ..core.errors import ConfigError
from ..extend.registries import STYLE_SOURCES
from ..extend.sources import StyleContext, StyleSource
from .inputs import expand_entry
from .jobs import Rejected


def build_styles(pipeline: LoadedPipeline, context: StyleContext, errors: ErrorCollector | None = None,
                 rejected: list[Rejected] | None = None) -> list[StyleSource]:
    """One StyleSource per style (a folder or glob in an `image` entry gives one per picture);
    with `errors`, every bad entry is recorded there instead of stopping at the first."""
    errors = errors or ErrorCollector()
    sources: list[StyleSource] = []
    for i, entry in enumerate(pipeline.config.styles):
        with errors.check():
            sources.extend(entry_sources(pipeline, context, entry, ("styles", i), rejected, expand=entry.is_shorthand))
    labels = [s.label for s in sources]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        errors.add(pipeline.error(("styles",), f"two styles share the label {dupes[0]!r}; give one a `name:`"))
    if errors.lines and not sources:
        errors.raise_if_any()
    return sources


def refuse_many(pipeline: LoadedPipeline, path: str, loc: tuple) -> None:
    """A long-form `image` entry names one picture: a folder or glob there would silently become many styles."""
    resolved = pipeline.resolve(path)
    kind = "a folder" if resolved.is_dir() else ("a glob" if not resolved.exists() and glob.has_magic(path) else None)
    if kind:
        raise pipeline.error(loc, f"{path!r} is {kind}: `{{source: image, path: …}}` names one picture; to make one style "
                             f"of each picture in it, write the path alone as a list item (`- {path}`), the shorthand "
                             "that expands folders and globs")


def entry_sources(pipeline: LoadedPipeline, context: StyleContext, entry: Any, loc: tuple,
                  rejected: list[Rejected] | None = None, *, expand: bool = True) -> list[StyleSource]:
    """The sources of one `styles:` entry: its parameters and its files both checked, so that an
    entry with a misspelt key and a missing file reports both. Without `expand` (a long-form
    entry), a folder or glob is refused: only a bare path means one style per picture."""
    try:
        factory = STYLE_SOURCES.get(entry.source)
    except ConfigError as exc:
        raise pipeline.error(loc + ("source",), str(exc)) from None
    errors = ErrorCollector()
    raw = entry.params()
    with errors.check():
        validate_model(factory.Params, raw, pipeline.source_map, loc)
    variants: list[dict[str, Any]] = []
    with errors.check():
        if factory.name == "image" and isinstance(raw.get("path"), str):
            if not expand:
                refuse_many(pipeline, raw["path"], loc + ("path",))
            paths = expand_entry(pipeline, raw["path"], loc + ("path",), rejected)  # folders/globs allowed
            variants = [{**raw, "path": str(p)} for p in paths]
        else:
            variants = [raw]
    errors.raise_if_any()
    sources: list[StyleSource] = []
    for params_raw in variants:
        params = validate_model(factory.Params, params_raw, pipeline.source_map, loc)
        source = factory(params, context, entry.name if len(variants) == 1 else None)
        try:
            files = source.files()
        except ConfigError as exc:
            raise pipeline.error(loc, str(exc)) from None
        for path in files:
            if not path.is_file():
                raise pipeline.error(loc, f"style file not found: {path}")
        sources.append(source)
    return sources
