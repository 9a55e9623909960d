"""docs/templates.md keeps up with the filters: every filter and every format name of
``date`` and ``datetime`` is documented, and the examples it shows are what they print."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from campaigns.content import filters
from campaigns.content.locale import (
    DATE_FORMATS,
    DATETIME_FORMATS,
    format_date,
    format_datetime,
    format_money,
)

DOC = (Path(__file__).resolve().parent.parent / "docs" / "templates.md").read_text("utf-8")


def test_every_filter_and_format_is_documented() -> None:
    for name in filters.NAMES:
        assert f"| `{name}" in DOC, name
    for format in DATE_FORMATS[1:]:  # "long" is the default: `date` alone
        assert f'`date("{format}")`' in DOC, format
    for format in DATETIME_FORMATS[1:]:
        assert f'`datetime("{format}")`' in DOC or f'datetime("{format}")' in DOC, format


def test_the_documented_examples_are_what_the_filters_print() -> None:
    day, start = date(2027, 1, 8), datetime(2027, 1, 20, 7, 0, tzinfo=UTC)
    for example in (
        format_date(day, "ja"),
        format_date(day, "en"),
        format_date(day, "en", "full"),
        format_datetime(start, "Asia/Tokyo", "ja"),
        format_datetime(start, "Asia/Tokyo", "en"),
        format_datetime(start, "Asia/Tokyo", "en", "time"),
        format_money(1_200_000, "JPY", "ja"),
        format_money(1_200_000, "JPY", "en"),
        format_money(60_000, "USD", "en"),
    ):
        assert f"`{example}`" in DOC, example
