"""Did-you-mean hints: a misspelt key or value is answered with the closest valid name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option nearest to `word` when one is near enough to be a likely typo, else None."""
    matches = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean `x`?)` to append to an error message, or an empty string."""
    match = closest(word, options)
    return f" (did you mean `{match}`?)" if match is not None else ""
