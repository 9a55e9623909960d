"""Words and formats per language: event times, durations and survey labels in the reader's.

An invite shows when the event starts in the recipient's time zone and in their words
(``2027年1月20日(水) 16:00`` or ``Wednesday, January 20, 2027 at 4:00 PM (JST)``); a survey
names what its scores mean. Japanese and English are written out here; any other locale
reads English. Plain values in, strings out: no clock, no templates.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CSAT_WORDS = {
    "en": ("Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"),
    "ja": ("とても不満", "不満", "どちらでもない", "満足", "とても満足"),
}
"""What each CSAT score (1-5) means, per language."""

NPS_ENDS = {
    "en": ("Not at all likely", "Extremely likely"),
    "ja": ("まったく思わない", "非常にそう思う"),
}
"""What the two ends of the NPS scale (0 and 10) mean, per language."""

_WEEKDAYS_JA = "月火水木金土日"
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def language(locale: str) -> str:
    """The language of a locale: ``ja_JP`` and ``ja-JP`` are ``ja``."""
    return locale.lower().replace("_", "-").split("-", 1)[0]


def format_date(day: date, locale: str) -> str:
    """A day in the reader's words: ``2027年1月22日``, ``January 22, 2027``."""
    if language(locale) == "ja":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{_MONTHS_EN[day.month - 1]} {day.day}, {day.year}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        # An unknown zone is shown in UTC and labelled so: still the right moment.
        return ZoneInfo("UTC")


def format_starts_at(starts_at: datetime, time_zone: str, locale: str) -> str:
    """When an event starts, in the recipient's time zone and words.

    ``ja``: ``2027年1月20日(水) 16:00``, with the zone's abbreviation after it unless it is
    Japan time. Otherwise English: ``Wednesday, January 20, 2027 at 4:00 PM (JST)``.
    """
    if starts_at.tzinfo is None:
        raise ValueError("an event's starts_at needs a UTC offset")
    local = starts_at.astimezone(_zone(time_zone))
    label = local.tzname() or "UTC"
    minute = f"{local.minute:02d}"
    if language(locale) == "ja":
        weekday = _WEEKDAYS_JA[local.weekday()]
        text = f"{local.year}年{local.month}月{local.day}日({weekday}) {local.hour:02d}:{minute}"
        return text if label == "JST" else f"{text} ({label})"
    hour = local.hour % 12 or 12
    noon = "AM" if local.hour < 12 else "PM"
    day = f"{_WEEKDAYS_EN[local.weekday()]}, {_MONTHS_EN[local.month - 1]} {local.day}"
    return f"{day}, {local.year} at {hour}:{minute} {noon} ({label})"


def format_duration(duration: timedelta | None, locale: str) -> str:
    """``60分`` / ``60 minutes`` up to two hours, then ``2時間30分`` / ``2 hours 30 minutes``."""
    if duration is None:
        return ""
    minutes = round(duration.total_seconds() / 60)
    if minutes <= 0:
        return ""
    hours, rest = divmod(minutes, 60)
    if language(locale) == "ja":
        if minutes <= 120:
            return f"{minutes}分"
        return f"{hours}時間{rest}分" if rest else f"{hours}時間"
    if minutes <= 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    text = f"{hours} hours"
    return f"{text} {rest} minute{'s' if rest != 1 else ''}" if rest else text
