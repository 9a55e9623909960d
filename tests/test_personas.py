"""Personas: the rules in segments.yaml, their checks, and the two evaluations (Python and
SQL) that must agree on every contact."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from campaigns.engine import audience
from campaigns.engine.personas import persona_of, personas_for
from campaigns.exceptions import SegmentError
from campaigns.journeys import segments as seg
from campaigns.store.models import Account, Contact

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
TODAY = date(2026, 11, 23)

RULES = textwrap.dedent(
    """
    personas:
      executive:
        label: {en: Executive, ja: 経営層}
        when: "contact.role == 'executive' or contact.title in ['CEO', 'CTO', '代表取締役']"
      admin:
        label: {en: Administrator, ja: 管理者}
        when: contact.role == 'admin' or contact.attributes.is_admin == true
      end_user:
        label: {en: End user, ja: エンドユーザー}
        when: contact.role in ['user', 'champion', 'technical'] or contact.role is none
    tiers:
      high_touch:
        when: arr >= 5000000
      low_touch:
        when: arr >= 1000000
        personas: [admin, end_user, executive]
      tech_touch:
        when: true
        personas: [end_user]
    segments:
      executives:
        when: contact.persona == 'executive'
    """
)
SEGMENTS = seg.parse_segments(RULES, "segments.yaml")


def add(session, account: Account | None, email: str, **fields) -> Contact:
    contact = Contact(account_id=account.id if account else None, email=email, **fields)
    session.add(contact)
    session.flush()
    return contact


@pytest.fixture
def people(db):
    with db.session() as s, s.begin():
        acme = Account(external_id="acme", name="株式会社アクメ", arr=2_000_000)
        s.add(acme)
        s.flush()
        add(s, acme, "ceo@acme.example", role="user", title="代表取締役", locale="ja")
        add(s, acme, "exec@acme.example", role="executive")
        add(s, acme, "admin@acme.example", role="admin", title="CEO")  # executive comes first
        add(s, acme, "it@acme.example", role="technical", attributes={"is_admin": True})
        add(s, acme, "user@acme.example", role="user")
        add(s, acme, "nobody@acme.example", role=None)
        add(s, acme, "billing@acme.example", role="billing")
        add(s, None, "alone@nowhere.example", role="admin")
    return db


EXPECTED = {
    "ceo@acme.example": "executive",
    "exec@acme.example": "executive",
    "admin@acme.example": "executive",
    "it@acme.example": "admin",
    "user@acme.example": "end_user",
    "nobody@acme.example": "end_user",
    "billing@acme.example": None,
    "alone@nowhere.example": "admin",
}


def test_personas_are_read_in_order_with_labels_and_each_segments_list():
    assert SEGMENTS.persona_names == ("executive", "admin", "end_user")
    assert SEGMENTS.persona("executive").label_for("ja") == "経営層"
    assert SEGMENTS.persona("admin").label_for("ja-JP") == "管理者"
    assert SEGMENTS.persona("end_user").label_for("fr") == "End user"
    assert SEGMENTS.get("low_touch").personas == ("admin", "end_user", "executive")
    assert SEGMENTS.get("high_touch").personas is None
    # a journey plans for the personas its segments list; a segment with no list: all
    assert SEGMENTS.planned_personas(["tech_touch"]) == ("end_user",)
    assert SEGMENTS.planned_personas(["low_touch", "tech_touch"]) == (
        "executive",
        "admin",
        "end_user",
    )
    assert SEGMENTS.planned_personas(["high_touch"]) == SEGMENTS.persona_names


def test_first_matching_persona_wins_in_python_and_in_sql(people):
    with people.session() as s:
        contacts = list(s.scalars(select(Contact)))
        by_email = {c.email: c.id for c in contacts}
        python = personas_for(s, SEGMENTS, [c.id for c in contacts], NOW)
        assert {e: python[i] for e, i in by_email.items()} == EXPECTED
        # rows work as well as ids, and an unknown id is left out
        assert personas_for(s, SEGMENTS, [*contacts[:2], 999_999], NOW) == {
            c.id: EXPECTED[c.email] for c in contacts[:2]
        }
        case = audience.RuleCompiler(SEGMENTS, TODAY).persona_case()
        rows = s.execute(
            select(Contact.email, case).outerjoin(Account, Contact.account_id == Account.id)
        ).all()
        assert dict(rows) == EXPECTED
        counts = audience.persona_counts(s, SEGMENTS, TODAY)
        assert counts == {"executive": 3, "admin": 2, "end_user": 2, None: 1}
        assert audience.persona_counts(s, SEGMENTS, TODAY, ["executives"]) == {"executive": 3}


def test_a_segment_rule_can_read_contact_persona(people):
    query = audience.members(SEGMENTS, ["executives"], TODAY)
    with people.session() as s:
        emails = set(s.scalars(select(Contact.email).where(Contact.id.in_(query))))
    assert emails == {e for e, p in EXPECTED.items() if p == "executive"}


def test_no_personas_means_none_for_everyone(people):
    plain = seg.parse_segments("segments:\n  all:\n    when: true\n")
    with people.session() as s:
        found = personas_for(s, plain, list(s.scalars(select(Contact.id))), NOW)
        assert set(found.values()) == {None}
        case = audience.RuleCompiler(plain, TODAY).persona_case()
        assert set(s.scalars(select(case).select_from(Contact))) == {None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "personas:\n  admin: {when: \"contact.role == 'admin'\"}\n"
            "tiers:\n  low: {when: true, personas: [admn]}\n",
            "segments.yaml:4:32: unknown persona 'admn' in 'low' (did you mean 'admin'?)",
        ),
        (
            "tiers:\n  low: {when: true, personas: [admin]}\n",
            "segments.yaml:2:32: unknown persona 'admin' in 'low' (define it under a top-level",
        ),
        (
            "personas:\n  admin: {when: \"contact.role == 'admin'\"}\n"
            "tiers:\n  low: {when: true, personas: [admin, admin]}\n",
            "segments.yaml:4:39: persona 'admin' is listed twice in 'low'",
        ),
        (
            "personas:\n  admin: {when: \"contact.role == 'admin'\"}\n"
            "  admin: {when: \"contact.role == 'user'\"}\n",
            "segments.yaml:3:3: duplicate key 'admin'",
        ),
        (
            "personas:\n  admin: {when: \"opened('welcome')\"}\n",
            "segments.yaml:2:18: opened() cannot be used in a persona rule",
        ),
        (
            "personas:\n  admin: {when: \"contact.persona == 'admin'\"}\n",
            "segments.yaml:2:26: a persona rule cannot use contact.persona",
        ),
        (
            "personas:\n  admin: {when: \"tier == 'low'\"}\n",
            "segments.yaml:2:18: a persona rule cannot use 'tier'",
        ),
        (
            "personas:\n  admin: {when: \"contact.rol == 'admin'\"}\n",
            "segments.yaml:2:26: unknown contact field 'rol' (did you mean 'role'?)",
        ),
        (
            "personas:\n  admin: {label: Admin}\n",
            "segments.yaml:2:3: persona 'admin' needs a 'when:' rule",
        ),
        (
            "personas:\n  admin: {whan: true}\n",
            "segments.yaml:2:11: unknown key 'whan' in persona 'admin' (did you mean 'when'?)",
        ),
        ("personas:\n  Admin-1: {when: true}\n", "segments.yaml:2:3: bad persona name 'Admin-1'"),
        ("personas: [admin, user]\n", "segments.yaml:1:11: 'personas' must be a mapping"),
        (
            "personas:\n  executive: {when: \"contact.role == 'executive'\"}\n"
            "segments:\n  execs: {when: \"contact.persona == 'exec'\"}\n",
            "segments.yaml:4:38: unknown persona 'exec' (did you mean 'executive'?)",
        ),
        (
            "personas:\n  admin: {when: \"contact.role == 'admin'\"}\n"
            "segments:\n  a: {when: true, personas: admin}\n",
            "segments.yaml:4:29: 'personas' of 'a' must be a non-empty list",
        ),
    ],
)
def test_bad_personas_report_their_place_with_a_hint(text, expected):
    with pytest.raises(SegmentError) as info:
        seg.parse_segments(text, "segments.yaml")
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(expected) for p in found), found


def test_a_persona_with_a_broken_rule_is_still_a_name():
    text = (
        "personas:\n  admin: {when: \"opened('x')\"}\n"
        "tiers:\n  low: {when: true, personas: [admin]}\n"
    )
    with pytest.raises(SegmentError) as info:
        seg.parse_segments(text, "segments.yaml")
    assert [p.message for p in info.value.problems] == ["opened() cannot be used in a persona rule"]


# --- SQL and Python agree on every contact -----------------------------------------------

ROLES = st.sampled_from([None, "admin", "user", "executive", "billing"])
TITLES = st.sampled_from([None, "CEO", "IT Manager", "部長", "エンジニア"])
TEAMS = st.sampled_from([None, "ops", "営業", "finance"])
PLANS = st.sampled_from([None, "starter", "enterprise"])


@st.composite
def atom(draw: st.DrawFn) -> str:
    field, values = draw(
        st.sampled_from(
            [
                ("contact.role", ["admin", "user", "executive", "billing"]),
                ("contact.title", ["CEO", "IT Manager", "部長", "エンジニア"]),
                ("contact.attributes.team", ["ops", "営業", "finance"]),
                ("plan", ["starter", "enterprise"]),
            ]
        )
    )
    kind = draw(st.sampled_from(["eq", "ne", "in", "notin", "none", "notnone"]))
    if kind in ("none", "notnone"):
        return f"{field} is {'not ' if kind == 'notnone' else ''}none"
    if kind in ("in", "notin"):
        chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        return f"{field} {'not in' if kind == 'notin' else 'in'} {chosen!r}"
    return f"{field} {'==' if kind == 'eq' else '!='} '{draw(st.sampled_from(values))}'"


persona_rules = st.recursive(
    atom(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        inner.map(lambda r: f"not ({r})"),
    ),
    max_leaves=4,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rules=st.lists(persona_rules, min_size=1, max_size=3),
    rows=st.lists(st.tuples(ROLES, TITLES, TEAMS, PLANS), min_size=1, max_size=8),
)
def test_sql_persona_case_agrees_with_python_evaluation(db, rules, rows):
    body = "".join(f'  p{i}:\n    when: "{rule}"\n' for i, rule in enumerate(rules))
    segset = seg.parse_segments(f"personas:\n{body}")
    with db.session() as s, s.begin():
        s.query(Contact).delete()
        s.query(Account).delete()
        for i, (role, title, team, plan) in enumerate(rows):
            account = Account(external_id=f"a{i}", name=f"a{i}", plan=plan)
            s.add(account)
            s.flush()
            attributes = {"team": team} if team is not None else {}
            add(s, account, f"c{i}@example.com", role=role, title=title, attributes=attributes)
    with db.session() as s:
        case = audience.RuleCompiler(segset, TODAY).persona_case()
        in_sql = dict(
            s.execute(
                select(Contact.id, case).outerjoin(Account, Contact.account_id == Account.id)
            ).all()
        )
        contacts = list(s.scalars(select(Contact)))
        in_python = personas_for(s, segset, contacts, NOW)
        one_by_one = {c.id: persona_of(segset, c, c.account, NOW) for c in contacts}
    assert in_sql == in_python == one_by_one, (rules, rows)
