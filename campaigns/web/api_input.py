"""Checking the product API's input: the JSON body, its fields, and the problems found.

The field checks do not raise: each adds what is wrong, with its place
(``events[3].contact.email``),
to a :class:`Problems` list and returns None, so a request's every problem is reported at once
and nothing is stored while any stands. A body that cannot be read at all (not JSON, too large,
too deep, not storable) is an :class:`ApiError` at once. ``body``, ``no_body``, ``path_email`` and
``flag`` read
Flask's current request; the rest take plain values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_BODY = 1024 * 1024
"""Bytes in one request body; a larger one is refused with 413 before it is read."""

MAX_ITEMS = 1000
"""Events in one ``POST /events``; notifications (recipients) in one bounce webhook call."""

MAX_DEPTH = 32
"""How deep a JSON body may nest."""

MAX_REPORTED = 100
"""Problems listed in one 422 answer (its message says how many there were in all)."""

FUTURE_SLACK = timedelta(days=1)
"""How far ahead of our clock an ``occurred_at`` may be: clocks differ, a week ahead is a bug."""

_SPACES = r"\x09-\x0d\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_ADDRESS_CHAR = r"[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"

# The rules below are also the OpenAPI document's patterns (tests/test_api.py holds the two equal),
# spelt out character by character: Python's \s and JavaScript's (which JSON Schema uses) differ
# on U+0085 and U+FEFF, and a client validating against the document must get our answer.
EMAIL_PATTERN = f"^{_ADDRESS_CHAR}+@{_ADDRESS_CHAR}+$"
"""An email address as the API takes it: one @, no spaces or control characters, at most 320
characters."""

NOT_BLANK_PATTERN = f"[^{_SPACES}]"
"""A text field holds at least one character that is not white space."""

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
"""A day, ``YYYY-MM-DD`` (what JSON Schema's ``format: date`` is)."""

DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
"""A time with its offset as RFC 3339 writes it (``format: date-time``); Python alone would also
take
``2026-04-01 09:30`` or ``20260401T0930+09``, which the document's readers would not expect to
work."""

_EMAIL = re.compile(EMAIL_PATTERN)
_NOT_BLANK = re.compile(NOT_BLANK_PATTERN)
_DATE = re.compile(DATE_PATTERN, re.ASCII)
_DATE_TIME = re.compile(DATE_TIME_PATTERN, re.ASCII)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL stores neither NUL nor lone surrogates
_EMPTY = object()  # no body at all, as opposed to the JSON document null


class ApiError(Exception):
    """A refused request, answered as ``{"error": {"code", "message"[, "items"]}}``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        items: list[dict[str, Any]] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.items, self.headers = code, message, items, headers or []


class Problems:
    """Every problem found in a request's items, each with the item's index and the field."""

    def __init__(self, items: Iterable[dict[str, Any]] = ()) -> None:
        self.items = list(items)

    def add(self, index: int, where: str, message: str) -> None:
        self.items.append({"index": index, "field": where, "message": message})

    def copy(self) -> Problems:
        return Problems(self.items)

    def raise_if_any(self, total: int, noun: str) -> None:
        if not self.items:
            return
        bad = len({p["index"] for p in self.items})
        more = (
            f" (the first {MAX_REPORTED} of {len(self.items)} problems are listed)"
            if len(self.items) > MAX_REPORTED
            else ""
        )
        raise ApiError(
            422,
            f"{bad} of {total} {noun} invalid; nothing was stored{more}",
            items=self.items[:MAX_REPORTED],
        )


def body(*, empty_ok: bool = False) -> Any:
    """The request body as JSON; anything else is a 400 (or 413) that says what is wrong."""
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ApiError(
            413, f"body larger than {MAX_BODY} bytes; send at most {MAX_ITEMS} items per request"
        ) from None
    if not raw.strip():
        if empty_ok:
            return _EMPTY
        raise ApiError(400, "empty body; send a JSON document")
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 (bad byte at offset {exc.start})") from None
    return loads(decoded, "body")


def loads(source: str, where: str) -> Any:
    """``source`` as JSON, refused with a 400 naming ``where`` if it is not JSON, nests too deep or
    cannot be stored."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"number {literal[:40]} is out of range")
        return value

    try:
        data = json.loads(source, parse_constant=constant, parse_float=finite)
    except RecursionError:
        raise ApiError(400, f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, f"{where} is not valid JSON: {exc}") from None
    _check_storable(data, where)
    return data


def _check_storable(data: Any, where: str) -> None:
    """Refuse deep nesting and what the databases cannot store (NUL, lone surrogates), naming the
    place."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                raise ApiError(
                    400,
                    f"{_path(path) or where}: contains a NUL character or an unpaired surrogate",
                )
            continue
        if len(path) >= MAX_DEPTH:
            raise ApiError(400, f"{_path(path)}: JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    raise ApiError(
                        400,
                        f"{_path(path) or where}: a field name contains a NUL character or an "
                        "unpaired surrogate",
                    )
                if isinstance(item, str | dict | list):
                    stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend(
                (item, (*path, i))
                for i, item in enumerate(value)
                if isinstance(item, str | dict | list)
            )


def _path(parts: Iterable[str | int]) -> str:
    """``("events", 3, "contact")`` as ``events[3].contact``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def join(where: str, key: str) -> str:
    """The place of field ``key`` inside ``where`` (``where`` is empty for the top level)."""
    return f"{where}.{key}" if where else key


def kind(value: Any) -> str:
    """What a JSON value is, for a message: "an object", "a string", "null", ..."""
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "true/false",
        type(None): "null",
    }
    return names.get(type(value), "a number")


def object_(
    value: Any, where: str, allowed: set[str], required: set[str], problems: Problems, index: int
) -> bool:
    """Whether ``value`` is an object; its unknown and missing fields are problems, but do not make
    it False."""
    if not isinstance(value, dict):
        problems.add(index, where or "(item)", f"expected an object, got {kind(value)}")
        return False
    for key in sorted(value.keys() - allowed):
        problems.add(
            index, join(where, key), f"unknown field; expected {', '.join(sorted(allowed))}"
        )
    for key in sorted(required - value.keys()):
        problems.add(index, join(where, key), "required")
    return True


def text(
    obj: dict[str, Any], key: str, where: str, problems: Problems, index: int, *, max_len: int
) -> str | None:
    """``obj[key]`` if it is a non-blank string of at most ``max_len`` characters; None if absent
    or a problem."""
    value = obj.get(key)
    place = join(where, key)
    if value is None:
        if key in obj:
            problems.add(index, place, "expected a string, got null")
        return None
    if not isinstance(value, str):
        problems.add(index, place, f"expected a string, got {kind(value)}")
        return None
    if not _NOT_BLANK.search(value):
        problems.add(index, place, "empty")
        return None
    if len(value) > max_len:
        problems.add(index, place, f"longer than {max_len} characters")
        return None
    return value


def address(value: Any, place: str, problems: Problems, index: int) -> str | None:
    """``value`` as a lowercased email address, or None and a problem."""
    if not isinstance(value, str):
        problems.add(index, place, f"expected an email address, got {kind(value)}")
        return None
    if not is_address(value) or _UNSTORABLE.search(value):
        problems.add(index, place, f"not an email address: {value[:80]!r}")
        return None
    return value.lower()


def is_address(value: str) -> bool:
    """Whether ``value`` is an email address as :data:`EMAIL_PATTERN` has it."""
    return len(value) <= 320 and _EMAIL.fullmatch(value) is not None


def timestamp(
    value: Any, place: str, problems: Problems, index: int, now: datetime | None = None
) -> datetime | None:
    """``value`` as an ISO 8601 time in UTC, or None and a problem; with ``now``, not more than a
    day ahead of it."""
    hint = "expected an ISO 8601 time with a UTC offset, e.g. 2025-04-01T09:30:00+09:00"
    if not isinstance(value, str) or len(value) > 64:
        problems.add(index, place, f"{hint}, got {kind(value)}")
        return None
    try:
        parsed = parse_time(value).astimezone(UTC)
    except ValueError as exc:  # says what is wrong: the offset missing, or not a time at all
        problems.add(index, place, str(exc))
        return None
    except OverflowError:  # a time near year 1 or 9999 moved out of range by its offset
        problems.add(index, place, f"{hint}, got {value[:64]!r}")
        return None
    if now is not None and parsed > now + FUTURE_SLACK:
        problems.add(index, place, f"{value!r} is more than a day in the future")
        return None
    return parsed


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (``2026-04-01T09:30:00+09:00``, ``...Z``) with its offset; ValueError
    otherwise.

    A leap second (``23:59:60``) is read as the next second: Python's datetime has no second 60."""
    if not _DATE_TIME.fullmatch(value):
        if _DATE_TIME.fullmatch(value + "Z"):
            raise ValueError(f"no UTC offset in {value[:64]!r}; add Z or +09:00")
        raise ValueError(
            "expected an ISO 8601 time with a UTC offset, e.g. 2026-04-01T09:30:00+09:00, got "
            f"{value[:64]!r}"
        )
    text = value.upper().replace("Z", "+00:00")
    leap = text[17:19] == "60"
    parsed = datetime.fromisoformat(text[:17] + "59" + text[19:] if leap else text)
    return parsed + timedelta(seconds=1) if leap else parsed


def parse_day(value: str) -> date:
    """A day written ``YYYY-MM-DD``; ValueError otherwise (``20260401`` and ``2026-W14``
    included)."""
    if not _DATE.fullmatch(value):
        raise ValueError(f"expected a date YYYY-MM-DD, got {value[:20]!r}")
    return date.fromisoformat(value)


def path_email(value: str) -> str:
    """The email address in a URL path, lowercased; a 400 if it is not one."""
    problems = Problems()
    found = address(value, "email", problems, 0)
    if found is None:
        raise ApiError(400, f"email: {problems.items[0]['message']}")
    return found


def no_body() -> None:
    """For endpoints that take no input: a body other than none (or ``{}``) is a 400."""
    given = body(empty_ok=True)
    if given is not _EMPTY and given != {}:
        raise ApiError(400, "body: this endpoint takes no fields; send no body (or {})")


def flag(name: str) -> bool:
    """The query parameter ``name`` as a yes/no (absent is no): exactly one of the document's
    values (``1 0 true false yes no``); anything else, an empty value included, is a 400."""
    value = request.args.get(name)
    if value is None or value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ApiError(400, f"{name}: expected 1 or 0, got {value[:20]!r}")
