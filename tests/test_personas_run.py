"""Content by persona, end to end: the shipped webinar playbook on the shipped segments and
templates sends each persona its own invitation over real SMTP (aiosmtpd on loopback), the
messages keep the persona, and the report counts by it; a journey's `contact.persona`
branches and the `by_persona` checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select, update

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.exceptions import JourneyError
from campaigns.insight import report
from campaigns.journeys.parse import load_journey, parse_journey
from campaigns.journeys.segments import load_segments
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Account, Contact, Message

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = load_segments(ROOT / "journeys" / "segments.yaml")
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday, 10:00 in Tokyo

PEOPLE = [
    # email, role, title, locale: the persona the shipped rules give
    ("exec@acme.example", "executive", None, "en"),  # executive
    ("ceo@acme.example", "user", "代表取締役", "ja"),  # executive by title
    ("admin@acme.example", "admin", None, "ja"),  # admin
    ("it@acme.example", "technical", "IT Manager", "en"),  # admin
    ("user@acme.example", "user", None, "en"),  # end_user
    ("fan@acme.example", "champion", None, "ja"),  # end_user
]
PERSONAS = {
    "exec@acme.example": "executive",
    "ceo@acme.example": "executive",
    "admin@acme.example": "admin",
    "it@acme.example": "admin",
    "user@acme.example": "end_user",
    "fan@acme.example": "end_user",
}


def add_people(db) -> None:
    with db.session() as s, s.begin():
        account = Account(
            external_id="ACME",
            name="アクメ株式会社",
            arr=Decimal(2_000_000),
            plan="business",
            contract_status="active",
            owner_email="csm@example.com",
        )
        s.add(account)
        s.flush()
        for email, role, title, locale in PEOPLE:
            s.add(
                Contact(
                    account_id=account.id,
                    email=email,
                    name=email.split("@")[0].title(),
                    role=role,
                    title=title,
                    locale=locale,
                    time_zone="Asia/Tokyo",
                )
            )
        # billing is no persona and the webinar's audience leaves it out
        s.add(Contact(account_id=account.id, email="billing@acme.example", role="billing"))


def deploy_path(db, path: Path, segments=SEGMENTS) -> None:
    with db.session() as s, s.begin():
        deploy(s, load_journey(path, segments=segments), path.read_text("utf-8"), str(path))


def test_each_persona_gets_its_own_webinar_invitation_over_smtp(db, smtp_sink, build_engine):
    add_people(db)
    deploy_path(db, ROOT / "journeys" / "low_touch_webinar.yaml")
    engine = build_engine(transport=smtp_sink, clock=FakeClock(START), segments=SEGMENTS)
    engine.tick()

    mails = {parseaddr(str(m["To"]))[1]: m for m in smtp_sink.parsed()}
    assert set(mails) == set(PERSONAS)  # billing: not in the audience
    subjects = {to: str(m["Subject"]) for to, m in mails.items()}
    assert subjects["exec@acme.example"] == (
        "20 January: a 15-minute leadership briefing on the Q1 release"
    )
    assert subjects["ceo@acme.example"].startswith("【経営層の皆さまへ】")
    assert subjects["admin@acme.example"].startswith("【管理者の皆さまへ】")
    assert subjects["it@acme.example"].startswith("For admins:")
    # end users get the step's own invitation
    assert subjects["user@acme.example"] == "You're invited: Q1 product webinar on 20 January"
    assert subjects["fan@acme.example"].startswith("【ご招待】")

    def text(to: str) -> str:
        return mails[to].get_body(("plain",)).get_content()

    assert "leadership briefing" in text("exec@acme.example")
    assert "経営層の皆さま向けのブリーフィング" in text("ceo@acme.example")
    assert "管理者向けのパート" in text("admin@acme.example")
    assert "As an administrator at" in text("it@acme.example")
    assert "We are hosting a live webinar" in text("user@acme.example")
    assert "オンラインセミナー（ウェビナー）" in text("fan@acme.example")
    html = mails["ceo@acme.example"].get_body(("html",)).get_content()
    assert "冒頭15分" in html

    with db.session() as s:
        rows = s.execute(
            select(Contact.email, Message.persona, Message.template)
            .join(Contact, Contact.id == Message.contact_id)
            .where(Message.step_id == "invite")
        ).all()
    assert {email: persona for email, persona, _ in rows} == PERSONAS
    templates = {email: template for email, _, template in rows}
    assert templates["ceo@acme.example"] == "webinar_invite_executive"
    assert templates["it@acme.example"] == "webinar_invite_admin"
    assert templates["fan@acme.example"] == "webinar_invite"


def test_the_report_counts_sends_and_human_signals_by_persona(db, smtp_sink, build_engine):
    add_people(db)
    deploy_path(db, ROOT / "journeys" / "low_touch_webinar.yaml")
    engine = build_engine(transport=smtp_sink, clock=FakeClock(START), segments=SEGMENTS)
    engine.tick()
    with db.session() as s, s.begin():
        ids = {e: i for e, i in s.execute(select(Contact.email, Contact.id))}
        opened = [ids["exec@acme.example"], ids["admin@acme.example"], ids["it@acme.example"]]
        s.execute(
            update(Message)
            .where(Message.contact_id.in_(opened))
            .values(opened_at=START + timedelta(hours=1))
        )
        s.execute(
            update(Message)
            .where(Message.contact_id == ids["it@acme.example"])
            .values(clicked_at=START + timedelta(hours=1), answered_at=START + timedelta(hours=1))
        )
        # an email to a contact no persona matched, and one that bounced
        message = s.scalars(select(Message).where(Message.contact_id == ids["fan@acme.example"]))
        s.add(
            Message(
                contact_id=ids["billing@acme.example"],
                journey_id=message.one().journey_id,
                step_id="follow_up",
                channel="email",
                status=MessageStatus.SENT,
                sent_at=START,
                persona=None,
            )
        )
        s.execute(
            update(Message)
            .where(Message.contact_id == ids["fan@acme.example"])
            .values(status=MessageStatus.BOUNCED)
        )
    with db.session() as s:
        result = report.journey_report(s, "low_touch_webinar", by="persona")
    rows = {row.key: row for row in result.rows}
    assert list(rows) == ["(none)", "admin", "end_user", "executive"]
    counts = {k: (r.count("sent"), r.count("opened"), r.count("clicked")) for k, r in rows.items()}
    assert counts == {
        "(none)": (1, 0, 0),
        "admin": (2, 2, 1),
        "end_user": (1, 0, 0),
        "executive": (2, 1, 0),
    }
    assert rows["end_user"].count("bounced") == 1
    assert rows["admin"].count("answered") == 1
    assert rows["admin"].rate("open_rate").value == 1.0
    assert rows["executive"].as_dict()["rates"]["open_rate"]["n"] == 2
    # one day later: nothing was sent then
    with db.session() as s:
        later = report.journey_report(
            s, "low_touch_webinar", by="persona", since=(START + timedelta(days=2)).date()
        )
    assert later.rows == []


JOURNEY = """
journey: persona_branch
name: Executives are called, the others mailed
segments: [low_touch]
entry: {trigger: segment}
steps:
  - id: route
    branch:
      - when: contact.persona == 'executive'
        goto: done
  - id: hello
    email:
      template: webinar_followup
      subject: "Hello {{ persona_label or 'there' }}"
      by_persona:
        admin: {subject: {en: "Admin {{ persona }}", ja: "{{ persona_label }}の皆さまへ"}}
        executive: {subject: "Never sent: executives branch away"}
  - id: done
    exit: completed
"""


def test_a_branch_on_contact_persona_and_persona_template_variables(
    db, smtp_sink, build_engine, tmp_path
):
    add_people(db)
    path = tmp_path / "persona_branch.yaml"
    path.write_text(JOURNEY, "utf-8")
    deploy_path(db, path)
    engine = build_engine(transport=smtp_sink, clock=FakeClock(START), segments=SEGMENTS)
    engine.tick()
    subjects = {parseaddr(str(m["To"]))[1]: str(m["Subject"]) for m in smtp_sink.parsed()}
    assert subjects == {
        "admin@acme.example": "管理者の皆さまへ",
        "it@acme.example": "Admin admin",
        "user@acme.example": "Hello End user",
        "fan@acme.example": "Hello エンドユーザー",
        "billing@acme.example": "Hello there",  # no persona: the step's own, no label
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("admin: {subject:", "admn: {subject:"),
            "x.yaml:16:9: unknown persona 'admn' (did you mean 'admin'?)",
        ),
        (
            ("contact.persona == 'executive'", "contact.persona == 'executiv'"),
            "x.yaml:9:35: unknown persona 'executiv' (did you mean 'executive'?)",
        ),
        (
            ("segments: [low_touch]", "segments: [tech_touch]"),
            "x.yaml:17:9: persona 'executive' is not one the journey's segments (tech_touch) plan",
        ),
        (
            (
                "      by_persona:",
                "      variants: [{id: a, subject: A}, {id: b, subject: B}]\n      by_persona:",
            ),
            "x.yaml:16:7: step 'hello' chooses its content by variants and by persona",
        ),
        (
            ("admin: {subject:", "admin: {subjet:"),
            "x.yaml:16:17: unknown key 'subjet' in the content for persona 'admin'",
        ),
        (
            (
                'admin: {subject: {en: "Admin {{ persona }}", ja: "{{ persona_label }}'
                'の皆さまへ"}}',
                "admin: webinar_folowup",
            ),
            "x.yaml:16:16: unknown template 'webinar_folowup' (did you mean 'webinar_followup'?)",
        ),
    ],
)
def test_bad_by_persona_reports_its_place_with_a_hint(change, expected):
    old, new = change
    assert old in JOURNEY
    with pytest.raises(JourneyError) as info:
        parse_journey(
            JOURNEY.replace(old, new), "x.yaml", segments=SEGMENTS, templates={"webinar_followup"}
        )
    found = [str(p) for p in info.value.problems]
    assert any(p.startswith(expected) for p in found), found
