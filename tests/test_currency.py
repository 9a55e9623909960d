"""Amounts in many currencies: rules compare ``arr`` and ``ltv`` in the base currency at the
configured rates, in SQL and in journey conditions alike, and an import refuses a currency
without a rate at its line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from campaigns import config, currency
from campaigns.content.project import Project
from campaigns.engine import audience
from campaigns.engine.context import condition_values
from campaigns.exceptions import ConfigError
from campaigns.imports.importer import import_csv
from campaigns.journeys import segments as seg
from campaigns.journeys.expressions import Condition
from campaigns.store.models import Account, Contact

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)

# -- the settings ------------------------------------------------------------------------


def test_the_embedded_table_is_in_yen_and_converts_to_the_cent():
    table = config.load({}).currencies
    assert table == currency.DEFAULT and table.base == "JPY"
    assert table.rate("JPY") == 1 and table.rate("USD") == 150 and table.rate("XAU") is None
    assert table.to_base(Decimal("60000"), "USD") == Decimal("9000000.00")
    assert table.to_base(Decimal("1234"), "KRW") == Decimal("135.74")  # 135.74, half up
    assert table.to_base(Decimal("5"), "XAU") is None and table.to_base(None, "USD") is None


def test_a_configured_table_replaces_the_embedded_one():
    table = config.load({"CURRENCY_RATES": " usd = 151.25 , EUR=162,, JPY=1 "}).currencies
    assert table.base == "JPY" and table.codes == ("JPY", "EUR", "USD")
    assert table.rate("USD") == Decimal("151.25") and table.rate("GBP") is None


def test_another_base_without_a_table_divides_the_embedded_rates_by_its_own():
    table = config.load({"BASE_CURRENCY": "usd"}).currencies
    assert table.base == "USD" and table.rate("USD") == 1
    assert table.to_base(Decimal("9000000"), "JPY") == Decimal("60000.00")
    assert table.to_base(Decimal("150"), "EUR") == Decimal("160.00")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BASE_CURRENCY": "yen!"}, "BASE_CURRENCY: 'yen!' is not a 3-letter currency code"),
        ({"BASE_CURRENCY": "XAU"}, "BASE_CURRENCY: XAU has no rate in the embedded table"),
        ({"CURRENCY_RATES": "USD:150"}, "CURRENCY_RATES: 'USD:150' is not 'CODE=rate'"),
        ({"CURRENCY_RATES": "USD=1,5"}, "CURRENCY_RATES: '5' is not 'CODE=rate'"),
        ({"CURRENCY_RATES": "USD=-150"}, "CURRENCY_RATES: 'USD=-150' is not 'CODE=rate'"),
        ({"CURRENCY_RATES": "USD=１５０"}, "CURRENCY_RATES: 'USD=１５０' is not 'CODE=rate'"),
        ({"CURRENCY_RATES": "USD=0"}, "CURRENCY_RATES: the rate of USD is 0"),
        ({"CURRENCY_RATES": "USD=150,usd=151"}, "CURRENCY_RATES: USD is given twice"),
        ({"CURRENCY_RATES": "JPY=100"}, "CURRENCY_RATES: JPY is the base currency, so its rate"),
        (
            {"BASE_CURRENCY": "USD", "CURRENCY_RATES": "USD=150"},
            "CURRENCY_RATES: USD is the base currency",
        ),
    ],
)
def test_bad_currency_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config.load(env)


@settings(max_examples=300, deadline=None)
@given(
    variable=st.sampled_from(["BASE_CURRENCY", "CURRENCY_RATES"]),
    value=st.one_of(
        st.text(max_size=40),
        st.builds(lambda a, b: f"{a}={b}", st.text(max_size=5), st.text(max_size=10)),
    ),
)
def test_any_currency_setting_gives_a_table_or_one_line_naming_the_variable(variable, value):
    try:
        table = config.load({variable: value}).currencies
    except ConfigError as exc:
        assert str(exc).startswith(f"{variable}: ") and len(str(exc).splitlines()) == 1, str(exc)
    else:
        assert table.rate(table.base) == 1
        assert all(rate > 0 and currency.CODE.fullmatch(code) for code, rate in table.rates)


def test_a_bad_rate_table_stops_the_command_in_one_line_with_exit_2(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "campaigns", "segments"],
        cwd=tmp_path,
        env={**environ, "CURRENCY_RATES": "USD=150;EUR=160"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("campaigns: CURRENCY_RATES: 'USD=150;EUR=160' is not")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "campaigns.db").exists()


# -- tiers and segments -----------------------------------------------------------------


def add(session: Any, key: str, arr: str | None, code: str, **fields: Any) -> Account:
    account = Account(
        external_id=key,
        name=key,
        arr=None if arr is None else Decimal(arr),
        currency=code,
        **fields,
    )
    session.add(account)
    session.flush()
    session.add(Contact(account_id=account.id, email=f"{key.lower()}@example.com"))
    return account


def test_a_usd_60000_account_is_high_touch_beside_yen_accounts_of_its_value(db, tmp_path):
    cfg = config.load({"CAMPAIGNS_JOURNEYS": str(ROOT / "journeys")})
    segset = Project(cfg).segments()  # the shipped tiers, at the configured rates
    with db.session() as s, s.begin():
        add(s, "USD60K", "60000", "USD")  # 9,000,000 yen
        add(s, "JPY60K", "60000", "JPY")
        add(s, "JPY9M", "9000000", "JPY")
        add(s, "EUR10K", "10000.50", "EUR")  # 1,600,080 yen
        add(s, "KRW", "20000000", "KRW")  # 2,200,000 yen
        add(s, "GOLD", "1000", "XAU")  # no rate: its ARR compares with nothing
    with db.session() as s, s.begin():
        audience.apply_tiers(s, segset, TODAY)
    with db.session() as s:
        stored = {a.external_id: a.tier for a in s.scalars(select(Account))}
        accounts = list(s.scalars(select(Account)))
        contacts = {c.account_id: c for c in s.scalars(select(Contact))}
    assert stored == {
        "USD60K": "high_touch",
        "JPY60K": "tech_touch",
        "JPY9M": "high_touch",
        "EUR10K": "low_touch",
        "KRW": "low_touch",
        "GOLD": "tech_touch",
    }
    # A journey condition says the same of each account.
    for account in accounts:
        values = condition_values(contacts[account.id], account, NOW, currencies=cfg.currencies)
        tier = next(t.name for t in segset.tiers if Condition(t.rule)(values))
        assert tier == stored[account.external_id], account.external_id
    values = condition_values(contacts[accounts[0].id], accounts[0], NOW, currencies=cfg.currencies)
    assert (values["arr"], values["arr_local"], values["currency"]) == (
        9_000_000.0,
        60_000.0,
        "USD",
    )


def test_rules_can_read_the_stored_amount_as_arr_local(db):
    segset = seg.parse_segments(
        "segments:\n"
        "  big_dollar_contracts:\n    when: currency == 'USD' and arr_local >= 50000\n"
        "  big_in_yen:\n    when: arr >= 7000000 and ltv_local is none\n"
    )
    with db.session() as s, s.begin():
        add(s, "USD60K", "60000", "USD")
        add(s, "USD40K", "40000", "USD")
        add(s, "JPY9M", "9000000", "JPY", ltv=Decimal(1))
    with db.session() as s:
        counts = {c.name: c.accounts for c in audience.count(s, segset, TODAY)}
    assert counts == {"big_dollar_contracts": 1, "big_in_yen": 1}


TABLE = currency.parse("JPY", "USD=150,EUR=162.5,KRW=0.11,TWD=4.7")


@pytest.mark.parametrize(
    ("amount", "code", "rule"),
    [
        ("0.07", "USD", "arr <= 10.5"),  # 0.07 * 150 is 10.500000000000002 in floating point
        ("1.15", "EUR", "arr == 186.88"),  # 186.875 exactly: half a cent rounds up
        ("2.01", "USD", "arr >= 301.5"),  # 301.49999999999994 in floating point
        ("100", "KRW", "arr == 11"),
    ],
)
def test_a_converted_amount_is_rounded_to_the_cent_in_sql_as_in_python(db, amount, code, rule):
    segset = seg.parse_segments(f'segments:\n  s:\n    when: "{rule}"\n', currencies=TABLE)
    with db.session() as s, s.begin():
        add(s, "A", amount, code)
    with db.session() as s:
        counts = {c.name: c.accounts for c in audience.count(s, segset, TODAY)}
        account, contact = s.scalars(select(Account)).one(), s.scalars(select(Contact)).one()
    assert Condition(rule)(condition_values(contact, account, NOW, currencies=TABLE))
    assert counts == {"s": 1}


WHOLE = {"KRW", "TWD"}  # amounts without cents (a cent times these rates could be a tie)
CODES = ["JPY", "USD", "EUR", "KRW", "TWD", "XAU"]


@st.composite
def accounts(draw: st.DrawFn) -> dict[str, Any]:
    code = draw(st.sampled_from(CODES))
    cents = 0 if code in WHOLE else draw(st.integers(0, 99))
    amount = Decimal(draw(st.integers(0, 10_000_000))) + Decimal(cents) / 100
    ltv = draw(st.one_of(st.none(), st.integers(0, 50_000_000).map(Decimal)))
    return {"arr": amount, "ltv": ltv, "currency": code}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(accounts(), min_size=1, max_size=6), data=st.data())
def test_sql_and_journey_conditions_convert_amounts_the_same_way(db, rows, data):
    # Thresholds near and at the converted amounts: where a different rounding would show.
    near = [
        v + d
        for row in rows
        if (v := TABLE.to_base(row["arr"], row["currency"])) is not None
        for d in (Decimal("-0.01"), Decimal(0), Decimal("0.01"))
    ]
    threshold = data.draw(st.one_of(st.integers(0, 2_000_000_000), st.sampled_from(near or [0])))
    op = data.draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
    field = data.draw(st.sampled_from(["arr", "ltv", "arr_local"]))
    rule = f"{field} {op} {threshold}"
    segset = seg.parse_segments(f'segments:\n  s:\n    when: "{rule}"\n', currencies=TABLE)
    with db.session() as s, s.begin():
        s.execute(delete(Contact))
        s.execute(delete(Account))
        for i, row in enumerate(rows):
            add(s, f"A{i}", str(row["arr"]), row["currency"], ltv=row["ltv"])
    with db.session() as s:
        in_sql = set(
            s.scalars(
                select(Contact.email).where(Contact.id.in_(audience.members(segset, ["s"], TODAY)))
            )
        )
        condition = Condition(rule)
        in_python = {
            contact.email
            for contact, account in s.execute(
                select(Contact, Account).join(Account, Contact.account_id == Account.id)
            )
            if condition(condition_values(contact, account, NOW, currencies=TABLE))
        }
    assert in_sql == in_python, (rule, rows)


# -- imports ----------------------------------------------------------------------------


HEADER = "external_id,name,arr,currency,plan"


def write(folder: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path = folder / "accounts.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def stored(db: Any) -> dict[str, tuple[Decimal | None, str]]:
    with db.session() as s:
        return {a.external_id: (a.arr, a.currency) for a in s.scalars(select(Account))}


def test_an_unknown_currency_is_refused_at_its_line_and_lower_case_is_normalised(db, tmp_path):
    path = write(
        tmp_path,
        [
            HEADER,
            "A-1,Acme,60000,usd,growth",
            "A-2,Beta,100,BTC,starter",
            "A-3,Gamma,100,ｅｕｒ,starter",
            "A-4,Delta,100,USS,starter",
            "A-5,Epsilon,100,,starter",
        ],
    )
    report = import_csv("accounts", path, db.sessions)
    listed = "JPY, AUD, CAD, CHF, CNY, EUR, GBP, HKD, ..."
    assert [str(e) for e in report.errors] == [
        f"{path}:3: unknown currency 'BTC': CURRENCY_RATES has no rate for BTC;"
        f" use one it has ({listed}) or add BTC=<rate> to it",
        f"{path}:5: unknown currency 'USS' (did you mean 'USD'?): CURRENCY_RATES has no rate"
        f" for USS; use one it has ({listed}) or add USS=<rate> to it",
    ]
    assert (report.inserted, report.skipped) == (3, 2)
    assert stored(db) == {
        "A-1": (Decimal("60000"), "USD"),
        "A-3": (Decimal("100"), "EUR"),
        "A-5": (Decimal("100"), "JPY"),  # empty: the base currency
    }


def test_the_import_reads_the_configured_table_and_its_base(db, tmp_path):
    table = config.load({"BASE_CURRENCY": "USD", "CURRENCY_RATES": "JPY=0.0067,EUR=1.07"})
    path = write(tmp_path, [HEADER, "A-1,Acme,100,,growth", "A-2,Beta,100,GBP,starter"])
    report = import_csv("accounts", path, db.sessions, currencies=table.currencies)
    assert [e.line for e in report.errors] == [3] and "no rate for GBP" in report.errors[0].reason
    assert stored(db) == {"A-1": (Decimal("100"), "USD")}


def test_a_japanese_shift_jis_file_with_signs_and_unknown_currencies(db, tmp_path):
    path = write(
        tmp_path,
        [
            HEADER,
            'J-1,株式会社さくら物流,"\\5,000,000",円,business',  # the yen sign of Shift_JIS
            'J-2,東京精機株式会社,"$60,000",usd,enterprise',
            "J-3,みなと商事,１２０万,JPY,starter",
            "J-4,北斗フーズ,1000,ドル,starter",
            "J-5,富士ソフト,1000,XYZ,starter",
            'J-6,山田製作所,"5,000円",,starter',
        ],
        encoding="cp932",
    )
    report = import_csv("accounts", path, db.sessions, encoding="cp932")
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [4, 5, 6], reasons
    assert reasons[4].startswith("arr '１２０万' is not an amount")
    assert reasons[5] == "currency 'ドル' is not a 3-letter currency code such as JPY or USD"
    assert reasons[6].startswith("unknown currency 'XYZ'")
    assert stored(db) == {
        "J-1": (Decimal("5000000"), "JPY"),
        "J-2": (Decimal("60000"), "USD"),
        "J-6": (Decimal("5000"), "JPY"),
    }


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(cells)
    return out.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
def test_garbage_in_the_currency_column_is_a_currency_with_a_rate_or_one_line_at_line_2(
    sqlite_db, tmp_path, garbage
):
    path = tmp_path / "garbage.csv"
    path.write_text(
        HEADER + "\n" + _csv_line(["G-1", "Garbage", "100", garbage, "starter"]), encoding="utf-8"
    )
    report = import_csv("accounts", path, sqlite_db.sessions)
    if report.errors:
        [error] = report.errors
        assert (error.line, report.skipped) == (2, 1)
        assert len(str(error).splitlines()) == 1 and "currency" in error.reason, str(error)
    else:
        assert report.inserted + report.updated == 1
        code = stored(sqlite_db)["G-1"][1]
        assert code in currency.DEFAULT.codes


def test_campaigns_segments_warns_of_accounts_in_a_currency_without_a_rate(sqlite_db, cli):
    # SQLite only: the in-process CLI leaves its connection pool to the garbage collector.
    db = sqlite_db
    with db.session() as s, s.begin():
        add(s, "USD60K", "60000", "USD")
        add(s, "GOLD", "1000", "XAU")
    cli.env.update(DATABASE_URL=db.url, CURRENCY_RATES="USD=150")
    (cli.folder / "journeys" / "segments.yaml").write_text(
        "tiers:\n  high: {when: arr >= 5000000}\n  rest: {when: true}\n", encoding="utf-8"
    )
    result = cli("segments")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: 1 account(s) in currencies without a rate (XAU 1): their arr and ltv match"
        " no rule; add the rates to CURRENCY_RATES\n"
    )
    rows = {line.split()[0]: line.split()[2] for line in result.stdout.splitlines()[2:]}
    assert rows == {"high": "1", "rest": "1"}
