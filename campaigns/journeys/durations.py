"""Durations and offsets as marketers write them: ``3 days``, ``12h``, ``90 days before``, ``3日``.

One parser for every duration of the DSL (waits, timeouts, due dates, re-entry), so each
accepts the same units, in English and Japanese, and refuses with the same hint.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from campaigns.journeys.yamlsource import describe

_UNITS: dict[str, timedelta] = {}
for _names, _delta in (
    (("m", "min", "mins", "minute", "minutes", "分", "分間"), timedelta(minutes=1)),
    (("h", "hr", "hrs", "hour", "hours", "時間"), timedelta(hours=1)),
    (("d", "day", "days", "日", "日間"), timedelta(days=1)),
    (("w", "week", "weeks", "週", "週間"), timedelta(weeks=1)),
):
    for _name in _names:
        _UNITS[_name] = _delta

_DURATION = re.compile(r"^\s*(\d{1,6})\s*([^\d\s]+)\s*$")
_OFFSET = re.compile(r"^\s*(.+?)\s+(before|after)\s*$")
_OFFSET_JA = re.compile(r"^\s*(.+?)\s*(前|後)\s*$")

DURATION_HINT = "write a number and a unit, e.g. '3 days', '12 hours', '30 minutes' or '2 weeks'"
OFFSET_HINT = "write a duration and 'before' or 'after', e.g. '90 days before'"
MAX_DURATION = timedelta(days=3 * 366)


class DurationError(ValueError):
    """Not a duration; the message says why and :attr:`hint` how to write one."""

    def __init__(self, message: str, hint: str = DURATION_HINT) -> None:
        super().__init__(message)
        self.hint = hint


def parse_duration(value: object) -> timedelta:
    """Parse ``3 days`` / ``3d`` / ``3日`` into a :class:`timedelta` (positive, at most 3 years)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DurationError(f"expected a duration, got {describe(value)}")
    if isinstance(value, int):
        raise DurationError(f"'{value}' has no unit", f"write '{value} days' or '{value} hours'")
    text = unicodedata.normalize("NFKC", value)
    match = _DURATION.match(text)
    if not match:
        raise DurationError(f"'{value}' is not a duration")
    count, unit = int(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise DurationError(
            f"unknown unit '{match.group(2)}' in '{value}'", "units: minutes, hours, days, weeks"
        )
    delta = count * _UNITS[unit]
    if delta <= timedelta(0):
        raise DurationError(
            f"'{value}' is zero; a duration must be positive",
            "remove the step or use a positive number",
        )
    if delta > MAX_DURATION:
        raise DurationError(f"'{value}' is longer than 3 years", "journeys wait at most 3 years")
    return delta


def parse_offset(value: object) -> timedelta:
    """Parse ``90 days before`` (negative) or ``7 days after`` (positive)."""
    if not isinstance(value, str):
        raise DurationError(f"expected an offset, got {describe(value)}", OFFSET_HINT)
    text = unicodedata.normalize("NFKC", value)
    match = _OFFSET.match(text) or _OFFSET_JA.match(text)
    if not match:
        raise DurationError(f"'{value}' is not an offset", OFFSET_HINT)
    try:
        delta = parse_duration(match.group(1))
    except DurationError as exc:
        raise DurationError(str(exc), OFFSET_HINT) from None
    return -delta if match.group(2) in ("before", "前") else delta


def format_duration(delta: timedelta) -> str:
    """The shortest exact way to write ``delta``: ``3 days``, ``36 hours``, ``90 minutes``."""
    seconds = int(delta.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"
