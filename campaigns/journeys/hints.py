"""What helps a marketer fix a condition: the problem, where it points, a 'did you mean'.

Every checker of the language (journey files, segment rules, conditions) reports through
these, so a typo gets the same hint and the same ``line:col`` wherever it is written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ExprProblem:
    """A problem in an expression; ``needle`` is the text to point at, if any."""

    message: str
    hint: str | None = None
    needle: str | None = None


def suggest(word: str, options: Iterable[str]) -> str | None:
    """A 'did you mean' hint for ``word`` among ``options``, or None."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


def locate(source: str, needle: str | None) -> tuple[int, int]:
    """The (line offset, column offset) of ``needle`` in ``source``, or (0, 0)."""
    if not needle:
        return (0, 0)
    match = re.search(rf"(?<![\w]){re.escape(needle)}(?![\w])", source) or re.search(
        re.escape(needle), source
    )
    if not match:
        return (0, 0)
    before = source[: match.start()]
    line = before.count("\n")
    col = match.start() - (before.rfind("\n") + 1)
    return (line, col)
