"""The Jinja filters that print dates, times, numbers and money in the reader's words.

``{{ account.renewal_date | date }}``, ``{{ invite.starts | datetime }}``,
``{{ account.arr | money(account.currency) }}``, ``{{ n | number }}`` and
``{{ days_to_renewal | days }}`` work the same in an email template, its subject and
preheader (:mod:`campaigns.content.render`) and in a journey's texts: task titles and
notes, in-app text (:mod:`campaigns.engine.context`). The formats are
:mod:`campaigns.content.locale`'s.

The reader is implicit: whoever renders puts a :class:`~campaigns.content.locale.Reader`
under :data:`READER` in the context (the contact for customer email and journey texts,
the owner for owner mail). Without one, the context's ``contact`` (its ``locale`` and
``time_zone``) is the reader, and without that, English in UTC.

A filter never fails on its value: an empty one prints nothing, and one that is not a date
(or a number) prints as it is. ISO strings (``2027-01-08``, ``2027-01-20T07:00:00Z``, as
JSON attributes hold dates) are read as dates and moments. An unknown format name is an
error, so that a typo shows in the preview instead of printing something else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from jinja2 import Environment, Undefined, pass_context
from jinja2.runtime import Context

from campaigns.content.locale import (
    Reader,
    format_date,
    format_datetime,
    format_days,
    format_moment_date,
    format_money,
    format_number,
)
from campaigns.journeys.textfilters import TEXT_FILTERS

READER = "_reader"
"""The context key of the render's :class:`Reader` (a name no template field uses)."""

NAMES = TEXT_FILTERS
"""The filters this module adds to Jinja's own (``campaigns validate`` knows them too)."""


def reader_of(values: Mapping[str, Any] | Context) -> Reader:
    """The reader of a render: its :data:`READER`, else its ``contact``, else English/UTC."""
    reader = values.get(READER)
    if isinstance(reader, Reader):
        return reader
    contact = values.get("contact")
    if isinstance(contact, Mapping):
        return Reader(str(contact.get("locale") or "en"), str(contact.get("time_zone") or "UTC"))
    return Reader()


def _empty(value: object) -> bool:
    return value is None or isinstance(value, Undefined) or value == ""


def as_moment(value: object) -> date | datetime | None:
    """A date or datetime from a value: itself, or parsed from an ISO string; else None."""
    if isinstance(value, date):  # a datetime is a date too
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        return None


@pass_context
def date_filter(context: Context, value: object, format: str = "long") -> str:
    """``{{ d | date }}``, ``{{ d | date("full") }}``: a day in the reader's words; a moment
    is first moved to the reader's time zone, so it names the reader's day."""
    if _empty(value):
        return ""
    moment = as_moment(value)
    reader = reader_of(context)
    if isinstance(moment, datetime):
        return format_moment_date(moment, reader.time_zone, reader.locale, format)
    if isinstance(moment, date):
        return format_date(moment, reader.locale, format)
    return str(value)


@pass_context
def datetime_filter(context: Context, value: object, format: str = "long") -> str:
    """``{{ t | datetime }}``, ``{{ t | datetime("time") }}``: a moment in the reader's time
    zone and words, the zone named; a naive moment is UTC, a bare day prints as ``date``."""
    if _empty(value):
        return ""
    moment = as_moment(value)
    reader = reader_of(context)
    if isinstance(moment, datetime):
        return format_datetime(moment, reader.time_zone, reader.locale, format)
    if isinstance(moment, date):
        return format_date(moment, reader.locale)
    return str(value)


@pass_context
def number_filter(context: Context, value: object, digits: int | None = None) -> str:
    """``{{ n | number }}``, ``{{ n | number(1) }}``: grouped per locale (``1,200,000``)."""
    if _empty(value):
        return ""
    return format_number(value, reader_of(context).locale, digits)  # type: ignore[arg-type]


@pass_context
def money_filter(context: Context, value: object, currency: object = None) -> str:
    """``{{ account.arr | money(account.currency) }}``: ``1,200,000円``, ``$60,000``."""
    if _empty(value):
        return ""
    code = None if _empty(currency) else str(currency)
    return format_money(value, code, reader_of(context).locale)  # type: ignore[arg-type]


@pass_context
def days_filter(context: Context, value: object) -> str:
    """``{{ days_to_renewal | days }}``: ``90日``, ``90 days``, ``1 day``."""
    if _empty(value):
        return ""
    return format_days(value, reader_of(context).locale)  # type: ignore[arg-type]


FILTERS: dict[str, Callable[..., str]] = {  # one per name of TEXT_FILTERS
    "date": date_filter,
    "datetime": datetime_filter,
    "number": number_filter,
    "money": money_filter,
    "days": days_filter,
}


def install(env: Environment) -> Environment:
    """Add the filters to ``env`` (every environment that renders text for a person)."""
    env.filters.update(FILTERS)
    return env
