"""The Python API's configuration: keyword settings (no content, no styles) turned into what the
plan makes of a file's settings, so a Stylizer and a pipeline file give the same jobs the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.collect import ErrorCollector
from ..config.load import LoadedPipeline, pipeline_from_dict
from ..config.overrides import Override
from ..core.target_fns import StyleSizing
from ..extend.sources import StyleContext
from ..extend.terms import LossTerm
from .inputs import FileHasher, PictureLoader
from .run_settings import RunSettings, shared_settings

#: The schema asks a transfer for content and styles; the Python API is given them per call instead.
_GIVEN_PER_CALL = {"content": ["(given to stylize)"], "styles": ["(given to style)"]}


@dataclass(frozen=True)
class Setup:
    """A configuration without pictures (the Python API's keyword settings) turned into what the plan
    makes of a file's settings; content and styles come with each call."""

    pipeline: LoadedPipeline
    settings: RunSettings
    terms: list[LossTerm]
    sizing: StyleSizing

    @classmethod
    def from_keywords(cls, given: Sequence[Override], name: str) -> Setup:
        pipeline = pipeline_from_dict(_GIVEN_PER_CALL, given, name=name)
        errors = ErrorCollector()
        terms, settings, sizing = shared_settings(pipeline, errors)
        errors.raise_if_any()
        assert settings is not None
        return cls(pipeline, settings, terms, sizing)

    @property
    def fit(self) -> tuple[int | None, int | None]:
        return self.settings.size_max_side, self.settings.size_max_pixels

    def style_context(self) -> StyleContext:
        """How style sources read their pictures: as the plan has them read (same shrink, same hashes)."""
        return StyleContext(Path.cwd(), PictureLoader(self.settings.max_input_pixels, fit=(self.sizing.max_side, self.sizing.max_pixels)),
                            FileHasher())
