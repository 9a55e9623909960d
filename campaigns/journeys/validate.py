"""Checking a set of journey files together: each file, and what no one file can show.

:func:`validate_files` is what ``campaigns validate`` and ``campaigns deploy`` run: every
file is parsed (see :mod:`~campaigns.journeys.parse`), every problem of every file is
kept, and no two files may share a journey id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from campaigns.exceptions import JourneyError, Problem
from campaigns.journeys.model import Journey
from campaigns.journeys.parse import load_journey
from campaigns.journeys.segments import SegmentSet


def validate_files(
    paths: Iterable[Path],
    *,
    segments: SegmentSet | None = None,
    templates: Collection[str] | None = None,
    brands: Collection[str] | None = None,
) -> tuple[list[tuple[Journey, Path]], list[Problem]]:
    """Check many journey files; also that no two files share a journey id."""
    journeys: list[tuple[Journey, Path]] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            journey = load_journey(path, segments=segments, templates=templates, brands=brands)
        except JourneyError as exc:
            problems.extend(exc.problems)
            continue
        if journey.key in seen:
            problems.append(
                Problem(
                    str(path),
                    1,
                    1,
                    f"journey id '{journey.key}' is also used by {seen[journey.key]}",
                    "give each journey its own id",
                )
            )
            continue
        seen[journey.key] = str(path)
        journeys.append((journey, path))
    return journeys, problems
