"""Cell parsers for CSV imports: one text cell in, one typed value out, or a reason.

Each parser takes the stripped, non-empty cell and the column's name and returns the value
to store, or raises :class:`CellError` whose message is the reason a marketer reads
(``bad date 2027-13-01 in renewal_date; use YYYY-MM-DD``).
"""

from __future__ import annotations

import contextlib
import difflib
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Table

from campaigns.store.enums import ConsentBasis, ContractStatus


class CellError(Exception):
    """A cell's value is unusable; the message is the reason shown to the user."""


def short(value: str) -> str:
    """A value as quoted in a reason: long ones are cut, so one line stays readable."""
    return value if len(value) <= 40 else f"{value[:37]}..."


Parser = Callable[[str, str], Any]
"""Turns a stripped, non-empty cell of a column into its value, or raises :class:`CellError`."""


# --- cell parsers ---------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BREAK = re.compile(r"[\r\n]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse_text(table: Table, column: str) -> Parser:
    limit = table.c[column].type.length  # type: ignore[attr-defined]

    def parse(value: str, name: str) -> str:
        if _UNPRINTABLE.search(value):  # one search for the usual clean cell
            if _BREAK.search(value):
                raise CellError(f"line break inside {name}; keep {name} on one line")
            if bad := _CONTROL.search(value):
                raise CellError(f"control character U+{ord(bad.group()):04X} in {name}")
        if len(value) > limit:
            raise CellError(
                f"{name} is {len(value)} characters long; the most it can hold is {limit}"
            )
        return value

    return parse


_NUMBER = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Shift_JIS puts the yen sign where ASCII has the backslash: "\5,000" from cp932 is ¥5,000.
_SIGNS = {"¥": "yen", "\\": "yen", "円": "yen", "$": "dollars", "€": "euros", "£": "pounds"}
SIGN_CURRENCIES = {
    "yen": {"JPY", "CNY"},
    "dollars": {"USD", "AUD", "CAD", "NZD", "SGD", "HKD", "TWD"},
    "euros": {"EUR"},
    "pounds": {"GBP"},
}
_MONEY_LIMIT = Decimal(10) ** 16  # Numeric(18, 2)


def money_sign(value: str) -> str | None:
    """The currency a written amount names by its sign (``yen``, ``dollars``...), if any."""
    value = unicodedata.normalize("NFKC", value)
    return next((word for sign, word in _SIGNS.items() if sign in value), None)


def parse_money(value: str, name: str) -> Decimal:
    if value.isascii() and value.isdigit() and len(value) < 17:
        return Decimal(value)  # the usual case
    text = unicodedata.normalize("NFKC", value).replace(" ", "").replace("−", "-")
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()")
    for _ in range(2):  # a sign and a currency mark, in either order
        if text[:1] == "-":
            negative, text = True, text[1:]
        if text[:1] in _SIGNS:
            text = text[1:]
        if text[-1:] in _SIGNS:
            text = text[:-1]
    if not _NUMBER.fullmatch(text):
        raise CellError(
            f"{name} '{short(value)}' is not an amount; write digits such as 5000000 or 5,000,000"
        )
    amount = Decimal(text.replace(",", ""))
    if negative and amount:
        raise CellError(f"negative {name} {short(value)}; {name} must be 0 or more")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise CellError(f"{name} {short(value)} has more than 2 decimal places")
    if amount >= _MONEY_LIMIT:
        raise CellError(f"{name} {short(value)} is too large")
    return amount


_WHOLE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")


def parse_integer(low: int, high: int) -> Parser:
    def parse(value: str, name: str) -> int:
        if (
            value.isascii()
            and value.isdigit()
            and len(value) < 19
            and low <= (number := int(value)) <= high
        ):
            return number  # the usual case
        text = unicodedata.normalize("NFKC", value).replace("−", "-")
        digits = text.removeprefix("-")
        if not _WHOLE.fullmatch(digits):
            raise CellError(f"{name} '{short(value)}' is not a whole number")
        if len(digits) > 18:
            raise CellError(f"{name} {short(value)} is out of range; use {low} to {high}")
        number = int(digits.replace(",", "")) * (-1 if text.startswith("-") else 1)
        if number < 0 <= low:
            raise CellError(f"negative {name} {short(value)}; {name} must be 0 or more")
        if not low <= number <= high:
            raise CellError(f"{name} {short(value)} is out of range; use {low} to {high}")
        return number

    return parse


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_JAPANESE_DATE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")
_SLASH_DATE = re.compile(r"(\d{4})[/.](\d{1,2})[/.](\d{1,2})")


def parse_date(value: str, name: str) -> date:
    text = unicodedata.normalize("NFKC", value)
    hint = "use YYYY-MM-DD"
    if _ISO_DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise CellError(f"bad date {short(value)} in {name}; {hint}") from None
        if not 1900 <= day.year <= 2199:
            raise CellError(f"date {short(value)} in {name} is out of range (years 1900 to 2199)")
        return day
    if m := _JAPANESE_DATE.fullmatch(text):
        with contextlib.suppress(ValueError):
            return _in_range(date(*map(int, m.groups())), value, name)
    elif m := _SLASH_DATE.fullmatch(text):
        with contextlib.suppress(ValueError):
            hint += f" ({date(*map(int, m.groups())).isoformat()})"
    elif _ISO_DATE.match(text):
        hint += ", without a time"
    raise CellError(f"bad date {short(value)} in {name}; {hint}")


def _in_range(day: date, value: str, name: str) -> date:
    if not 1900 <= day.year <= 2199:
        raise CellError(f"date {short(value)} in {name} is out of range (years 1900 to 2199)")
    return day


def parse_datetime(value: str, name: str) -> datetime:
    """A moment in UTC: an ISO date (midnight UTC), an ISO date and time with or without an
    offset (without one it is UTC), or a Japanese date such as 2026年4月1日."""
    text = unicodedata.normalize("NFKC", value)
    hint = "use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS+09:00"
    if _ISO_DATE.fullmatch(text) or _JAPANESE_DATE.fullmatch(text):
        day = parse_date(value, name)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not _ISO_DATE.match(text):
        raise CellError(f"bad date and time {short(value)} in {name}; {hint}")
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise CellError(f"bad date and time {short(value)} in {name}; {hint}") from None
    _in_range(moment.date(), value, name)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_BASES = tuple(b.value for b in ConsentBasis)


@lru_cache(maxsize=64)
def parse_consent_basis(value: str, name: str) -> str:
    basis = unicodedata.normalize("NFKC", value).lower().replace("-", "_").replace(" ", "_")
    if basis in _BASES:
        return basis
    close = difflib.get_close_matches(basis, _BASES, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise CellError(f"unknown {name} '{short(value)}'{hint}; use one of {', '.join(_BASES)}")


_COUNTRY = re.compile(r"[A-Z]{2}")


@lru_cache(maxsize=512)
def parse_country(value: str, name: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper-cased (``jp``, ``ＪＰ`` are JP)."""
    code = unicodedata.normalize("NFKC", value).upper()
    if _COUNTRY.fullmatch(code):
        return code
    hint = " (JP for Japan)" if code in ("JPN", "JAPAN", "日本") else ""
    raise CellError(
        f"{name} '{short(value)}' is not a 2-letter country code such as JP or US{hint}"
    )


_STATUSES = tuple(s.value for s in ContractStatus)


@lru_cache(maxsize=1024)
def parse_status(value: str, name: str) -> str:
    status = unicodedata.normalize("NFKC", value).lower()
    if status in _STATUSES:
        return status
    close = difflib.get_close_matches(status, _STATUSES, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise CellError(f"unknown {name} '{short(value)}'{hint}; use one of {', '.join(_STATUSES)}")


_CURRENCY_ALIASES = {
    "円": "JPY",
    "¥": "JPY",
    "YEN": "JPY",
    "$": "USD",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
}


_UNSHOWN = ("Cc", "Cf", "Cs", "Zl", "Zp")  # controls, format characters, line separators


def parse_currency(value: str, name: str) -> str:
    """An ISO 4217 code, upper-cased (``usd``, ``ＵＳＤ`` and ``$`` are USD), of any currency."""
    if any(unicodedata.category(ch) in _UNSHOWN for ch in value):
        raise CellError(f"control character or line break in {name}; write a code such as JPY")
    code = unicodedata.normalize("NFKC", value).upper()
    code = _CURRENCY_ALIASES.get(code, code)
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise CellError(
            f"{name} '{short(value)}' is not a 3-letter currency code such as JPY or USD"
        )
    return code


def parse_currency_in(known: Sequence[str]) -> Parser:
    """:func:`parse_currency`, refusing a currency without a rate in ``known`` (the codes of
    ``CURRENCY_RATES``): its amounts could not be compared with anyone's."""

    def parse(value: str, name: str) -> str:
        code = parse_currency(value, name)
        if code in known:
            return code
        close = difflib.get_close_matches(code, known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise CellError(
            f"unknown {name} '{short(value)}'{hint}: CURRENCY_RATES has no rate for {code};"
            f" use one it has ({listed}) or add {code}=<rate> to it"
        )

    return parse


_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


_PLAIN_EMAIL = re.compile(
    r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


def parse_email(value: str, name: str) -> str:
    address = value.strip().lower()
    if len(address) <= 254 and _PLAIN_EMAIL.fullmatch(address) and address.index("@") <= 64:
        return address  # the usual case, checked in one go; the rest finds the reason
    shown = value if len(value) <= 80 else value[:77] + "..."
    if not address.isascii():
        plain = unicodedata.normalize("NFKC", address)
        if plain.isascii() and plain != address:
            raise CellError(f"full-width characters in {name} '{shown}'; did you mean '{plain}'?")
    if re.search(r"\s", address):
        raise CellError(f"{name} '{shown}' contains a space")
    if address.startswith("mailto:") or "<" in address or ">" in address:
        raise CellError(f"{name} '{shown}' is not a plain address; write only name@domain")
    if address.count("@") != 1:
        what = "no @" if "@" not in address else "more than one @"
        raise CellError(f"{name} '{shown}' is not an e-mail address ({what})")
    local, domain = address.split("@")
    if not local or not domain:
        raise CellError(
            f"{name} '{shown}' is not an e-mail address"
            f" (nothing {'before' if not local else 'after'} the @)"
        )
    if not local.isascii():
        raise CellError(
            f"{name} '{shown}' has non-ASCII characters before the @;"
            " such addresses are not supported"
        )
    if not domain.isascii():
        try:
            puny = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise CellError(f"{name} '{shown}' has an invalid domain") from None
        raise CellError(f"{name} '{shown}' has a non-ASCII domain; write it as {local}@{puny}")
    if len(address) > 254:
        raise CellError(f"{name} is {len(address)} characters long; an address has at most 254")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise CellError(f"{name} '{shown}' has an invalid part before the @")
    labels = domain.split(".")
    if len(labels) < 2:
        raise CellError(f"{name} '{shown}' has no dot in its domain")
    if not all(_LABEL.fullmatch(label) for label in labels) or not re.fullmatch(
        r"[a-z][a-z0-9-]+", labels[-1]
    ):
        raise CellError(f"{name} '{shown}' has an invalid domain")
    return address


_LOCALE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*", re.IGNORECASE)
_LANGUAGES = {"japanese": "ja", "日本語": "ja", "english": "en", "英語": "en"}


@lru_cache(maxsize=1024)
def parse_locale(value: str, name: str) -> str:
    text = unicodedata.normalize("NFKC", value).replace("_", "-")
    if text.lower() in _LANGUAGES:
        raise CellError(
            f"unknown {name} '{short(value)}';"
            f" use a language code such as {_LANGUAGES[text.lower()]}"
        )
    if not _LOCALE.fullmatch(text) or len(text) > 16:
        raise CellError(
            f"unknown {name} '{short(value)}'; use a language code such as en, ja or en-US"
        )
    language, *rest = text.split("-")
    parts = [language.lower()]
    for part in rest:
        parts.append(
            part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part.lower()
        )
    return "-".join(parts)


@cache
def _zones() -> dict[str, str]:
    return {zone.lower(): zone for zone in zoneinfo.available_timezones()}


_ZONE_HINTS = {"jst": "Asia/Tokyo", "pst": "America/Los_Angeles", "est": "America/New_York"}


@lru_cache(maxsize=1024)
def parse_time_zone(value: str, name: str) -> str:
    text = unicodedata.normalize("NFKC", value).replace(" ", "_")
    if zone := _zones().get(text.lower()):
        return zone
    if guess := _ZONE_HINTS.get(text.lower()):
        raise CellError(f"unknown {name} '{short(value)}'; use an IANA name such as {guess}")
    if re.match(r"(?:utc|gmt)?\s*[+-]\d", text.lower()):
        raise CellError(
            f"{name} '{short(value)}' is an offset; use an IANA name such as Asia/Tokyo"
            " (offsets change with daylight saving)"
        )
    raise CellError(f"unknown {name} '{short(value)}'; {_zone_hint(text[:64])}")


@lru_cache(maxsize=256)
def _zone_hint(text: str) -> str:
    # cached: comparing with ~600 zone names is slow, and a bad file repeats its mistakes
    cities = {zone.rsplit("/", 1)[-1].lower(): zone for zone in sorted(_zones().values())}
    close = [cities[text.lower()]] if text.lower() in cities else []
    close = close or difflib.get_close_matches(text, list(_zones().values()), n=1, cutoff=0.7)
    return f"did you mean '{close[0]}'?" if close else "use an IANA name such as Asia/Tokyo"


_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}


@lru_cache(maxsize=1024)
def parse_boolean(value: str, name: str) -> bool:
    word = unicodedata.normalize("NFKC", value).lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise CellError(f"{name} '{short(value)}' is not true or false; use true/false, yes/no or 1/0")


def parse_tags(value: str, name: str) -> list[str]:
    tags: list[str] = []
    for part in value.replace("；", ";").split(";"):
        tag = part.strip()
        if _CONTROL.search(tag) or _BREAK.search(tag):
            raise CellError(f"control character or line break in {name}")
        if len(tag) > 64:
            raise CellError(f"tag '{tag[:20]}...' in {name} is longer than 64 characters")
        if tag and tag not in tags:
            tags.append(tag)
    return tags
