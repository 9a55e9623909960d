"""Words and formats per language: dates, event times, numbers, money and durations.

Everything a message prints about time or quantity goes through here, so that one reader
sees one style everywhere (subject, body, task title, owner notice):

- a day: ``2027年1月8日（金）`` / ``January 8, 2027`` (``full`` adds the weekday in English);
- a moment, in the reader's time zone and labelled with it:
  ``2027年1月20日（水）16:00（日本時間）`` / ``Wednesday, January 20, 2027 at 4:00 PM JST``;
- numbers and money: ``1,200,000``, ``1,200,000円`` / ``¥1,200,000``, ``$60,000.50``;
- day counts and durations: ``90日`` / ``90 days``, ``2時間30分`` / ``2 hours 30 minutes``.

Japanese and English are written out where their business style differs from CLDR's
defaults; every other locale (``de``, ``fr-CA``...) reads Babel's CLDR data, and an
unknown one reads English. Plain values in, strings out: no clock, no templates, and
nothing here raises on a value (a value that is not a date or a number prints as it is).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.units import format_unit

from campaigns.journeys.textfilters import FORMATS

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

DATE_FORMATS = FORMATS["date"]
"""The ``date`` formats: ``long`` (the default) spells the month out, ``full`` adds the
weekday, ``medium`` and ``short`` are the locale's compact forms (``2027/01/08``)."""

DATETIME_FORMATS = FORMATS["datetime"]
"""The ``datetime`` formats: ``long`` (the default) is the weekday, the day, the time and
the zone; ``medium`` and ``short`` shorten the day; ``time`` is the time and the zone."""

_JA_DATE = "y年M月d日（E）"
"""Japanese business mail writes the weekday in full-width parentheses after the day."""

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Zulu", "Zulu", "Universal"})


@dataclass(frozen=True)
class Reader:
    """Whose words and clock a text is written in: a locale (``ja``, ``en-GB``) and an IANA
    time zone. Templates and journey texts format through the reader implicitly."""

    locale: str = "en"
    time_zone: str = "UTC"

    def reading(self, language_of_text: str | None) -> Reader:
        """This reader, for a text written in ``language_of_text`` (the template or text
        actually chosen): the reader's own locale when the languages match (``en-GB`` keeps
        its day-month order), else the text's, so a date never switches language mid-line."""
        if not language_of_text or language(self.locale) == language(language_of_text):
            return self
        return Reader(language_of_text, self.time_zone)


def language(locale: str) -> str:
    """The language of a locale: ``ja_JP`` and ``ja-JP`` are ``ja``."""
    return locale.lower().replace("_", "-").split("-", 1)[0]


@lru_cache(maxsize=256)
def babel_locale(locale: str) -> Locale:
    """The CLDR locale for ``ja``, ``en-GB``, ``pt_BR``...; the language alone when the region
    is unknown, and English when the language is."""
    cleaned = (locale or "").strip().replace("-", "_")
    for candidate in (cleaned, language(cleaned)):
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return Locale.parse("en")


@lru_cache(maxsize=256)
def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name``; an unknown zone is UTC (the moment stays right, and its label
    says UTC)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return ZoneInfo("UTC")


def local_time(moment: datetime, time_zone: str | None) -> datetime:
    """``moment`` on the clocks of ``time_zone`` (a naive moment is UTC). At the ends of the
    calendar (year 1, year 9999), where the zone's day would not exist, it stays as it is."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(zone(time_zone))
    except OverflowError:
        return aware


def local_date(moment: datetime, time_zone: str | None) -> date:
    """The calendar day ``moment`` falls on in ``time_zone`` (a naive moment is UTC)."""
    return local_time(moment, time_zone).date()


# -- dates and moments ---------------------------------------------------------------------


def _clean(text: str) -> str:
    # CLDR puts a narrow no-break space before AM/PM; many mail clients and subject lines
    # show it as a box or a gap of the wrong width. A plain space reads the same everywhere.
    return text.replace("\u202f", " ")


def _check(format: str, allowed: tuple[str, ...]) -> str:
    if format not in allowed:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(allowed)}")
    return format


def format_date(day: date, locale: str, format: str = "long") -> str:
    """A day in the reader's words.

    ``long``: ``2027年1月8日（金）``, ``January 8, 2027``, ``8. Januar 2027``; ``full`` adds
    the weekday where ``long`` has none (``Friday, January 8, 2027``); ``medium`` and
    ``short`` are the locale's compact forms. A datetime is read as its own calendar day:
    convert it to the reader's zone first (:func:`format_moment_date`).
    """
    _check(format, DATE_FORMATS)
    day = day.date() if isinstance(day, datetime) else day
    if language(locale) == "ja" and format in ("long", "full"):
        return babel_dates.format_date(day, _JA_DATE, locale=babel_locale("ja"))
    return _clean(babel_dates.format_date(day, format, locale=babel_locale(locale)))


def format_moment_date(moment: datetime, time_zone: str, locale: str, format: str = "long") -> str:
    """The day a moment falls on in the reader's zone, in their words (a naive moment is UTC)."""
    return format_date(local_date(moment, time_zone), locale, format)


def zone_label(local: datetime, locale: str) -> str:
    """How a reader names the zone of ``local`` (an aware datetime in the reader's zone).

    Japanese: the zone's name (``日本時間``, ``米国東部時間``), else ``UTC+07:00``. Other
    languages: the abbreviation the locale uses (``EST``/``EDT``, ``JST``, ``MEZ``), else
    ``GMT+07:00``.
    """
    key = getattr(local.tzinfo, "key", None)
    if key in _UTC_NAMES:
        return "UTC"
    where = babel_locale(locale)
    if language(locale) == "ja":
        for variant in ("generic", None):
            name = babel_dates.get_timezone_name(local, "long", locale=where, zone_variant=variant)
            if name and not name.startswith(("GMT", "UTC", "+", "-")):
                return name
        return babel_dates.get_timezone_gmt(local, "long", locale=where).replace("GMT", "UTC")
    short = babel_dates.get_timezone_name(local, "short", locale=where)
    if short and short.isalpha():
        return short
    abbreviation = local.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return babel_dates.get_timezone_gmt(local, "long", locale=where)


def format_datetime(moment: datetime, time_zone: str, locale: str, format: str = "long") -> str:
    """A moment in the reader's time zone and words, with the zone named.

    ``long``: ``2027年1月20日（水）16:00（日本時間）``, ``Wednesday, January 20, 2027 at
    4:00 PM JST``; ``medium``/``short`` shorten the day; ``time``: ``16:00（日本時間）``,
    ``4:00 PM JST``. A naive moment is read as UTC.
    """
    _check(format, DATETIME_FORMATS)
    local = local_time(moment, time_zone)
    where = babel_locale(locale)
    label = zone_label(local, locale)
    clock = _clean(babel_dates.format_time(local, "short", locale=where))
    ja = language(locale) == "ja"
    time = f"{clock}（{label}）" if ja else f"{clock} {label}"
    if format == "time":
        return time
    day_format = "full" if format == "long" else format
    day = format_date(local.date(), locale, "long" if ja and format == "long" else day_format)
    if ja:
        return f"{day}{time}" if format == "long" else f"{day} {time}"
    if language(locale) == "en" and format == "long":
        return f"{day} at {time}"
    pattern = where.datetime_formats.get(day_format, "{1} {0}")
    return str(pattern).replace("{1}", day).replace("{0}", time)


def format_starts_at(starts_at: datetime, time_zone: str, locale: str) -> str:
    """When an event starts, in the recipient's time zone and words (``datetime``'s
    ``long`` form). The event's time must carry its UTC offset."""
    if starts_at.tzinfo is None:
        raise ValueError("an event's starts_at needs a UTC offset")
    return format_datetime(starts_at, time_zone, locale)


# -- numbers, money and durations ----------------------------------------------------------


MAX_DIGITS = 40
"""Numbers with more integer digits than this print as they are (``1E+45``): no amount of
money or count of anything has them, and grouping a million digits would be a long line."""


def decimal(value: object) -> Decimal | None:
    """``value`` as a finite Decimal (numbers and numeric strings) of at most
    :data:`MAX_DIGITS` integer digits, else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not number.is_finite() or number.adjusted() >= MAX_DIGITS:
        return None
    return number


def _quantized(number: Decimal, digits: int) -> Decimal:
    return number.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def format_number(value: Decimal | float | int, locale: str, digits: int | None = None) -> str:
    """``1,200,000`` / ``1.200.000`` per locale; ``digits`` fixes the decimals (else up to 3)."""
    number = decimal(value)
    if number is None:
        return str(value)
    where = babel_locale(locale)
    # Room for every digit of the number and its decimals (the default context holds 28).
    with localcontext(prec=MAX_DIGITS + 25):
        if digits is None:
            return babel_numbers.format_decimal(number, locale=where)
        digits = max(0, min(int(digits), 20))
        pattern = copy.copy(where.decimal_formats[None])
        pattern.frac_prec = (digits, digits)
        return pattern.apply(_quantized(number, digits), where)


def format_money(value: Decimal | float | int, currency: str | None, locale: str) -> str:
    """An amount with its currency, in the reader's style.

    The currency's own decimals (none for JPY, two for USD) round the amount, and a whole
    amount shows none: ``$60,000``, ``$60,000.50``, ``¥1,200,000``. Japanese writes yen as
    ``1,200,000円``. Without a currency the amount prints as a number.
    """
    number = decimal(value)
    if number is None:
        return str(value)
    code = (currency or "").strip().upper()
    if not code.isalpha() or len(code) != 3:
        return format_number(number, locale)
    with localcontext(prec=MAX_DIGITS + 25):
        digits = babel_numbers.get_currency_precision(code)
        amount = _quantized(number, digits)
        if amount == amount.to_integral_value():
            digits = 0
        if language(locale) == "ja" and code == "JPY":
            return f"{format_number(amount, 'ja', digits)}円"
        where = babel_locale(locale)
        pattern = copy.copy(where.currency_formats["standard"])
        pattern.frac_prec = (digits, digits)
        return pattern.apply(amount, where, currency=code, currency_digits=False)


def format_days(value: int, locale: str) -> str:
    """A number of days: ``90日``, ``90 days``, ``1 day``, ``90 Tage``."""
    number = decimal(value)
    if number is None:
        return str(value)
    count = int(number)
    if language(locale) == "ja":
        return f"{format_number(count, 'ja')}日"
    with localcontext(prec=MAX_DIGITS + 25):
        return format_unit(count, "duration-day", length="long", locale=babel_locale(locale))


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
    if language(locale) == "en":
        if minutes <= 120:
            return f"{minutes} minute{'s' if minutes != 1 else ''}"
        text = f"{hours} hours"
        return f"{text} {rest} minute{'s' if rest != 1 else ''}" if rest else text
    where = babel_locale(locale)
    if minutes <= 120:
        return format_unit(minutes, "duration-minute", length="long", locale=where)
    text = format_unit(hours, "duration-hour", length="long", locale=where)
    if not rest:
        return text
    return f"{text} {format_unit(rest, 'duration-minute', length='long', locale=where)}"
