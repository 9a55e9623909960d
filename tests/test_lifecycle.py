"""A journey's lifecycle in the engine (SQLite and PostgreSQL, a fake clock, a file outbox):
a draft runs nothing; a paused journey enrols nobody, runs no step and sends nothing;
resuming goes on with no wait lost and through the frequency cap and rate limits; archiving
and taking someone out end enrollments and withdraw their unsent messages; each change is in
the audit log, in its transaction."""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from datetime import timedelta
from itertools import pairwise

import pytest
from sqlalchemy import func, select

from campaigns.config import parse_limits
from campaigns.engine import leases, lifecycle
from campaigns.engine.deploy import deploy
from campaigns.engine.ratelimit import DomainRateLimiter
from campaigns.exceptions import UnknownJourney
from campaigns.journeys.parse import parse_journey
from campaigns.store import audit
from campaigns.store.enums import EnrollmentState, JourneyStatus, MessageStatus
from campaigns.store.models import Account, AuditEntry, Contact, Enrollment, Message
from campaigns.store.models import Journey as JourneyRow
from tests.kit import LINKS, START

ACTOR = "marketer@example.com"

WAITS = textwrap.dedent(
    """\
    journey: nurture
    name: 育成メール
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: "こんにちは {{ contact.name }}"}}
      - {id: rest, wait: 3 days}
      - {id: again, email: {template: onboarding_tips, subject: Again}}
    """
)

BURST = textwrap.dedent(
    """\
    journey: burst
    name: Burst
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: one, email: {template: onboarding_tips, subject: One}}
      - {id: two, email: {template: onboarding_tips, subject: Two}}
      - {id: three, email: {template: onboarding_tips, subject: Three}}
    """
)


def people(db, n: int, account: str = "ACME", domain: str = "example.com") -> list[str]:
    """``n`` contacts at one account (every other one with a Japanese name)."""
    with db.session() as s, s.begin():
        company = Account(external_id=account, name=f"{account} 株式会社")
        s.add(company)
        s.flush()
        emails = [f"{account.lower()}{i}@{domain}" for i in range(n)]
        for i, email in enumerate(emails):
            name = f"山田 {i}" if i % 2 else f"Pat {i}"
            s.add(Contact(account_id=company.id, email=email, name=name, time_zone="Asia/Tokyo"))
    return emails


def put(db, text: str) -> str:
    journey = parse_journey(text, "j.yaml")
    with db.session() as s, s.begin():
        deploy(s, journey, text, "j.yaml")
    return journey.key


def change(db, move, key: str, clock) -> lifecycle.Change:
    with db.session() as s, s.begin():
        return move(s, key, ACTOR, clock.now())


def sent(db, step: str | None = None) -> list[str]:
    """The addresses sent to (of ``step``), one per message."""
    query = select(Message.to_address).where(Message.status == MessageStatus.SENT)
    if step is not None:
        query = query.where(Message.step_id == step)
    with db.session() as s:
        return [a for a in s.scalars(query) if a is not None]


def status(db, key: str) -> str:
    with db.session() as s:
        return s.scalars(select(JourneyRow.status).where(JourneyRow.key == key)).one()


def enrollments(db) -> list[Enrollment]:
    with db.session() as s:
        return list(s.scalars(select(Enrollment).order_by(Enrollment.id)))


def actions(db, key: str) -> list[str]:
    with db.session() as s:
        return [e.action for e in reversed(audit.entries(s, kind=audit.JOURNEY, target=key))]


# ---------------------------------------------------------------------------- draft


def test_a_draft_enrols_nobody_until_it_goes_live(db, build_engine, clock):
    people(db, 3)
    key = put(db, WAITS)
    with db.session() as s, s.begin():
        lifecycle.stored_as_draft(s, key, ACTOR, clock.now(), 1)
    engine = build_engine(links=LINKS)
    engine.tick()
    assert enrollments(db) == [] and sent(db) == []
    assert change(db, lifecycle.go_live, key, clock).after == JourneyStatus.LIVE
    engine.tick()
    assert len(sent(db, "hello")) == 3
    assert actions(db, key) == ["draft", "live"]


# ---------------------------------------------------------------------------- pause and resume


def test_a_paused_journey_enrols_nobody_runs_no_step_and_asks_for_no_jobs(db, build_engine, clock):
    emails = people(db, 4)
    key = put(db, WAITS)
    engine = build_engine(links=LINKS)
    engine.tick()
    assert sorted(sent(db, "hello")) == sorted(emails)
    paused = change(db, lifecycle.pause, key, clock)
    assert (paused.before, paused.after) == ("live", "paused")
    with db.session() as s:
        assert s.scalars(select(JourneyRow.paused_at)).one() == START
    newcomer = people(db, 1, account="LATE")
    for day in range(1, 8):  # the wait ends on day 3: still nothing runs
        clock.set(START + timedelta(days=day))
        result = engine.tick()
        assert result.entered.get(key) is None and result.claimed == 0
        assert leases.count_due(db.sessions, clock.now(), 100) == 0  # no job is asked for
    assert sent(db, "again") == [] and len(enrollments(db)) == 4
    assert {e.current_step for e in enrollments(db)} == {"rest"}  # still on its wait
    resumed = change(db, lifecycle.resume, key, clock)
    assert (resumed.before, resumed.after) == ("paused", "live")
    engine.tick()
    assert sorted(sent(db, "again")) == sorted(emails)  # the wait that ended runs at once
    assert sent(db, "hello").count(newcomer[0]) == 1  # entries open again
    with db.session() as s:
        [entry] = [e for e in audit.entries(s, target=key) if e.action == "resume"]
        assert entry.detail["paused_seconds"] == 7 * 86400 and entry.actor == ACTOR
        assert s.scalars(select(JourneyRow.paused_at)).one() is None


def test_resume_keeps_a_wait_that_is_still_running(db, build_engine, clock):
    people(db, 2)
    key = put(db, WAITS)
    engine = build_engine(links=LINKS)
    engine.tick()
    [due_at] = {e.next_run_at for e in enrollments(db)}
    assert due_at == START + timedelta(days=3)
    clock.set(START + timedelta(days=1))
    change(db, lifecycle.pause, key, clock)
    clock.set(START + timedelta(days=2))
    change(db, lifecycle.resume, key, clock)
    engine.tick()
    assert sent(db, "again") == []
    assert {e.next_run_at for e in enrollments(db)} == {due_at}  # no time added, none lost
    clock.set(due_at - timedelta(seconds=1))
    engine.tick()
    assert sent(db, "again") == []
    clock.set(due_at)
    engine.tick()
    assert len(sent(db, "again")) == 2


def test_resume_releases_fifty_due_contacts_through_the_frequency_cap(db, build_engine, clock):
    """A cap of one per day: at resume every contact has two sends due (the second was held
    by the cap before the pause, the third comes after it); each gets one, the next a day on."""
    emails = people(db, 50)
    key = put(db, BURST)
    engine = build_engine(
        links=LINKS, settings={"frequency_cap": 1, "frequency_period": timedelta(days=1)}
    )
    engine.tick()
    assert sorted(sent(db, "one")) == sorted(emails) and sent(db, "two") == []
    clock.set(START + timedelta(hours=1))
    change(db, lifecycle.pause, key, clock)
    for hours in (6, 30, 54, 72):
        clock.set(START + timedelta(hours=hours))
        engine.tick()
    assert len(sent(db)) == 50  # nothing while paused, though "two" became due at 24 h
    change(db, lifecycle.resume, key, clock)
    for minutes in range(0, 60, 10):  # several ticks in the first hour after the resume
        clock.set(START + timedelta(hours=72, minutes=minutes))
        engine.tick()
    assert Counter(sent(db, "two")) == Counter(emails) and sent(db, "three") == []
    with db.session() as s:
        held = s.scalars(select(Message).where(Message.step_id == "three")).all()
        assert len(held) == 50 and {m.status for m in held} == {MessageStatus.DEFERRED}
        assert {m.not_before for m in held} == {START + timedelta(hours=96)}
    clock.set(START + timedelta(hours=96))
    engine.tick()
    assert Counter(sent(db, "three")) == Counter(emails)
    with db.session() as s:  # never more than one to a contact in any day
        times = s.execute(
            select(Message.to_address, Message.sent_at).where(Message.status == "sent")
        ).all()
    for email in emails:
        mine = sorted(at for to, at in times if to == email)
        assert all(later - earlier >= timedelta(days=1) for earlier, later in pairwise(mine))


def test_resume_releases_through_the_domain_rate_limit(db, build_engine, clock):
    emails = people(db, 30, domain="corp.example.jp")
    key = put(db, WAITS)
    engine = build_engine(
        links=LINKS,
        settings={"frequency_cap": 0},
        rate_limiter=DomainRateLimiter(parse_limits("corp.example.jp=10/60s")),
    )
    for seconds in (0, 61, 122):
        clock.set(START + timedelta(seconds=seconds))
        engine.tick()
    assert len(sent(db, "hello")) == 30
    clock.set(START + timedelta(days=1))
    change(db, lifecycle.pause, key, clock)
    clock.set(START + timedelta(days=5))
    engine.tick()
    change(db, lifecycle.resume, key, clock)
    engine.tick()
    assert len(sent(db, "again")) == 10  # the limit's ten, not thirty at once
    for minute in (1, 2):
        clock.set(START + timedelta(days=5, minutes=minute, seconds=1))
        engine.tick()
    assert sorted(sent(db, "again")) == sorted(emails)


def test_a_journey_paused_after_the_claim_runs_nothing_of_it(db, build_engine, clock):
    people(db, 3)
    key = put(db, WAITS)
    engine = build_engine(links=LINKS, settings={"heartbeat": False})
    engine.tick()
    clock.set(START + timedelta(days=3))
    lease = engine.claim()
    assert lease is not None and len(lease.ids) == 3
    change(db, lifecycle.pause, key, clock)
    result = engine.advance(lease)
    assert result.sent == 0 and sent(db, "again") == []
    assert all(e.claimed_until is None for e in enrollments(db))  # released, still due
    change(db, lifecycle.resume, key, clock)
    engine.tick()
    assert len(sent(db, "again")) == 3


@pytest.mark.parametrize(
    ("start", "move", "message"),
    [
        ("live", lifecycle.resume, "cannot resume (it is live already)"),
        ("live", lifecycle.go_live, "cannot go live (it is live already)"),
        ("paused", lifecycle.pause, "cannot pause (it is paused already)"),
        ("paused", lifecycle.go_live, "cannot go live (it is paused: resume it)"),
        ("draft", lifecycle.pause, "cannot pause (it is draft)"),
        ("archived", lifecycle.go_live, "deploy it again with --draft"),
        ("archived", lifecycle.archive, "it is archived already"),
    ],
)
def test_a_change_the_status_does_not_allow_is_refused_and_changes_nothing(
    db, clock, start, move, message
):
    key = put(db, WAITS)
    with db.session() as s, s.begin():
        s.scalars(select(JourneyRow)).one().status = start
    with (
        pytest.raises(lifecycle.LifecycleError, match=re.escape(message)),
        db.session() as s,
        s.begin(),
    ):
        move(s, key, ACTOR, clock.now())
    assert status(db, key) == start and actions(db, key) == []


def test_an_unknown_journey_is_refused_by_name(db, clock):
    with pytest.raises(UnknownJourney, match="no journey 'nope'"), db.session() as s:
        lifecycle.pause(s, "nope", ACTOR, clock.now())


def test_the_audit_entry_lands_with_the_change_or_not_at_all(db, clock):
    key = put(db, WAITS)
    with pytest.raises(RuntimeError), db.session() as s, s.begin():
        lifecycle.pause(s, key, ACTOR, clock.now())
        raise RuntimeError("the request failed after the change")
    assert status(db, key) == "live"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0


# ---------------------------------------------------------------------------- archive


def test_archive_ends_running_enrollments_and_withdraws_their_unsent_messages(
    db, build_engine, clock
):
    emails = people(db, 5)
    key = put(db, BURST)
    engine = build_engine(links=LINKS, settings={"frequency_cap": 1})
    engine.tick()  # "one" sent, "two" deferred by the cap
    archived = change(db, lifecycle.archive, key, clock)
    assert (archived.ended, archived.withdrawn) == (5, 5)
    rows = enrollments(db)
    assert {(e.state, e.exit_reason) for e in rows} == {(EnrollmentState.EXITED, "archived")}
    assert all(e.next_run_at is None and e.finished_at == START for e in rows)
    with db.session() as s:
        two = s.scalars(select(Message).where(Message.step_id == "two")).all()
        assert {(m.status, m.error) for m in two} == {(MessageStatus.SUPPRESSED, "archived")}
    people(db, 2, account="LATE")
    clock.set(START + timedelta(days=30))
    engine.tick()
    assert sorted(sent(db)) == sorted(emails) and len(enrollments(db)) == 5
    with db.session() as s:
        [entry] = audit.entries(s, target=key)
        assert (entry.action, entry.detail["ended"], entry.detail["withdrawn"]) == (
            "archive",
            5,
            5,
        )


# ---------------------------------------------------------------------------- remove


def test_remove_a_contact_by_email_ends_its_enrollment_and_withholds_its_mail(
    db, build_engine, clock
):
    emails = people(db, 3)
    key = put(db, BURST)
    engine = build_engine(links=LINKS, settings={"frequency_cap": 1})
    engine.tick()
    with db.session() as s, s.begin():
        removal = lifecycle.remove(s, key, ACTOR, clock.now(), contact=emails[1].upper())
    assert (removal.who, removal.ended, removal.withdrawn) == (f"contact {emails[1]}", 1, 1)
    clock.set(START + timedelta(days=8))
    for _ in range(3):
        engine.tick()
    assert emails[1] not in sent(db, "two") and sorted(sent(db, "two")) == sorted(
        [emails[0], emails[2]]
    )
    with db.session() as s:
        gone = s.scalars(select(Enrollment).join(Contact).where(Contact.email == emails[1])).one()
        assert (gone.state, gone.exit_reason) == (EnrollmentState.EXITED, f"removed by {ACTOR}")
        withheld = s.scalars(select(Message).where(Message.to_address == emails[1])).all()
        assert {(m.step_id, m.status) for m in withheld} == {
            ("one", MessageStatus.SENT),
            ("two", MessageStatus.SUPPRESSED),
        }
        [entry] = audit.entries(s, target=key)
        assert entry.action == "remove" and entry.detail["who"] == f"contact {emails[1]}"


def test_remove_an_account_by_external_id_takes_out_each_of_its_contacts(db, build_engine, clock):
    acme = people(db, 2, account="ACME")
    other = people(db, 2, account="OTHER")
    key = put(db, WAITS)
    engine = build_engine(links=LINKS)
    engine.tick()
    with db.session() as s, s.begin():
        removal = lifecycle.remove(s, key, ACTOR, clock.now(), account="ACME")
    assert (removal.who, removal.ended) == ("account ACME", 2)
    clock.set(START + timedelta(days=3))
    engine.tick()
    assert sorted(sent(db, "again")) == sorted(other) and not set(acme) & set(sent(db, "again"))


ACCOUNT_JOURNEY = textwrap.dedent(
    """\
    journey: acct
    name: Account journey
    enrol: account
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: rest, wait: 1 day}
      - {id: hello, recipients: all, email: {template: onboarding_tips, subject: Hi}}
    """
)


def test_remove_an_account_from_an_account_journey(db, build_engine, clock):
    people(db, 2, account="ACME")
    people(db, 1, account="BETA")
    key = put(db, ACCOUNT_JOURNEY)
    engine = build_engine(links=LINKS)
    engine.tick()
    with db.session() as s, s.begin():
        removal = lifecycle.remove(s, key, ACTOR, clock.now(), account="ACME")
    assert removal.ended == 1
    clock.set(START + timedelta(days=1))
    engine.tick()
    assert sent(db, "hello") == ["beta0@example.com"]


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ({"contact": "nobody@example.com"}, "no contact with the email 'nobody@example.com'"),
        ({"account": "NOPE"}, "no account with the external id 'NOPE'"),
        ({"contact": "late0@example.com"}, "contact late0@example.com is not in it"),
        ({}, "name one contact"),
        ({"contact": "acme0@example.com", "account": "ACME"}, "name one contact"),
    ],
)
def test_remove_refuses_someone_unknown_or_not_in_the_journey(
    db, build_engine, clock, who, message
):
    people(db, 1)
    key = put(db, WAITS)
    build_engine(links=LINKS).tick()
    people(db, 1, account="LATE")
    with pytest.raises(lifecycle.LifecycleError, match=message), db.session() as s, s.begin():
        lifecycle.remove(s, key, ACTOR, clock.now(), **who)
    assert actions(db, key) == []


def test_a_batch_holding_a_removed_enrollment_writes_and_sends_nothing_more(
    db, build_engine, clock
):
    emails = people(db, 3)
    key = put(db, WAITS)
    engine = build_engine(links=LINKS, settings={"heartbeat": False})
    engine.tick()
    clock.set(START + timedelta(days=3))
    lease = engine.claim()
    assert lease is not None and len(lease.ids) == 3
    with db.session() as s, s.begin():
        lifecycle.remove(s, key, ACTOR, clock.now(), contact=emails[0])
    with pytest.raises(leases.LeaseLost):  # its fence is broken: the batch stops
        engine.advance(lease)
    assert sent(db, "again") == []
    engine.tick()  # the others are taken again at once, one at a time
    assert sorted(sent(db, "again")) == sorted(emails[1:])
    with db.session() as s:
        gone = s.scalars(select(Enrollment).join(Contact).where(Contact.email == emails[0])).one()
        assert (gone.state, gone.exit_reason) == (EnrollmentState.EXITED, f"removed by {ACTOR}")
