"""Segments and tiers: the rules, their SQL on both backends, and the checks on the file."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.engine import audience
from campaigns.exceptions import SegmentError
from campaigns.journeys import segments as seg
from campaigns.journeys.expressions import Condition
from campaigns.store.models import Account, Contact

TODAY = date(2026, 11, 23)

RULES = textwrap.dedent(
    """
    tiers:
      high_touch:
        label: {en: High touch, ja: ハイタッチ}
        when: arr >= 5000000 or plan == 'enterprise'
      low_touch:
        when: arr >= 1000000
      tech_touch:
        when: true
    segments:
      renewal_90:
        when: 0 <= days_to_renewal <= 90 and contract_status == 'active'
      long_customers:
        when: days_since_start > 365
      makers:
        when: "industry in ['manufacturing', 'logistics']"
      not_makers:
        when: "industry not in ['manufacturing', 'logistics']"
      at_risk:
        when: health_score is not none and health_score < 40
      kanto:
        when: attributes.region == '関東'
      low_admins:
        when: tier == 'low_touch' and contact.role == 'admin'
      not_billing:
        when: contact.role != 'billing'
      japanese:
        when: contact.locale == 'ja'
    """
)
SEGMENTS = seg.parse_segments(RULES, "segments.yaml")


def add_account(session, key: str, **fields) -> Account:
    account = Account(external_id=key, name=fields.pop("name", key), **fields)
    session.add(account)
    session.flush()
    return account


def add_contact(session, account: Account | None, email: str, **fields) -> Contact:
    contact = Contact(account_id=account.id if account else None, email=email, **fields)
    session.add(contact)
    session.flush()
    return contact


def member_emails(db, name: str) -> set[str]:
    query = audience.members(SEGMENTS, [name], TODAY)
    with db.session() as s:
        ids = set(s.scalars(query))
        return set(s.scalars(select(Contact.email).where(Contact.id.in_(ids)))) if ids else set()


@pytest.fixture
def population(db):
    with db.session() as s, s.begin():
        big = add_account(
            s,
            "big",
            arr=Decimal(6_000_000),
            industry="manufacturing",
            renewal_date=TODAY + timedelta(days=90),
            contract_status="active",
        )
        ent = add_account(
            s,
            "ent",
            arr=None,
            plan="enterprise",
            renewal_date=TODAY + timedelta(days=91),
            contract_status="active",
        )
        mid = add_account(
            s,
            "mid",
            name="株式会社ミドル",
            arr=Decimal(1_000_000),
            industry="retail",
            health_score=39,
            attributes={"region": "関東"},
            contract_start=TODAY - timedelta(days=366),
        )
        small = add_account(
            s,
            "small",
            arr=Decimal(999_999),
            industry=None,
            health_score=40,
            renewal_date=TODAY,
            contract_status="churned",
            contract_start=TODAY - timedelta(days=365),
        )
        unknown = add_account(
            s, "unknown", arr=None, renewal_date=TODAY - timedelta(days=1), contract_status="active"
        )
        add_contact(s, big, "ceo@big.example", role="executive")
        add_contact(s, ent, "admin@ent.example", role="admin")
        add_contact(
            s,
            mid,
            "admin@mid.example",
            role="admin",
            name="山田 太郎",
            locale="ja",
            time_zone="Asia/Tokyo",
        )
        add_contact(s, mid, "billing@mid.example", role="billing", locale="ja")
        add_contact(s, small, "user@small.example", role=None)
        add_contact(s, unknown, "x@unknown.example", role="user")
        add_contact(s, None, "lonely@nowhere.example", role="user")
    return db


def test_tiers_first_match_wins_and_missing_values_fall_through(population):
    assert member_emails(population, "high_touch") == {"ceo@big.example", "admin@ent.example"}
    assert member_emails(population, "low_touch") == {"admin@mid.example", "billing@mid.example"}
    assert member_emails(population, "tech_touch") == {
        "user@small.example",
        "x@unknown.example",
        "lonely@nowhere.example",
    }


def test_days_to_renewal_boundaries_are_inclusive(population):
    # big renews in exactly 90 days, ent in 91, small today (but churned), unknown yesterday
    assert member_emails(population, "renewal_90") == {"ceo@big.example"}


def test_days_since_start(population):
    assert member_emails(population, "long_customers") == {
        "admin@mid.example",
        "billing@mid.example",
    }


def test_in_and_not_in_treat_missing_values_like_python(population):
    assert member_emails(population, "makers") == {"ceo@big.example"}
    # not in: a missing industry is 'not in' the list, as `None not in [...]` is in Python
    assert "user@small.example" in member_emails(population, "not_makers")
    assert "ceo@big.example" not in member_emails(population, "not_makers")


def test_is_not_none_and_a_comparison(population):
    assert member_emails(population, "at_risk") == {"admin@mid.example", "billing@mid.example"}


def test_json_attribute_rule_with_japanese_value(population):
    assert member_emails(population, "kanto") == {"admin@mid.example", "billing@mid.example"}


def test_segment_can_use_a_tier_and_contact_fields(population):
    assert member_emails(population, "low_admins") == {"admin@mid.example"}
    assert "user@small.example" in member_emails(
        population, "not_billing"
    )  # role NULL != 'billing'
    assert "billing@mid.example" not in member_emails(population, "not_billing")
    assert member_emails(population, "japanese") == {"admin@mid.example", "billing@mid.example"}


def test_count_reports_accounts_and_contacts_per_segment(population):
    with population.session() as s:
        counts = {c.name: c for c in audience.count(s, SEGMENTS, TODAY, locale="ja")}
    assert (counts["high_touch"].accounts, counts["high_touch"].contacts) == (2, 2)
    assert (counts["tech_touch"].accounts, counts["tech_touch"].contacts) == (2, 3)
    assert counts["high_touch"].label == "ハイタッチ"
    assert (counts["low_admins"].accounts, counts["low_admins"].contacts) == (1, 1)
    assert counts["kanto"].is_tier is False


def test_apply_tiers_stores_the_tier_in_one_statement_and_is_idempotent(population):
    with population.session() as s, s.begin():
        changed = audience.apply_tiers(s, SEGMENTS, TODAY)
    assert changed == 5
    with population.session() as s:
        tiers = {key: tier for key, tier in s.execute(select(Account.external_id, Account.tier))}
    assert tiers == {
        "big": "high_touch",
        "ent": "high_touch",
        "mid": "low_touch",
        "small": "tech_touch",
        "unknown": "tech_touch",
    }
    with population.session() as s, s.begin():
        assert audience.apply_tiers(s, SEGMENTS, TODAY) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "tiers:\n  a: {when: ar >= 1}\n",
            "segments.yaml:2:13: unknown field 'ar' (did you mean 'arr'?)",
        ),
        (
            "tiers:\n  a: {when: \"arr >= 'lots'\"}\n",
            "segments.yaml:2:14: arr is a number but is compared with 'lots'",
        ),
        (
            "tiers:\n  a: {when: \"contact.role == 'admin'\"}\n",
            "segments.yaml:2:22: tier rules may use account fields only",
        ),
        (
            "tiers:\n  a: {when: true}\nsegments:\n  a: {when: true}\n",
            "segments.yaml:4:3: 'a' is defined twice",
        ),
        (
            "segments:\n  a: {whn: true}\n",
            "segments.yaml:2:7: unknown key 'whn' in 'a' (did you mean 'when'?)",
        ),
        ("segments:\n  a: {label: A}\n", "segments.yaml:2:3: 'a' needs a 'when:' rule"),
        ("segments:\n  Big-Ones: {when: true}\n", "segments.yaml:2:3: bad segment name 'Big-Ones'"),
        (
            "segments:\n  a: {when: \"opened('x')\"}\n",
            "segments.yaml:2:14: opened() cannot be used in a segment rule",
        ),
        ("segments:\n  a: {when: \"tier == 'mid'\"}\n", "segments.yaml:2:23: unknown tier 'mid'"),
        (
            "segments:\n  a: {when: \"renewal_date >= 'soon'\"}\n",
            "segments.yaml:2:14: renewal_date is a date; compare it with 'YYYY-MM-DD'",
        ),
        (
            "segments:\n  a: {when: arr * 2 > 5}\n",
            "segments.yaml:2:13: arithmetic is not allowed in segment rules",
        ),
        (
            "segmints:\n  a: {when: true}\n",
            "segments.yaml:1:1: unknown key 'segmints' (did you mean 'segments'?)",
        ),
        (
            "segments: [a, b]\n",
            "segments.yaml:1:11: 'segments' must be a mapping of names to rules",
        ),
        ("segments:\n  a: {when: 'arr >='}\n", "segments.yaml:2:14: cannot read the rule"),
        ("- a\n", "segments.yaml:1:1: the segments file must be a mapping"),
    ],
)
def test_bad_segment_files_report_their_place(text, expected):
    with pytest.raises(SegmentError) as info:
        seg.parse_segments(text, "segments.yaml")
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(expected) for p in found), found


def test_a_missing_segments_file_is_a_clean_error(tmp_path):
    with pytest.raises(SegmentError, match="segments file not found"):
        seg.load_segments(tmp_path / "segments.yaml")


# --- SQL and the journey's own evaluation agree ------------------------------------------

FIELDS = {
    "arr": st.integers(0, 10_000_000),
    "health_score": st.integers(0, 100),
    "company_size": st.integers(1, 5000),
    "plan": st.sampled_from(["starter", "growth", "business", "enterprise"]),
    "industry": st.sampled_from(["manufacturing", "retail", "software"]),
}
NUMBER_FIELDS = ["arr", "health_score", "company_size"]
STRING_FIELDS = ["plan", "industry"]


@st.composite
def comparison(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        name = draw(st.sampled_from(NUMBER_FIELDS))
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"{name} {op} {draw(FIELDS[name])}"
    name = draw(st.sampled_from(STRING_FIELDS))
    if draw(st.booleans()):
        return f"{name} {draw(st.sampled_from(['==', '!=']))} '{draw(FIELDS[name])}'"
    values = draw(st.lists(FIELDS[name], min_size=1, max_size=3))
    return f"{name} {draw(st.sampled_from(['in', 'not in']))} {values!r}"


rules = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda r: f"not ({r})"),
    ),
    max_leaves=5,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rule=rules, rows=st.lists(st.fixed_dictionaries(FIELDS), min_size=1, max_size=8))
def test_sql_rules_agree_with_python_evaluation(sqlite_db, rule, rows):
    segset = seg.parse_segments(f'segments:\n  s:\n    when: "{rule}"\n')
    sqlite_db_clear(sqlite_db)
    with sqlite_db.session() as s, s.begin():
        for i, row in enumerate(rows):
            account = add_account(
                s, f"a{i}", **{k: Decimal(v) if k == "arr" else v for k, v in row.items()}
            )
            add_contact(s, account, f"c{i}@example.com")
    with sqlite_db.session() as s:
        in_sql = set(
            s.scalars(
                select(Contact.email).where(Contact.id.in_(audience.members(segset, ["s"], TODAY)))
            )
        )
    condition = Condition(rule)
    in_python = {f"c{i}@example.com" for i, row in enumerate(rows) if condition(row)}
    assert in_sql == in_python


def sqlite_db_clear(database) -> None:
    with database.session() as s, s.begin():
        s.query(Contact).delete()
        s.query(Account).delete()


def test_day_counts_can_be_tested_for_none(db):
    segset = seg.parse_segments(
        "segments:\n  new:\n    when: days_since_start is not none and days_since_start <= 30\n  "
        "undated:\n    when: days_to_renewal is none\n"
    )
    with db.session() as s, s.begin():
        fresh = add_account(s, "fresh", contract_start=TODAY - timedelta(days=30))
        old = add_account(s, "old", contract_start=TODAY - timedelta(days=31), renewal_date=TODAY)
        add_contact(s, fresh, "fresh@example.com")
        add_contact(s, old, "old@example.com")
    with db.session() as s:
        counts = {c.name: c.contacts for c in audience.count(s, segset, TODAY)}
    assert counts == {"new": 1, "undated": 1}


def test_a_rule_that_cannot_become_sql_is_reported_at_its_place():
    with pytest.raises(SegmentError) as info:
        seg.parse_segments("segments:\n  odd:\n    when: days_to_renewal <= health_score\n")
    assert str(info.value.problems[0]).startswith(
        "segments.yaml:3:11: 'odd' cannot be turned into SQL: days_to_renewal can only be "
        "compared with a number"
    )


def test_a_date_or_an_address_compared_with_none_is_a_missing_value(db):
    segset = seg.parse_segments(
        "segments:\n"
        "  undated:\n    when: renewal_date == none\n"
        "  odd:\n    when: \"contact.email in [none, 'Odd@Example.com']\"\n"
    )
    with db.session() as s, s.begin():
        dated = add_account(s, "dated", renewal_date=TODAY)
        undated = add_account(s, "undated")
        add_contact(s, dated, "odd@example.com")
        add_contact(s, undated, "even@example.com")
    with db.session() as s:
        counts = {c.name: c.contacts for c in audience.count(s, segset, TODAY)}
    assert counts == {"undated": 1, "odd": 1}
