"""An open task past its due time escalates once to the owner's manager: the owner's own
``users.escalate_to``, else their team's address in ``triggers.yaml``, else its default; not
before it is due, never twice, the owner in Cc. Real SMTP (aiosmtpd), parsed with ``email``."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from campaigns.journeys.triggers import parse_triggers
from campaigns.store.enums import MessageStatus, TaskStatus
from campaigns.store.models import Account, Message, Task
from campaigns.store.users import add_user

TRIGGERS = textwrap.dedent(
    """\
    escalation:
      default: cs-lead@example.com
      teams:
        enterprise: enterprise-lead@example.com
    """
)
OWN_BOSS = "aiko@example.com"  # has users.escalate_to
TEAM = "ben@example.com"  # in team enterprise
NOBODY = "carl@example.com"  # no user row: the default
PASSWORD = "correct horse battery"


@pytest.fixture
def due_tasks(db, clock):
    """One open task each for three owners, due in a day; and one done task, overdue."""
    now = clock.now()
    with db.session() as s, s.begin():
        aiko = add_user(s, OWN_BOSS, PASSWORD, now, name="青木 愛子")
        aiko.escalate_to, aiko.locale = "boss@example.com", "ja"
        ben = add_user(s, TEAM, PASSWORD, now, name="Ben")
        ben.team = "enterprise"
        account = Account(external_id="A", name="株式会社エー", arr=Decimal(1), currency="JPY")
        s.add(account)
        s.flush()
        for owner in (OWN_BOSS, TEAM, NOBODY):
            s.add(
                Task(
                    account_id=account.id,
                    owner_email=owner,
                    kind="call",
                    priority="high",
                    title=f"Call for {owner}",
                    due_at=now + timedelta(days=1),
                    created_at=now,
                    notified_at=now,
                )
            )
        s.add(
            Task(
                account_id=account.id,
                owner_email=NOBODY,
                title="Done already",
                status=TaskStatus.DONE,
                due_at=now - timedelta(days=1),
                created_at=now - timedelta(days=2),
                notified_at=now,
            )
        )


@pytest.fixture
def engine(build_engine, smtp_sink, due_tasks):
    found = parse_triggers(TRIGGERS, "triggers.yaml")
    return build_engine(transport=smtp_sink, triggers=lambda: found)


def escalations(smtp_sink) -> dict[str, tuple[list[str], object]]:
    """The escalation mails the sink got: to -> (envelope recipients, parsed message)."""
    found = {}
    for (_, rcpt, _), parsed in zip(smtp_sink.messages, smtp_sink.parsed(), strict=True):
        if "Overdue" in parsed["Subject"] or "期限超過" in parsed["Subject"]:
            found[parsed["To"].addresses[0].addr_spec] = (rcpt, parsed)
    return found


def test_nothing_escalates_before_it_is_due(db, engine, clock, smtp_sink):
    clock.advance(timedelta(hours=23))
    engine.tick()
    assert escalations(smtp_sink) == {}
    with db.session() as s:
        assert (
            s.scalars(select(Task.escalated_at).where(Task.escalated_at.is_not(None))).all() == []
        )


def test_an_overdue_task_escalates_once_to_the_right_address(db, engine, clock, smtp_sink):
    clock.advance(timedelta(days=1, minutes=1))
    engine.tick()
    engine.tick()
    clock.advance(timedelta(days=1))
    engine.tick()
    sent = escalations(smtp_sink)
    assert set(sent) == {"boss@example.com", "enterprise-lead@example.com", "cs-lead@example.com"}
    assert len(smtp_sink.messages) == 3  # once each: never again, the done task never
    with db.session() as s:
        marked = {t.owner_email: t.escalated_to for t in s.scalars(select(Task)) if t.escalated_at}
        rows = s.scalars(select(Message).where(Message.attempt_key == "escalation")).all()
    assert marked == {
        OWN_BOSS: "boss@example.com",
        TEAM: "enterprise-lead@example.com",
        NOBODY: "cs-lead@example.com",
    }
    assert len(rows) == 3 and all(r.status == MessageStatus.SENT for r in rows)
    assert all(r.step_id.startswith("escalation:") and r.enrollment_id is None for r in rows)


def test_the_owner_is_in_cc_and_the_manager_reads_their_language(engine, clock, smtp_sink):
    clock.advance(timedelta(days=1, minutes=1))
    engine.tick()
    sent = escalations(smtp_sink)
    rcpt, message = sent["boss@example.com"]
    assert rcpt == ["boss@example.com", OWN_BOSS]  # the envelope carries the copy too
    assert [a.addr_spec for a in message["Cc"].addresses] == [OWN_BOSS]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None
    # The manager has no user row: the owner's language (Japanese) is theirs too.
    assert message["Subject"] == "[期限超過] Call for aiko@example.com（担当：青木 愛子）"
    text = message.get_body(("plain",)).get_content()
    assert "株式会社エー" in text and "期日を1分過ぎたため" in text and "エスカレーション" in text
    rcpt, english = sent["cs-lead@example.com"]
    assert rcpt == ["cs-lead@example.com", NOBODY]
    body = english.get_body(("plain",)).get_content()
    assert "is overdue by" in body and "escalated to you on" in body


def test_a_task_closed_before_its_escalation_went_is_not_escalated(db, engine, clock, smtp_sink):
    from campaigns.engine.tasks import complete_task

    with db.session() as s, s.begin():
        task = s.scalar(select(Task).where(Task.owner_email == TEAM))
        assert task is not None
        complete_task(s, task.id, clock.now())
    clock.advance(timedelta(days=2))
    engine.tick()
    assert "enterprise-lead@example.com" not in escalations(smtp_sink)
