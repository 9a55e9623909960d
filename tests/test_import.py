"""CSV import: upsert by natural key, bad rows reported by line and skipped, strict mode,
encodings (BOM, Shift_JIS), duplicates, streaming in batches, and the demo samples."""

from __future__ import annotations

import csv
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update

from campaigns import currency
from campaigns.exceptions import ImportRowError
from campaigns.imports import kinds
from campaigns.imports.importer import ImportReport, RowError, import_csv
from campaigns.imports.samples import (
    ACCOUNT_COLUMNS,
    generate_accounts_csv,
    generate_contacts_csv,
    write_samples,
)
from campaigns.store.models import Account, Contact

ACCOUNTS_HEADER = "external_id,name,arr,ltv,currency,plan,contract_status,contract_start,renewal_date,industry,company_size,owner_email,health_score,notes"
CONTACTS_HEADER = "email,account_external_id,name,role,locale,time_zone,subscribed,tags,notes"
GOOD = {
    "accounts": (
        "GOOD-1,Good One,1000,,JPY,starter,active,2026-01-01,2027-01-01,retail,10,csm@example.com,50,",
        "GOOD-2,Good Two,2000,,JPY,growth,trial,,,,,,,",
    ),
    "contacts": (
        "good1@example.com,,Good One,user,en,UTC,true,,",
        "good2@example.com,,Good Two,admin,ja,Asia/Tokyo,false,beta,",
    ),
}
HEADERS = {"accounts": ACCOUNTS_HEADER, "contacts": CONTACTS_HEADER}


def write(
    folder: Path, content: str | bytes, name: str = "file.csv", encoding: str = "utf-8"
) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def accounts(db: Any) -> dict[str, Account]:
    with db.session() as s:
        return {a.external_id: a for a in s.scalars(select(Account))}


def contacts(db: Any) -> dict[str, Contact]:
    with db.session() as s:
        return {c.email: c for c in s.scalars(select(Contact))}


def counts(report: ImportReport) -> tuple[int, int, int]:
    return report.inserted, report.updated, report.skipped


# --- upserts -----------------------------------------------------------------------------


def test_accounts_are_inserted_then_updated_by_external_id(db, tmp_path):
    first = write(
        tmp_path,
        f'{ACCOUNTS_HEADER}\nA-1,Acme,"5,000,000",,,enterprise,active,2025-04-01,2026-04-01,software,120,Owner@Example.com,80,vip\nA-2,Beta,¥900000,,JPY,starter,trial,,,,,,,\n',
    )
    report = import_csv("accounts", first, db.sessions)
    assert counts(report) == (2, 0, 0) and report.committed and not report.errors
    before = accounts(db)
    acme = before["A-1"]
    assert acme.arr == Decimal("5000000") and acme.currency == "JPY" and acme.plan == "enterprise"
    assert (
        acme.renewal_date == date(2026, 4, 1)
        and acme.company_size == 120
        and acme.health_score == 80
    )
    assert acme.owner_email == "owner@example.com" and acme.attributes == {"notes": "vip"}

    second = write(
        tmp_path,
        "external_id,name,arr,health_score\nA-1,Acme Corp,6000000,75\nA-3,Gamma,10,\n",
        name="second.csv",
    )
    report = import_csv("accounts", second, db.sessions)
    assert counts(report) == (1, 1, 0)
    after = accounts(db)
    assert after["A-1"].name == "Acme Corp" and after["A-1"].arr == Decimal("6000000")
    assert after["A-1"].plan == "enterprise", "a column the file lacks is left as stored"
    assert after["A-1"].created_at == acme.created_at
    assert after["A-1"].updated_at > acme.updated_at
    assert set(after) == {"A-1", "A-2", "A-3"}


def test_contacts_are_upserted_by_normalised_email(db, tmp_path):
    import_csv("contacts", write(tmp_path, "email,name\n  Taro@Example.JP ,Taro\n"), db.sessions)
    report = import_csv(
        "contacts", write(tmp_path, "email,name\ntaro@example.jp,太郎\n", "b.csv"), db.sessions
    )
    assert counts(report) == (0, 1, 0)
    assert {e: c.name for e, c in contacts(db).items()} == {"taro@example.jp": "太郎"}


def test_contact_defaults_and_conversions(db, tmp_path):
    path = write(
        tmp_path,
        "Email,Locale,Time Zone,Subscribed,Tags\na@example.com,,,,\nb@example.com,ja_jp,asia/tokyo,No, vip ; beta;vip;\n",
    )
    import_csv("contacts", path, db.sessions)
    found = contacts(db)
    a, b = found["a@example.com"], found["b@example.com"]
    assert (a.locale, a.time_zone, a.subscribed, a.tags) == ("en", "UTC", True, [])
    assert (b.locale, b.time_zone, b.subscribed, b.tags) == (
        "ja-JP",
        "Asia/Tokyo",
        False,
        ["vip", "beta"],
    )


def test_an_empty_cell_keeps_what_is_stored(db, tmp_path):
    import_csv(
        "accounts",
        write(tmp_path, "external_id,name,plan,currency,arr\nA,Acme,growth,USD,100\n"),
        db.sessions,
    )
    import_csv(
        "accounts",
        write(tmp_path, "external_id,name,plan,currency,arr\nA,Acme,,,\n", "b.csv"),
        db.sessions,
    )
    acme = accounts(db)["A"]
    assert (acme.plan, acme.currency, acme.arr) == ("growth", "USD", Decimal("100"))

    import_csv(
        "contacts",
        write(tmp_path, "email,subscribed,locale,tags\nx@example.com,false,ja,a;b\n", "c.csv"),
        db.sessions,
    )
    import_csv(
        "contacts",
        write(tmp_path, "email,subscribed,locale,tags\nx@example.com,,,\n", "d.csv"),
        db.sessions,
    )
    x = contacts(db)["x@example.com"]
    assert (x.subscribed, x.locale, x.tags) == (False, "ja", ["a", "b"]), (
        "an empty cell never re-subscribes"
    )


def test_unknown_columns_become_attributes_merged_across_imports(db, tmp_path):
    import_csv(
        "accounts",
        write(tmp_path, "external_id,name,Region,CRM Id,部署\nA,Acme,APAC,,営業部\n"),
        db.sessions,
    )
    assert accounts(db)["A"].attributes == {"region": "APAC", "部署": "営業部"}
    import_csv(
        "accounts",
        write(tmp_path, "external_id,name,segment,region\nA,Acme,smb,\n", "b.csv"),
        db.sessions,
    )
    assert accounts(db)["A"].attributes == {"region": "APAC", "部署": "営業部", "segment": "smb"}


def test_header_names_are_matched_case_insensitively_and_columns_may_come_in_any_order(
    db, tmp_path
):
    path = write(
        tmp_path, ' NAME , External_ID ,Renewal Date,ARR\nAcme,A-1,2026-07-01,"¥1,500,000"\n'
    )
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (1, 0, 0)
    acme = accounts(db)["A-1"]
    assert (
        acme.name == "Acme"
        and acme.renewal_date == date(2026, 7, 1)
        and acme.arr == Decimal("1500000")
    )


def test_columns_the_engine_computes_are_ignored_with_a_warning(db, tmp_path):
    path = write(
        tmp_path, "id,external_id,name,tier,renewal_data\n9,A,Acme,high_touch,2026-01-01\n"
    )
    report = import_csv("accounts", path, db.sessions)
    reasons = [str(w) for w in report.warnings]
    assert f"{path}:1: column 'id' is ignored (set by the database)" in reasons
    assert any("column 'tier' is ignored" in r for r in reasons)
    assert any(
        "'renewal_data' is kept as an attribute (did you mean 'renewal_date'?)" in r
        for r in reasons
    )
    acme = accounts(db)["A"]
    assert acme.id != 9 and acme.tier is None and acme.attributes == {"renewal_data": "2026-01-01"}


# --- accounts and contacts together -----------------------------------------------------


def test_contacts_are_linked_to_their_accounts_by_external_id(db, tmp_path):
    import_csv(
        "accounts",
        write(tmp_path, "external_id,name\nA-1,株式会社山田製作所\nA-2,Beta\n"),
        db.sessions,
    )
    path = write(
        tmp_path,
        "email,account_external_id,name\ntaro@example.jp,A-1,山田 太郎\nann@example.com,A-2,Ann\nsolo@example.com,,Solo\n",
        "c.csv",
    )
    assert counts(import_csv("contacts", path, db.sessions)) == (3, 0, 0)
    ids = {a.external_id: a.id for a in accounts(db).values()}
    found = contacts(db)
    assert found["taro@example.jp"].account_id == ids["A-1"]
    assert found["ann@example.com"].account_id == ids["A-2"]
    assert found["solo@example.com"].account_id is None


def test_an_unknown_account_makes_a_bad_row_and_the_other_rows_are_kept(db, tmp_path):
    import_csv("accounts", write(tmp_path, "external_id,name\nA-1,Acme\n"), db.sessions)
    path = write(
        tmp_path,
        "email,account_external_id\na@example.com,A-1\nb@example.com,A-404\nc@example.com,\n",
        "c.csv",
    )
    report = import_csv("contacts", path, db.sessions)
    assert counts(report) == (2, 0, 1)
    assert [str(e) for e in report.errors] == [
        f"{path}:3: unknown account_external_id 'A-404'; import that account first"
    ]
    assert set(contacts(db)) == {"a@example.com", "c@example.com"}


def test_an_empty_account_cell_keeps_the_stored_link(db, tmp_path):
    import_csv("accounts", write(tmp_path, "external_id,name\nA-1,Acme\n"), db.sessions)
    import_csv(
        "contacts",
        write(tmp_path, "email,account_external_id\na@example.com,A-1\n", "b.csv"),
        db.sessions,
    )
    import_csv(
        "contacts",
        write(tmp_path, "email,account_external_id,name\na@example.com,,Ann\n", "c.csv"),
        db.sessions,
    )
    assert contacts(db)["a@example.com"].account_id is not None


# --- encodings ---------------------------------------------------------------------------

JAPANESE = "external_id,name,industry\nJ-1,株式会社さくら物流,物流\nJ-2,東京精機株式会社,製造\n"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"], ids=["with-bom", "without-bom"])
def test_japanese_names_round_trip_with_and_without_bom(db, tmp_path, encoding):
    path = write(tmp_path, JAPANESE.replace("\n", "\r\n"), encoding=encoding)
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (2, 0, 0) and not report.warnings
    assert {k: (a.name, a.industry) for k, a in accounts(db).items()} == {
        "J-1": ("株式会社さくら物流", "物流"),
        "J-2": ("東京精機株式会社", "製造"),
    }


def test_a_bom_is_ignored_even_when_the_encoding_is_plain_utf8(db, tmp_path):
    path = write(tmp_path, JAPANESE, encoding="utf-8-sig")
    assert counts(import_csv("accounts", path, db.sessions, encoding="utf-8")) == (2, 0, 0)


def test_a_shift_jis_file_imports_with_encoding_cp932(db, tmp_path):
    # Excel on Japanese Windows saves ¥ as byte 0x5C, which reads back as a backslash
    content = JAPANESE.replace("industry", "industry,arr").replace(",物流", ',物流,"\\5,000,000"')
    content = content.replace(",製造", ",製造,")
    path = write(tmp_path, content, encoding="cp932")
    report = import_csv("accounts", path, db.sessions, encoding="cp932")
    assert counts(report) == (2, 0, 0)
    j1 = accounts(db)["J-1"]
    assert (j1.name, j1.industry, j1.arr) == ("株式会社さくら物流", "物流", Decimal("5000000"))


def test_a_shift_jis_file_read_as_utf8_names_the_encoding_and_keeps_ascii_rows(db, tmp_path):
    path = write(tmp_path, JAPANESE + "E-1,Plain English Ltd,retail\n", encoding="cp932")
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (1, 0, 2)
    assert [e.line for e in report.errors] == [2, 3]
    reason = report.errors[0].reason
    assert "not valid UTF-8" in reason and "Shift_JIS" in reason and "株式会社さくら物流" in reason
    assert 'save it as "CSV UTF-8" or pass --encoding cp932' in reason
    assert set(accounts(db)) == {"E-1"}


def test_a_utf8_file_read_as_cp932_suggests_utf8_for_the_rows_cp932_cannot_read(
    sqlite_db, tmp_path
):
    path = write(tmp_path, "external_id,name\nA,smile 😀\nB,ok\n")  # no cp932 reading of the emoji
    report = import_csv("accounts", path, sqlite_db.sessions, encoding="cp932")
    assert [e.line for e in report.errors] == [2]
    assert "--encoding utf-8" in report.errors[0].reason


def test_a_utf16_file_is_refused_with_a_hint(sqlite_db, tmp_path):
    path = write(tmp_path, JAPANESE, encoding="utf-16")
    with pytest.raises(ImportRowError, match=r'UTF-16.*save it as "CSV UTF-8"'):
        import_csv("accounts", path, sqlite_db.sessions)
    assert counts(import_csv("accounts", path, sqlite_db.sessions, encoding="utf-16")) == (2, 0, 0)


# --- strict mode and duplicates ------------------------------------------------------------


def test_strict_mode_writes_nothing_and_reports_every_bad_row(db, tmp_path):
    import_csv("accounts", write(tmp_path, "external_id,name\nA-0,Before\n"), db.sessions)
    rows = [f"A-{i},Name {i},{-1 if i in (3, 8) else i}" for i in range(10)]
    path = write(tmp_path, "external_id,name,arr\n" + "\n".join(rows) + "\n", "strict.csv")
    report = import_csv("accounts", path, db.sessions, strict=True, batch_size=2)
    assert not report.committed
    assert counts(report) == (0, 0, 2)
    assert [(e.line, "negative arr" in e.reason) for e in report.errors] == [(5, True), (10, True)]
    assert {k: a.name for k, a in accounts(db).items()} == {"A-0": "Before"}, (
        "nothing written, nothing updated"
    )


def test_strict_mode_commits_when_every_row_is_good(db, tmp_path):
    path = write(tmp_path, "external_id,name\nA,Acme\nB,Beta\nC,Gamma\n")
    report = import_csv("accounts", path, db.sessions, strict=True, batch_size=2)
    assert report.committed and counts(report) == (3, 0, 0)
    assert set(accounts(db)) == {"A", "B", "C"}


def test_non_strict_mode_keeps_good_rows_batch_by_batch(db, tmp_path):
    path = write(tmp_path, "external_id,name\nA,Acme\nB,\nC,Gamma\n")
    report = import_csv("accounts", path, db.sessions, batch_size=1)
    assert report.committed and counts(report) == (2, 0, 1)
    assert [str(e) for e in report.errors] == [f"{path}:3: empty name; every row needs one"]


@pytest.fixture
def lax_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the name 'NULL' through the checks as a missing value, which the database refuses."""
    kind = kinds.KINDS["accounts"]
    fields = tuple(
        replace(f, parse=lambda value, _name: None if value == "NULL" else value)
        if f.name == "name"
        else f
        for f in kind.fields
    )
    monkeypatch.setitem(kinds.KINDS, "accounts", replace(kind, fields=fields))


@pytest.mark.usefixtures("lax_names")
def test_a_row_the_database_refuses_is_found_and_the_rest_of_its_batch_is_kept(db, tmp_path):
    path = write(tmp_path, "external_id,name\nA,Acme\nB,NULL\nC,Gamma\nD,Delta\nE,Epsilon\n")
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (4, 0, 1) and report.committed
    assert [e.line for e in report.errors] == [3]
    assert report.errors[0].reason.startswith("the database refused this row: ")
    assert set(accounts(db)) == {"A", "C", "D", "E"}


@pytest.mark.usefixtures("lax_names")
def test_a_row_the_database_refuses_fails_a_strict_import(db, tmp_path):
    path = write(tmp_path, "external_id,name\nA,Acme\nB,NULL\nC,Gamma\nD,-\n")
    report = import_csv("accounts", path, db.sessions, strict=True, batch_size=2)
    assert not report.committed and counts(report) == (0, 0, 1)
    assert [e.line for e in report.errors] == [3]
    assert accounts(db) == {}


@pytest.mark.parametrize("batch_size", [100, 2], ids=["same-batch", "across-batches"])
def test_a_key_seen_twice_warns_and_the_later_row_wins(db, tmp_path, batch_size):
    path = write(
        tmp_path,
        "email,name,locale,team\ndup@example.com,First,ja,sales\nother@example.com,Other,,\nother2@example.com,Other 2,,\nDUP@example.com ,Second,,\n",
    )
    report = import_csv("contacts", path, db.sessions, batch_size=batch_size)
    assert counts(report) == (3, 0, 0), "a repeated key counts once"
    assert [str(w) for w in report.warnings] == [
        f"{path}:5: duplicate email dup@example.com (first at line 2); the later row wins"
    ]
    dup = contacts(db)["dup@example.com"]
    assert (dup.name, dup.locale, dup.attributes) == ("Second", "ja", {"team": "sales"})


# --- bad rows ------------------------------------------------------------------------------

LONG = "x" * 200_000


def account(**cells: str) -> str:
    """An accounts row with these cells (external_id B-1 and name B unless given)."""
    cells = {"external_id": "B-1", "name": "B"} | cells
    return ",".join(cells.get(column, "") for column in ACCOUNTS_HEADER.split(","))


# fmt: off
# (id, kind, snippet between the two good rows, line of the bad row, part of the reason,
#  good rows inside the snippet)
BAD_ROWS: list[tuple[str, str, bytes | str, int, str, int]] = [
    # accounts: required fields and sizes
    ("empty-external-id", "accounts", account(external_id=""), 3, "empty external_id; every row needs one", 0),
    ("blank-external-id", "accounts", account(external_id="   "), 3, "empty external_id", 0),
    ("empty-name", "accounts", account(name=""), 3, "empty name; every row needs one", 0),
    ("external-id-too-long", "accounts", account(external_id="X" * 129), 3, "external_id is 129 characters long; the most it can hold is 128", 0),
    ("name-too-long", "accounts", account(name="名" * 256), 3, "name is 256 characters long", 0),
    ("plan-too-long", "accounts", account(plan="p" * 65), 3, "plan is 65 characters long", 0),
    ("industry-too-long", "accounts", account(industry="i" * 65), 3, "industry is 65 characters long", 0),
    # amounts
    ("negative-arr", "accounts", account(arr="-5000"), 3, "negative arr -5000; arr must be 0 or more", 0),
    ("negative-ltv-in-parentheses", "accounts", account(ltv='"(5,000)"'), 3, "negative ltv", 0),
    ("arr-not-a-number", "accounts", account(arr="lots"), 3, "arr 'lots' is not an amount", 0),
    ("arr-european-separators", "accounts", account(arr="5.000.000"), 3, "is not an amount", 0),
    ("arr-exponent", "accounts", account(arr="1e6"), 3, "arr '1e6' is not an amount", 0),
    ("arr-nan", "accounts", account(arr="NaN"), 3, "is not an amount", 0),
    ("arr-bad-grouping", "accounts", account(arr='"5,00,000"'), 3, "is not an amount", 0),
    ("arr-three-decimals", "accounts", account(arr="10.125"), 3, "more than 2 decimal places", 0),
    ("arr-too-large", "accounts", account(arr="99999999999999999"), 3, "arr 99999999999999999 is too large", 0),
    ("dollars-but-currency-jpy", "accounts", account(arr='"$1,200"', currency="JPY"), 3, "arr '$1,200' is in dollars but currency is JPY", 0),
    ("yen-but-currency-usd", "accounts", account(ltv="¥5000", currency="USD"), 3, "ltv '¥5000' is in yen but currency is USD", 0),
    # codes and dates
    ("currency-spelled-out", "accounts", account(currency="Japanese yen"), 3, "currency 'Japanese yen' is not a 3-letter currency code", 0),
    ("currency-two-letters", "accounts", account(currency="JP"), 3, "is not a 3-letter currency code", 0),
    ("status-typo", "accounts", account(contract_status="actve"), 3, "unknown contract_status 'actve' (did you mean 'active'?)", 0),
    ("status-unknown", "accounts", account(contract_status="gold"), 3, "unknown contract_status 'gold'; use one of trial, active", 0),
    ("month-13", "accounts", account(renewal_date="2027-13-01"), 3, "bad date 2027-13-01 in renewal_date; use YYYY-MM-DD", 0),
    ("february-30", "accounts", account(contract_start="2027-02-30"), 3, "bad date 2027-02-30 in contract_start", 0),
    ("slashes", "accounts", account(renewal_date="2027/1/5"), 3, "bad date 2027/1/5 in renewal_date; use YYYY-MM-DD (2027-01-05)", 0),
    ("us-order", "accounts", account(renewal_date="01/05/2027"), 3, "bad date 01/05/2027", 0),
    ("date-with-time", "accounts", account(contract_start="2027-01-05T10:00:00"), 3, "use YYYY-MM-DD, without a time", 0),
    ("compact-date", "accounts", account(renewal_date="20270105"), 3, "bad date 20270105", 0),
    ("year-one", "accounts", account(renewal_date="0001-01-01"), 3, "out of range (years 1900 to 2199)", 0),
    ("renewal-before-start", "accounts", account(contract_start="2027-01-01", renewal_date="2026-01-01"), 3, "renewal_date 2026-01-01 is before contract_start 2027-01-01", 0),
    # numbers and owner
    ("negative-size", "accounts", account(company_size="-3"), 3, "negative company_size -3", 0),
    ("fractional-size", "accounts", account(company_size="12.5"), 3, "company_size '12.5' is not a whole number", 0),
    ("huge-size", "accounts", account(company_size="99999999999"), 3, "company_size 99999999999 is out of range", 0),
    ("health-over-100", "accounts", account(health_score="101"), 3, "health_score 101 is out of range; use 0 to 100", 0),
    ("health-in-words", "accounts", account(health_score="high"), 3, "health_score 'high' is not a whole number", 0),
    ("owner-without-at", "accounts", account(owner_email="sato"), 3, "owner_email 'sato' is not an e-mail address (no @)", 0),
    # text that does not fit a column
    ("line-break-in-name", "accounts", account(name='"Acme\nHoldings"'), 3, "line break inside name", 0),
    ("control-character", "accounts", account(name="Bell\x07"), 3, "control character U+0007 in name", 0),
    # the shape of the row
    ("too-many-fields", "accounts", account(name="Acme, Inc.", notes="n"), 3, "the row has 15 fields but the header has 14; put values that contain commas in double quotes", 0),
    ("too-few-fields", "accounts", "B-1,Acme,100", 3, "the row has 3 fields but the header has 14", 0),
    ("nul-byte", "accounts", account(name="Ac\x00me"), 3, "name holds a NUL byte", 0),
    ("shift-jis-bytes", "accounts", b"B-1," + "株式会社".encode("cp932") + b",,,,,,,,,,,,", 3, "as Shift_JIS it reads '株式会社'", 0),
    ("invalid-utf8", "accounts", b"B-1,\xff\xfe\xfa,,,,,,,,,,,,", 3, "name holds bytes that are not valid UTF-8", 0),
    ("field-too-long", "accounts", account(name=LONG), 3, "a field is longer than 131,072 characters", 0),
    ("after-multiline-notes", "accounts", account(external_id="M-1", notes='"one\ntwo\nthree"') + "\n" + account(arr="-1"), 6, "negative arr", 1),
    ("multiline-row-reported-at-its-first-line", "accounts", account(arr="x", notes='"note\nmore"'), 3, "arr 'x' is not an amount", 0),
    # contacts: addresses
    ("empty-email", "contacts", ",,Nobody,,,,,,", 3, "empty email; every row needs one", 0),
    ("email-without-at", "contacts", "taro.example.jp,,,,,,,,", 3, "email 'taro.example.jp' is not an e-mail address (no @)", 0),
    ("email-two-ats", "contacts", "taro@@example.jp,,,,,,,,", 3, "(more than one @)", 0),
    ("email-with-space", "contacts", "taro yamada@example.jp,,,,,,,,", 3, "contains a space", 0),
    ("email-no-dot-in-domain", "contacts", "taro@localhost,,,,,,,,", 3, "has no dot in its domain", 0),
    ("email-nothing-after-at", "contacts", "taro@,,,,,,,,", 3, "nothing after the @", 0),
    ("email-japanese-local-part", "contacts", "山田@example.jp,,,,,,,,", 3, "non-ASCII characters before the @", 0),
    ("email-japanese-domain", "contacts", "taro@例え.jp,,,,,,,,", 3, "write it as taro@xn--r8jz45g.jp", 0),
    ("email-full-width", "contacts", "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ,,,,,,,,", 3, "did you mean 'taro@example.jp'?", 0),
    ("email-in-angle-brackets", "contacts", "<taro@example.jp>,,,,,,,,", 3, "is not a plain address", 0),
    ("email-mailto", "contacts", "mailto:taro@example.jp,,,,,,,,", 3, "is not a plain address", 0),
    ("email-double-dot", "contacts", "ta..ro@example.jp,,,,,,,,", 3, "invalid part before the @", 0),
    ("email-hyphen-domain", "contacts", "taro@-example.jp,,,,,,,,", 3, "has an invalid domain", 0),
    ("email-numeric-tld", "contacts", "taro@10.0.0.1,,,,,,,,", 3, "has an invalid domain", 0),
    ("email-too-long", "contacts", "a" * 64 + "@" + ("b" * 63 + ".") * 3 + "jp,,,,,,,,", 3, "an address has at most 254", 0),
    # contacts: other fields
    ("unknown-account", "contacts", "a@example.com,ACC-404,,,,,,,", 3, "unknown account_external_id 'ACC-404'", 0),
    ("locale-spelled-out", "contacts", "a@example.com,,,,Japanese,,,,", 3, "unknown locale 'Japanese'; use a language code such as ja", 0),
    ("locale-nonsense", "contacts", "a@example.com,,,,e,,,,", 3, "unknown locale 'e'", 0),
    ("time-zone-typo", "contacts", "a@example.com,,,,,Asia/Tokio,,,", 3, "did you mean 'Asia/Tokyo'?", 0),
    ("time-zone-city", "contacts", "a@example.com,,,,,Tokyo,,,", 3, "unknown time_zone 'Tokyo'; did you mean 'Asia/Tokyo'?", 0),
    ("time-zone-abbreviation", "contacts", "a@example.com,,,,,JST,,,", 3, "use an IANA name such as Asia/Tokyo", 0),
    ("time-zone-offset", "contacts", "a@example.com,,,,,UTC+9,,,", 3, "'UTC+9' is an offset", 0),
    ("time-zone-path", "contacts", "a@example.com,,,,,../../etc/passwd,,,", 3, "unknown time_zone", 0),
    ("subscribed-maybe", "contacts", "a@example.com,,,,,,maybe,,", 3, "subscribed 'maybe' is not true or false", 0),
    ("tag-too-long", "contacts", "a@example.com,,,,,,," + "t" * 65 + ",", 3, "is longer than 64 characters", 0),
    ("role-too-long", "contacts", "a@example.com,,," + "r" * 65 + ",,,,,", 3, "role is 65 characters long", 0),
    ("contact-after-blank-lines", "contacts", "\n,,,,,,,,\n   \nbad,,,,,,,,", 6, "(no @)", 0),
]
# fmt: on


def build(kind: str, snippet: bytes | str) -> bytes:
    head = f"{HEADERS[kind]}\n{GOOD[kind][0]}\n".encode()
    tail = f"\n{GOOD[kind][1]}\n".encode()
    return head + (snippet if isinstance(snippet, bytes) else snippet.encode()) + tail


def test_there_are_at_least_fifty_kinds_of_bad_rows():
    assert len({case[0] for case in BAD_ROWS}) == len(BAD_ROWS) >= 50


@pytest.mark.parametrize(
    ("kind", "snippet", "line", "reason", "extra"),
    [c[1:] for c in BAD_ROWS],
    ids=[c[0] for c in BAD_ROWS],
)
def test_a_bad_row_is_reported_by_line_and_skipped_while_good_rows_are_kept(
    db, tmp_path, kind, snippet, line, reason, extra
):
    path = write(tmp_path, build(kind, snippet))
    report = import_csv(kind, path, db.sessions)
    assert report.errors, "the bad row is reported"
    assert {e.line for e in report.errors} == {line}, report.errors
    assert any(reason in e.reason for e in report.errors), report.errors
    assert str(report.errors[0]).startswith(f"{path}:{line}: ")
    assert counts(report) == (2 + extra, 0, 1)
    table = Account if kind == "accounts" else Contact
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(table)) == 2 + extra


def test_blank_lines_rows_of_commas_and_trailing_whitespace_are_harmless(db, tmp_path):
    path = write(
        tmp_path,
        "\n\nexternal_id,name,plan,\n\n,,,\nA-1 ,  Acme \t, growth  ,\n  \n,,,,,\nA-2,Beta,,\n",
    )
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (2, 0, 0) and not report.errors and not report.warnings
    acme = accounts(db)["A-1"]
    assert (acme.name, acme.plan) == ("Acme", "growth")


def test_a_value_under_an_unnamed_column_is_a_warning(db, tmp_path):
    path = write(tmp_path, "external_id,name,\nA,Acme,\nB,Beta,lost\nC,Gamma,also\n")
    report = import_csv("accounts", path, db.sessions)
    assert counts(report) == (3, 0, 0)
    assert [str(w) for w in report.warnings] == [
        f"{path}:3: column 3 has no name in the header; its values are not imported"
    ]


# --- whole-file problems -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        (b"", "accounts", "the file is empty"),
        (b"\n\n , ,\n", "accounts", "no header row"),
        (b"name,plan\nAcme,growth\n", "accounts", "missing required column 'external_id'"),
        (b"external_id;name\nA;Acme\n", "accounts", "separate fields with ';'"),
        (b"a@example.com,Taro\n", "contacts", "the first line must be a header"),
        (b"mail,name\n", "contacts", "missing required column 'email' (did you mean 'mail'?)"),
        (b"email,name,Email\n", "contacts", "column 'email' appears twice (columns 1 and 3)"),
        (
            b"email,\x83\x81\x81[\x83\x8b\n",
            "contacts",
            "the header is not valid UTF-8 (as Shift_JIS it reads",
        ),
        (b"email,na\x00me\n", "contacts", "the header holds NUL bytes"),
        (b'email,"' + b"x" * 200_000 + b'"\n', "contacts", "cannot read the header"),
        (b"email\n", "leads", "unknown kind 'leads'; use accounts or contacts"),
    ],
    ids=[
        "empty",
        "blank",
        "no-key",
        "semicolons",
        "no-header",
        "near-miss",
        "twice",
        "sjis-header",
        "nul-header",
        "huge-header",
        "kind",
    ],
)
def test_a_file_that_cannot_be_imported_at_all_raises_one_clear_error(
    sqlite_db, tmp_path, content, kind, message
):
    path = write(tmp_path, content)
    with pytest.raises(ImportRowError) as caught:
        import_csv(kind, path, sqlite_db.sessions)
    assert message in str(caught.value)
    assert kind == "leads" or str(caught.value).startswith(f"{path}"), "the file is named"


def test_a_missing_file_or_a_folder_or_an_unknown_encoding_raises(sqlite_db, tmp_path):
    with pytest.raises(ImportRowError, match="no such file"):
        import_csv("accounts", tmp_path / "missing.csv", sqlite_db.sessions)
    with pytest.raises(ImportRowError, match="is a folder"):
        import_csv("accounts", tmp_path, sqlite_db.sessions)
    path = write(tmp_path, "external_id,name\n")
    with pytest.raises(ImportRowError, match="unknown encoding 'klingon'"):
        import_csv("accounts", path, sqlite_db.sessions, encoding="klingon")
    with pytest.raises(ImportRowError, match="not a text encoding"):
        import_csv("accounts", path, sqlite_db.sessions, encoding="hex")


def test_a_header_without_rows_imports_nothing(sqlite_db, tmp_path):
    report = import_csv("contacts", write(tmp_path, "\ufeffemail,name\r\n"), sqlite_db.sessions)
    assert counts(report) == (0, 0, 0) and report.committed


# --- streaming -----------------------------------------------------------------------------


def test_import_streams_in_batches_committing_as_it_reads(db, tmp_path):
    generate_accounts_csv(tmp_path / "a.csv", 30, date(2026, 5, 1))
    import_csv("accounts", tmp_path / "a.csv", db.sessions)
    path = generate_contacts_csv(tmp_path / "c.csv", 1_000, accounts=30)
    seen: list[tuple[int, int]] = []

    def progress(consumed: int) -> None:
        with db.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
        seen.append((consumed, stored))

    report = import_csv("contacts", path, db.sessions, batch_size=200, progress=progress)
    assert counts(report) == (1_000, 0, 0)
    assert sum(consumed for consumed, _ in seen) == path.stat().st_size
    assert all(consumed > 0 for consumed, _ in seen)
    stored = [n for _, n in seen]
    assert stored[:3] == [200, 400, 600], "each batch is in the database before the next is read"
    assert stored[-1] == 1_000


def test_memory_stays_a_fraction_of_what_holding_the_rows_would_take(sqlite_db, tmp_path):
    generate_accounts_csv(tmp_path / "a.csv", 20, date(2026, 5, 1))
    import_csv("accounts", tmp_path / "a.csv", sqlite_db.sessions)
    warm = generate_contacts_csv(tmp_path / "warm.csv", 500, accounts=20, seed=1)
    path = generate_contacts_csv(tmp_path / "big.csv", 20_000, accounts=20, seed=2)
    import_csv("contacts", warm, sqlite_db.sessions, batch_size=200)  # compile the SQL once

    tracemalloc.start()
    try:
        report = import_csv("contacts", path, sqlite_db.sessions, batch_size=200)
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.inserted + report.updated == len(rows) - 1
    # Only the duplicate-key index (an int per row) grows with the file; rows come and go.
    assert streamed < held / 3, (streamed, held)


# --- property: no input makes the importer crash ------------------------------------------

CELLS = st.one_of(
    st.sampled_from(
        ["", " ", "a@example.com", "A@EXAMPLE.COM", "x@例え.jp", "5,000,000", "¥1,000", "-1", "2027-13-01",
         "2026-04-01", "active", "actve", "ja", "Asia/Tokyo", "true", "maybe", "a;b", "ACC-1", '"', "\n", "\r",
         "\x00", "\ufeff", "山田 太郎", "株式会社", "9" * 30, "1e309", "NaN"]
    ),
    st.text(max_size=20),
)  # fmt: skip
COLUMNS = st.sampled_from(
    ["external_id", "name", "email", "arr", "ltv", "currency", "contract_status", "renewal_date", "contract_start",
     "company_size", "health_score", "owner_email", "account_external_id", "locale", "time_zone", "subscribed",
     "tags", "id", "tier", "attributes", "notes", "", " Name ", "部署"]
)  # fmt: skip


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """Mostly CSV with the required columns of both kinds, so rows get checked too."""
    required = draw(st.sampled_from([["external_id", "name", "email"], []]))
    extra = COLUMNS.filter(lambda c: c.strip().lower() not in required)
    header = draw(
        st.permutations(required + draw(st.lists(extra, max_size=6, unique_by=str.lower)))
    )
    width = len(header)
    rows = draw(
        st.lists(st.lists(CELLS, min_size=max(0, width - 1), max_size=width + 1), max_size=8)
    )
    lines = [",".join(header)] + [",".join(row) for row in rows]
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "cp932"])), "replace")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(csv_files(), st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    kind=st.sampled_from(["accounts", "contacts"]),
    strict=st.booleans(),
    encoding=st.sampled_from(["utf-8-sig", "cp932"]),
)
def test_any_content_gives_a_report_or_one_clear_error(
    sqlite_db, tmp_path, content, kind, strict, encoding
):
    path = write(tmp_path, content, "fuzz.csv")
    try:
        report = import_csv(
            kind, path, sqlite_db.sessions, strict=strict, encoding=encoding, batch_size=3
        )
    except ImportRowError as exc:
        assert str(exc)
        return
    lines = content.count(b"\n") + content.count(b"\r") + 1
    for problem in report.errors + report.warnings:
        assert isinstance(problem, RowError) and problem.reason
        assert 1 <= problem.line <= lines, (problem, content)
    assert report.skipped <= lines
    if strict and report.errors:
        assert not report.committed and report.inserted == report.updated == 0


# --- the demo's samples ----------------------------------------------------------------------


def test_samples_import_cleanly_with_every_tier_and_japanese_contacts(db, tmp_path):
    today = date(2026, 5, 1)
    accounts_csv, contacts_csv = write_samples(tmp_path, today)
    assert accounts_csv.read_bytes().startswith(b"\xef\xbb\xbf"), (
        "UTF-8 with a BOM, as Excel writes it"
    )
    for kind, path in (("accounts", accounts_csv), ("contacts", contacts_csv)):
        report = import_csv(kind, path, db.sessions)  # type: ignore[arg-type]
        assert not report.errors and not report.warnings, report.errors[:3]
    found = accounts(db)
    assert len(found) == 60

    def tier(a: Account) -> str:  # the shipped tiers, in yen at the embedded rates
        arr = currency.DEFAULT.to_base(a.arr, a.currency) or 0
        return (
            "high"
            if arr >= 5_000_000 or a.plan == "enterprise"
            else "low"
            if arr >= 1_000_000
            else "tech"
        )

    tiers = Counter(tier(a) for a in found.values())
    assert tiers == {"high": 6, "low": 18, "tech": 36}
    assert {a.currency for a in found.values()} == {"JPY", "USD", "CAD", "GBP", "EUR", "AUD", "SGD"}
    assert (
        sum(a.name.startswith("株式会社") or a.name.endswith("株式会社") for a in found.values())
        == 20
    )
    assert Counter(a.contract_status for a in found.values()).most_common(1)[0][0] == "active"
    ahead = [
        (a.renewal_date - today).days for a in found.values() if a.contract_status != "churned"
    ]
    assert all(0 < d <= 400 for d in ahead)
    for window in (30, 60, 90, 120):
        assert any(window - 30 < d <= window for d in ahead), window

    people = contacts(db)
    assert all(e.endswith(("@example.com", "@example.jp")) for e in people)
    per_account = Counter(c.account_id for c in people.values())
    assert set(per_account.values()) <= {1, 2, 3, 4} and len(per_account) == 60
    japanese = [c for c in people.values() if c.locale == "ja"]
    assert japanese and all(c.time_zone == "Asia/Tokyo" and " " in (c.name or "") for c in japanese)
    assert {c.role for c in people.values()} == {"admin", "user", "billing", "executive"}
    with db.engine.connect() as conn:
        owners = conn.execute(select(Account.owner_email).distinct()).scalars().all()
    assert all(o.startswith("csm.") for o in owners)


def test_samples_are_deterministic(tmp_path):
    one = write_samples(tmp_path / "one", date(2026, 5, 1))
    two = write_samples(tmp_path / "two", date(2026, 5, 1))
    other = write_samples(tmp_path / "other", date(2026, 5, 1), seed=8)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert one[1].read_bytes() != other[1].read_bytes()
    with one[0].open(encoding="utf-8-sig", newline="") as handle:
        assert tuple(next(csv.reader(handle))) == ACCOUNT_COLUMNS


def test_samples_reimport_as_updates(db, tmp_path):
    accounts_csv, _ = write_samples(tmp_path, date(2026, 5, 1), accounts=12)
    assert counts(import_csv("accounts", accounts_csv, db.sessions)) == (12, 0, 0)
    with db.sessions.begin() as s:
        s.execute(update(Account).values(plan="custom"))
    assert counts(import_csv("accounts", accounts_csv, db.sessions)) == (0, 12, 0)
    assert "custom" not in {a.plan for a in accounts(db).values()}
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 12
