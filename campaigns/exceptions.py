"""The kinds of user mistake, each one small class under :class:`CampaignsError`.

The CLI turns each into one readable line on stderr; nothing reaches a user as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class CampaignsError(Exception):
    """Base class: something the user can fix, with a message written for them."""


class ConfigError(CampaignsError):
    """A configuration value (environment variable) is missing or malformed."""


class ServiceUnavailable(CampaignsError):
    """A service the configuration names (Redis at ``REDIS_URL``) does not answer at start."""


@dataclass(frozen=True)
class Problem:
    """One problem in a file, at a place, with an optional hint a marketer can act on."""

    path: str
    line: int
    col: int
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.col}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class JourneyError(CampaignsError):
    """A journey, segments or links file has problems; carries every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SegmentError(JourneyError):
    """The segments file has problems, or a rule names an unknown segment."""


class ImportRowError(CampaignsError):
    """A CSV import stopped (``--strict``, or a file that cannot be read at all)."""


class UnknownJourney(CampaignsError):
    """A command named a journey that has not been deployed."""


class ScorecardError(JourneyError):
    """The scorecards file (``journeys/scorecards.yaml``) has problems; carries every one."""
