"""Dates, times, numbers and money in the reader's words and time zone: the formats
(:mod:`campaigns.content.locale`), the Jinja filters that print them in templates and journey
texts (:mod:`campaigns.content.filters`), and day counts from the reader's today."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import ChainableUndefined
from jinja2.sandbox import SandboxedEnvironment

from campaigns.content import filters
from campaigns.content.locale import (
    DATE_FORMATS,
    DATETIME_FORMATS,
    Reader,
    format_date,
    format_datetime,
    format_days,
    format_duration,
    format_moment_date,
    format_money,
    format_number,
    local_date,
)
from campaigns.content.templates import TemplateError, TemplateStore
from campaigns.engine.context import StepContext, condition_values
from campaigns.exceptions import JourneyError
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.textfilters import KNOWN, TEXT_FILTERS
from campaigns.store.models import Account, Contact

RENEWAL = date(2027, 1, 8)  # a Friday
EVENT = datetime(2027, 1, 20, 7, 0, tzinfo=UTC)  # Wednesday 16:00 in Tokyo, 02:00 in New York


# -- days ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("ja", "2027年1月8日（金）"),
        ("ja-JP", "2027年1月8日（金）"),
        ("en", "January 8, 2027"),
        ("en-US", "January 8, 2027"),
        ("en-GB", "8 January 2027"),
        ("de", "8. Januar 2027"),
        ("fr-FR", "8 janvier 2027"),
        ("xx-unknown", "January 8, 2027"),
        ("", "January 8, 2027"),
    ],
)
def test_a_day_reads_in_the_readers_words(locale: str, expected: str) -> None:
    assert format_date(RENEWAL, locale) == expected


def test_the_full_format_adds_the_weekday_and_the_compact_ones_shorten() -> None:
    assert format_date(RENEWAL, "en", "full") == "Friday, January 8, 2027"
    assert format_date(RENEWAL, "ja", "full") == "2027年1月8日（金）"
    assert format_date(RENEWAL, "de", "full") == "Freitag, 8. Januar 2027"
    assert format_date(RENEWAL, "en", "medium") == "Jan 8, 2027"
    assert format_date(RENEWAL, "ja", "short") == "2027/01/08"


def test_japanese_names_every_weekday_in_kanji_in_full_width_parentheses() -> None:
    monday = date(2027, 1, 4)
    shown = [format_date(monday + timedelta(days=n), "ja") for n in range(7)]
    assert shown == [f"2027年1月{4 + n}日（{k}）" for n, k in enumerate("月火水木金土日")]


def test_a_moment_is_read_as_the_day_it_is_where_the_reader_lives() -> None:
    moment = datetime(2027, 1, 7, 20, 0, tzinfo=UTC)  # Friday 05:00 in Tokyo
    assert format_moment_date(moment, "Asia/Tokyo", "ja") == "2027年1月8日（金）"
    assert format_moment_date(moment, "America/New_York", "en") == "January 7, 2027"
    assert local_date(datetime(2027, 1, 7, 20, 0), "Asia/Tokyo") == RENEWAL  # naive is UTC


def test_an_unknown_format_name_is_an_error_that_names_it() -> None:
    with pytest.raises(ValueError, match="'lng'"):
        format_date(RENEWAL, "en", "lng")
    with pytest.raises(ValueError, match="'date'"):
        format_datetime(EVENT, "UTC", "en", "date")


# -- moments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "locale", "expected"),
    [
        ("Asia/Tokyo", "ja", "2027年1月20日（水）16:00（日本時間）"),
        ("Asia/Tokyo", "en", "Wednesday, January 20, 2027 at 4:00 PM JST"),
        ("America/New_York", "en", "Wednesday, January 20, 2027 at 2:00 AM EST"),
        ("America/New_York", "ja", "2027年1月20日（水）2:00（米国東部時間）"),
        ("Europe/Berlin", "de", "Mittwoch, 20. Januar 2027, 08:00 MEZ"),
        ("UTC", "ja", "2027年1月20日（水）7:00（UTC）"),
        ("Not/AZone", "en", "Wednesday, January 20, 2027 at 7:00 AM UTC"),
    ],
)
def test_a_moment_reads_in_the_readers_zone_with_the_zone_named(
    zone: str, locale: str, expected: str
) -> None:
    assert format_datetime(EVENT, zone, locale) == expected


def test_new_york_times_follow_daylight_saving_time() -> None:
    # 2027-03-14: clocks in New York go from 02:00 EST to 03:00 EDT.
    before = datetime(2027, 3, 14, 6, 30, tzinfo=UTC)
    after = datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert format_datetime(before, "America/New_York", "en", "time") == "1:30 AM EST"
    assert format_datetime(after, "America/New_York", "en", "time") == "3:30 AM EDT"
    summer = datetime(2027, 7, 20, 20, 0, tzinfo=UTC)
    assert format_datetime(summer, "America/New_York", "en") == (
        "Tuesday, July 20, 2027 at 4:00 PM EDT"
    )
    # and back: 2027-11-07 01:30 happens twice; the offset of the moment decides.
    first = datetime(2027, 11, 7, 5, 30, tzinfo=UTC)
    second = datetime(2027, 11, 7, 6, 30, tzinfo=UTC)
    assert format_datetime(first, "America/New_York", "en", "time") == "1:30 AM EDT"
    assert format_datetime(second, "America/New_York", "en", "time") == "1:30 AM EST"


def test_the_shorter_moment_formats() -> None:
    assert format_datetime(EVENT, "Asia/Tokyo", "ja", "time") == "16:00（日本時間）"
    assert format_datetime(EVENT, "Asia/Tokyo", "en", "medium") == "Jan 20, 2027, 4:00 PM JST"
    assert format_datetime(EVENT, "Asia/Tokyo", "ja", "short") == "2027/01/20 16:00（日本時間）"


def test_a_moment_without_an_offset_is_read_as_utc() -> None:
    naive = datetime(2027, 1, 20, 7, 0)
    assert format_datetime(naive, "Asia/Tokyo", "ja") == "2027年1月20日（水）16:00（日本時間）"


def test_times_use_plain_spaces_not_cldrs_narrow_no_break_space() -> None:
    for zone in ("Asia/Tokyo", "America/New_York"):
        assert "\u202f" not in format_datetime(EVENT, zone, "en")


# -- numbers, money, counts ------------------------------------------------------------


def test_numbers_are_grouped_per_locale() -> None:
    assert format_number(1_200_000, "en") == "1,200,000"
    assert format_number(1_200_000, "ja") == "1,200,000"
    assert format_number(1_200_000, "de") == "1.200.000"
    assert format_number(Decimal("1234.5678"), "en") == "1,234.568"
    assert format_number(1234.5, "en", 2) == "1,234.50"
    assert format_number("not a number", "en") == "not a number"


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (1_200_000, "JPY", "ja", "1,200,000円"),
        (1_200_000, "JPY", "en", "¥1,200,000"),
        (Decimal("1234.5"), "JPY", "en", "¥1,235"),  # yen has no decimals: rounded
        (Decimal("1234.4"), "JPY", "ja", "1,234円"),
        (60_000, "USD", "en", "$60,000"),  # a whole amount shows no cents
        (Decimal("60000.5"), "USD", "en", "$60,000.50"),  # dollars have two decimals
        (Decimal("0.005"), "USD", "en", "$0.01"),
        (60_000, "USD", "ja", "$60,000"),
        (Decimal("99.5"), "EUR", "de", "99,50\xa0€"),
        (60_000, "usd", "en", "$60,000"),
        (5, None, "en", "5"),
        (5, "", "ja", "5"),
    ],
)
def test_money_carries_its_currency_and_the_currencys_decimals(
    amount: Any, currency: str | None, locale: str, expected: str
) -> None:
    assert format_money(amount, currency, locale) == expected


def test_jpy_never_shows_decimals_and_usd_shows_cents_when_there_are_any() -> None:
    assert "." not in format_money(Decimal("1200000.75"), "JPY", "en")
    assert format_money(Decimal("1200000.75"), "USD", "en").endswith(".75")


def test_day_counts_read_naturally() -> None:
    assert format_days(90, "ja") == "90日"
    assert format_days(90, "en") == "90 days"
    assert format_days(1, "en") == "1 day"
    assert format_days(90, "de") == "90 Tage"


def test_durations_in_other_languages_come_from_cldr() -> None:
    assert format_duration(timedelta(minutes=150), "de") == "2 Stunden 30 Minuten"
    assert format_duration(timedelta(minutes=60), "fr") == "60 minutes"


# -- never raising on a value ----------------------------------------------------------

LOCALES = st.sampled_from(["ja", "en", "en-GB", "de", "fr", "pt-BR", "zh-Hant-TW", "xx", ""])
ZONES = st.sampled_from([*sorted(available_timezones()), "Not/AZone", ""])
OFFSETS = st.one_of(
    st.none(),
    st.just(UTC),
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone),
    st.sampled_from(["Asia/Tokyo", "America/New_York", "Australia/Lord_Howe"]).map(ZoneInfo),
)
NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.booleans(),
)


@given(day=st.dates(), locale=LOCALES, format=st.sampled_from(DATE_FORMATS))
def test_any_day_formats_in_any_locale(day: date, locale: str, format: str) -> None:
    assert format_date(day, locale, format)


@given(
    moment=st.datetimes(timezones=OFFSETS),
    zone=ZONES,
    locale=LOCALES,
    format=st.sampled_from(DATETIME_FORMATS),
)
def test_any_moment_formats_in_any_zone_and_locale(
    moment: datetime, zone: str, locale: str, format: str
) -> None:
    assert format_datetime(moment, zone, locale, format)
    assert format_moment_date(moment, zone, locale)


@given(value=NUMBERS, currency=st.sampled_from(["JPY", "USD", "EUR", "KWD", "XYZ", "", None]))
def test_any_value_prints_as_a_number_or_money_without_raising(
    value: object, currency: str | None
) -> None:
    for locale in ("ja", "en", "de", "ar"):
        assert isinstance(format_number(value, locale), str)  # type: ignore[arg-type]
        assert isinstance(format_number(value, locale, 2), str)  # type: ignore[arg-type]
        assert isinstance(format_money(value, currency, locale), str)  # type: ignore[arg-type]
        assert isinstance(format_days(value, locale), str)  # type: ignore[arg-type]


@given(value=st.one_of(NUMBERS, st.dates(), st.datetimes(timezones=OFFSETS), st.none()))
def test_every_filter_takes_any_value(value: object) -> None:
    env = filters.install(SandboxedEnvironment(undefined=ChainableUndefined))
    source = "{{ v | date }}{{ v | datetime }}{{ v | number }}{{ v | money('JPY') }}{{ v | days }}"
    env.from_string(source).render(v=value, **{filters.READER: Reader("ja", "Asia/Tokyo")})


# -- the filters in Jinja --------------------------------------------------------------


def render(source: str, **values: object) -> str:
    env = filters.install(SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined))
    return env.from_string(source).render(**values)


def test_the_filters_read_the_renders_reader() -> None:
    values = {
        "d": RENEWAL,
        "t": EVENT,
        "arr": Decimal(1_200_000),
        filters.READER: Reader("ja", "Asia/Tokyo"),
    }
    text = "{{ d | date }} {{ t | datetime }} {{ arr | money('JPY') }} {{ 90 | days }}"
    assert render(text, **values) == (
        "2027年1月8日（金） 2027年1月20日（水）16:00（日本時間） 1,200,000円 90日"
    )
    values[filters.READER] = Reader("en", "America/New_York")
    assert render(text, **values) == (
        "January 8, 2027 Wednesday, January 20, 2027 at 2:00 AM EST ¥1,200,000 90 days"
    )
    assert render("{{ d | date('full') }}", **values) == "Friday, January 8, 2027"


def test_without_a_reader_the_contact_reads_and_without_one_english_in_utc() -> None:
    contact = {"locale": "ja", "time_zone": "Asia/Tokyo"}
    assert render("{{ t | datetime('time') }}", t=EVENT, contact=contact) == "16:00（日本時間）"
    assert render("{{ t | datetime('time') }}", t=EVENT) == "7:00 AM UTC"
    # The reader wins over the contact: owner mail is about a customer, read by the owner.
    reader = {filters.READER: Reader("en", "UTC")}
    assert render("{{ d | date }}", d=RENEWAL, contact=contact, **reader) == "January 8, 2027"


def test_empty_values_print_nothing_and_strange_ones_print_as_they_are() -> None:
    assert render("[{{ none | date }}{{ missing.field | money('JPY') }}{{ '' | number }}]") == "[]"
    assert render("{{ 'soon' | date }} {{ 'n/a' | number }}") == "soon n/a"


def test_iso_strings_are_read_as_dates_and_moments() -> None:
    reader = {filters.READER: Reader("ja", "Asia/Tokyo")}
    assert render("{{ '2027-01-08' | date }}", **reader) == "2027年1月8日（金）"
    assert render("{{ '2027-01-20T07:00:00Z' | datetime('time') }}", **reader) == (
        "16:00（日本時間）"
    )


def test_a_reader_reads_a_text_in_another_language_in_that_language() -> None:
    reader = Reader("de-DE", "Europe/Berlin")
    assert reader.reading("de") is reader
    assert reader.reading("en") == Reader("en", "Europe/Berlin")
    assert Reader("en-GB").reading("en") == Reader("en-GB")


# -- journey texts and day counts ------------------------------------------------------

JOURNEY = textwrap.dedent(
    """\
    journey: words
    name: Words
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: call
        task:
          kind: call
          title:
            en: "Renews {{ account.renewal_date | date }} ({{ days_to_renewal | days }})"
            ja: "更新日 {{ account.renewal_date | date }}（あと{{ days_to_renewal | days }}）"
          due: 2 days
    """
)


def step_context(contact: Contact, account: Account, now: datetime) -> StepContext:
    """A step context for texts only: no engine, session or enrollment is needed."""
    journey = parse_journey(JOURNEY, "words.yaml")
    none = cast(Any, None)
    return StepContext(none, none, none, contact, account, journey, now)


def test_journey_texts_print_dates_in_the_contacts_words() -> None:
    account = Account(name="ACME", renewal_date=RENEWAL)
    now = datetime(2026, 10, 20, 3, 0, tzinfo=UTC)
    title = parse_journey(JOURNEY, "words.yaml").step("call").config.title  # type: ignore[union-attr]
    ja = step_context(Contact(locale="ja", time_zone="Asia/Tokyo"), account, now)
    en = step_context(Contact(locale="en", time_zone="America/New_York"), account, now)
    de = step_context(Contact(locale="de", time_zone="Europe/Berlin"), account, now)
    assert ja.text(title) == "更新日 2027年1月8日（金）（あと80日）"
    assert en.text(title) == "Renews January 8, 2027 (81 days)"
    # No German text: the English one, with English dates, not "8. Januar" inside English.
    assert de.text(title) == "Renews January 8, 2027 (80 days)"


def test_days_to_renewal_counts_from_today_in_the_contacts_time_zone() -> None:
    account = Account(name="ACME", renewal_date=RENEWAL)
    now = datetime(2026, 10, 20, 20, 0, tzinfo=UTC)  # Oct 21 05:00 in Tokyo, Oct 20 in New York
    tokyo = condition_values(Contact(time_zone="Asia/Tokyo"), account, now)
    new_york = condition_values(Contact(time_zone="America/New_York"), account, now)
    assert tokyo["days_to_renewal"] == (RENEWAL - date(2026, 10, 21)).days == 79
    assert new_york["days_to_renewal"] == (RENEWAL - date(2026, 10, 20)).days == 80
    assert cast(dict[str, Any], tokyo["account"])["days_to_renewal"] == 79


# -- bad input: unknown filters and formats are found before anything is sent ---------

BAD_TEXT = textwrap.dedent(
    """\
    journey: words
    name: Words
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: remind
        email:
          template: renewal_reminder
          subject: "Renews {{ account.renewal_date | dat }}"
      - id: call
        task:
          kind: call
          title:
            en: "Renews {{ account.renewal_date | date('lng') }}"
            ja: "更新日 {{ account.arr | money(account.currency) | fancy }}"
          due: 2 days
    """
)


def problems(text: str) -> list[str]:
    try:
        parse_journey(text, "words.yaml")
    except JourneyError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_validate_reports_an_unknown_filter_or_date_format_at_its_place() -> None:
    assert problems(BAD_TEXT) == [
        "words.yaml:9:50: unknown filter '|dat' in 'subject' (did you mean 'date'?)",
        "words.yaml:14:53: unknown date format 'lng' in 'title' (did you mean 'long'?)",
        "words.yaml:15:61: unknown filter '|fancy' in 'title'"
        " (beyond Jinja's own filters there are date, datetime, number, money, days"
        " (docs/templates.md#dates-numbers-and-money))",
    ]
    assert problems(JOURNEY) == []


@given(name=st.from_regex(r"[a-z][a-z_]{1,12}", fullmatch=True))
def test_any_filter_name_is_known_to_jinja_or_to_us_or_reported(name: str) -> None:
    text = BAD_TEXT.replace("dat }}", f"{name} }}}}").split("  - id: call")[0]
    found = problems(text)
    assert (found == []) == (name in KNOWN), found
    if found:
        assert found[0].startswith(f"words.yaml:9:50: unknown filter '|{name}'")


def test_the_template_store_rejects_an_unknown_filter_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "en"
    folder.mkdir()
    (folder / "note.txt").write_text("Hello\nRenews {{ account.renewal_date | dat }}\n")
    (folder / "note.mjml").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>\n"
    )
    with pytest.raises(TemplateError, match=r"note\.txt:2: unknown filter '\|dat'"):
        TemplateStore(tmp_path).compile("note", "en")


def test_the_filters_the_renderer_has_are_the_ones_validate_knows() -> None:
    assert tuple(filters.FILTERS) == filters.NAMES == TEXT_FILTERS


def test_an_account_journeys_own_texts_read_in_its_contacts_common_language_and_zone() -> None:
    account = Account(name="ACME", renewal_date=RENEWAL)
    now = datetime(2026, 10, 20, 20, 0, tzinfo=UTC)  # Oct 21 in Tokyo, Oct 20 in New York
    members = [
        Contact(locale="ja", time_zone="Asia/Tokyo"),
        Contact(locale="ja-JP", time_zone="Asia/Tokyo"),
        Contact(locale="en", time_zone="America/New_York"),
    ]
    none = cast(Any, None)
    journey = parse_journey(JOURNEY, "words.yaml")
    ctx = StepContext(none, none, none, None, account, journey, now, members=members)
    title = journey.step("call").config.title  # type: ignore[union-attr]
    assert ctx.text(title) == "更新日 2027年1月8日（金）（あと79日）"
