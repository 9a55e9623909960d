"""Date anchors (``wait_until_date``): a journey waits until a day, such as 60 days before the
account's renewal date or 1 day before an invite's ``starts_at``, at a local time of day.

End to end on SQLite and PostgreSQL with a fake clock (and a real SMTP server for the
renewal reminders): every entrant gets the reminders due to them on their days and nothing
after the renewal; each ``if_past`` rule; the contact's own zone for ``at``. Then the rules as
pure functions, and the language's checks (with hypothesis mutations of a journey file).
"""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.exceptions import JourneyError
from campaigns.journeys import anchors
from campaigns.journeys.model import SendingWindow, WaitUntilDateStep
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import EnrollmentState, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, Message
from tests.kit import LINKS, START

TOKYO = ZoneInfo("Asia/Tokyo")
TODAY = START.astimezone(TOKYO).date()  # 2026-11-24, a Tuesday; START is 10:00 in Tokyo
TEMPLATES = {"renewal_reminder", "webinar_invite", "webinar_reminder", "onboarding_tips"}
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")

RENEWAL = textwrap.dedent(
    """\
    journey: renewal_dates
    name: Renewal reminders on their days
    segments: [everyone]
    entry: {trigger: segment}
    sending_window: {days: everyday, hours: "09:00-18:00", time_zone: contact}
    steps:
      - id: wait_90
        wait_until_date: {date: renewal_date, offset: 90 days before, if_past: skip}
      - id: remind_90
        email: {template: renewal_reminder, subject: "Renewal in 90 days"}
      - id: wait_60
        wait_until_date: {date: renewal_date, offset: 60 days before, if_past: skip}
      - id: remind_60
        email: {template: renewal_reminder, subject: "Renewal in 60 days"}
      - id: wait_30
        wait_until_date: {date: renewal_date, offset: 30 days before, if_past: skip}
      - id: remind_30
        email: {template: renewal_reminder, subject: "Renewal in 30 days"}
    """
)


# ---------------------------------------------------------------------------- helpers


def deploy_text(db, text: str) -> None:
    journey = parse_journey(text, "j.yaml", segments=SEGMENTS, templates=TEMPLATES)
    with db.session() as s, s.begin():
        deploy(s, journey, text, "j.yaml")


def add_contact(
    db,
    email: str,
    *,
    renewal: date | None = None,
    zone: str | None = "Asia/Tokyo",
    account_attributes: dict[str, object] | None = None,
    attributes: dict[str, object] | None = None,
) -> None:
    with db.session() as s, s.begin():
        account = Account(
            external_id=email,
            name=f"Account of {email}",
            arr=Decimal(10_000),
            renewal_date=renewal,
            attributes=account_attributes or {},
        )
        s.add(account)
        s.flush()
        s.add(
            Contact(
                account_id=account.id,
                email=email,
                name=email.split("@")[0],
                time_zone=zone,
                attributes=attributes or {},
            )
        )


def run_until(engine: Engine, db, clock, end: datetime) -> None:
    """Tick, then move the clock to the next moment anything is due, until ``end``."""
    for _ in range(400):
        engine.tick()
        with db.session() as s:
            due = s.scalar(
                select(func.min(Enrollment.next_run_at)).where(Enrollment.finished_at.is_(None))
            )
        if due is None or due > end:
            clock.set(end)
            engine.tick()
            return
        clock.set(max(due, clock.now()))
    raise AssertionError("the journey never settled")


def sent(db) -> dict[str, list[tuple[str, datetime]]]:
    """Each address's sent messages: (step, sent at), in order."""
    found: dict[str, list[tuple[str, datetime]]] = {}
    with db.session() as s:
        rows = s.execute(
            select(Message.to_address, Message.step_id, Message.sent_at)
            .where(Message.status == MessageStatus.SENT)
            .order_by(Message.sent_at, Message.id)
        ).all()
    for to, step, at in rows:
        found.setdefault(to, []).append((step, at))
    return found


def enrollment_of(db, email: str) -> Enrollment:
    with db.session() as s:
        return s.scalars(select(Enrollment).join(Contact).where(Contact.email == email)).one()


def tokyo(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), TOKYO).astimezone(UTC)


# ---------------------------------------------------------------------------- end to end


def test_renewal_reminders_arrive_on_their_days_and_never_after_the_renewal(
    db, build_engine, clock, smtp_sink
):
    renewals = {f"d{n}@example.com": TODAY + timedelta(days=n) for n in (120, 80, 45, 20)}
    for email, renewal in renewals.items():
        add_contact(db, email, renewal=renewal)
    deploy_text(db, RENEWAL)
    engine = build_engine(transport=smtp_sink, segments=SEGMENTS, links={**LINKS, "renew": "x"})

    run_until(engine, db, clock, tokyo(TODAY + timedelta(days=130)))

    # By SMTP: who got which subject, on which local day, at the window's 09:00 opening.
    received: dict[str, list[tuple[str, date]]] = {}
    for mail in smtp_sink.parsed():
        local = parsedate_to_datetime(mail["Date"]).astimezone(TOKYO)
        assert local.time() == time(9, 0)
        received.setdefault(mail["To"].addresses[0].addr_spec, []).append(
            (str(mail["Subject"]), local.date())
        )

    def due(email: str, *days: int) -> list[tuple[str, date]]:
        return [(f"Renewal in {n} days", renewals[email] - timedelta(days=n)) for n in days]

    assert received == {
        "d120@example.com": due("d120@example.com", 90, 60, 30),
        "d80@example.com": due("d80@example.com", 60, 30),
        "d45@example.com": due("d45@example.com", 30),
    }
    for email, mails in received.items():
        assert all(day <= renewals[email] for _, day in mails)
    with db.session() as s:
        assert set(s.scalars(select(Enrollment.state))) == {EnrollmentState.COMPLETED}
        assert len(s.scalars(select(Message)).all()) == 6  # no row for a skipped reminder
    # The 20-day entrant skipped the 30-day reminder, and the context says why.
    late = enrollment_of(db, "d20@example.com")
    assert late.context["dates"]["wait_30"]["action"] == "skip"
    assert "had passed on arrival" in late.context["dates"]["wait_30"]["reason"]
    assert late.finished_at == START


def test_an_early_wake_does_not_cut_a_date_wait_short(db, build_engine, clock):
    add_contact(db, "early@example.com", renewal=TODAY + timedelta(days=100))
    deploy_text(db, RENEWAL)
    engine = build_engine(segments=SEGMENTS, links={**LINKS, "renew": "x"})
    engine.tick()
    target = tokyo(TODAY + timedelta(days=10))
    assert enrollment_of(db, "early@example.com").next_run_at == target
    clock.advance(timedelta(days=2))
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact)).one()
        # A custom event wakes active enrollments; the renewal date moving later does not
        # move a wait already worked out on arrival either.
        engine.record_event(s, kind=EventKind.CUSTOM, name="logged_in", contact_id=contact.id)
        s.scalars(select(Account)).one().renewal_date = TODAY + timedelta(days=200)
    assert enrollment_of(db, "early@example.com").next_run_at == clock.now()
    engine.tick()
    enrollment = enrollment_of(db, "early@example.com")
    assert (enrollment.current_step, enrollment.next_run_at) == ("wait_90", target)
    assert sent(db) == {}


INVITE = textwrap.dedent(
    """\
    journey: webinar
    name: Webinar
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: invite
        invite:
          event_name: Q1 webinar
          starts_at: 2026-12-10T16:00:00+09:00
          duration: 60 minutes
          template: webinar_invite
          subject: Join us
      - id: day_before
        wait_until_date: {date: invite.starts_at, offset: 1 day before, at: "10:00",
            if_past: exit}
      - id: said_yes
        branch:
          - when: answer('invite') == 'yes'
            goto: reminder
          - else: done
      - id: reminder
        email: {template: webinar_reminder, subject: Tomorrow}
      - id: done
        exit: completed
    """
)


def test_the_webinar_reminder_goes_a_day_before_starts_at_to_the_yes_sayers(
    db, build_engine, clock
):
    add_contact(db, "yes@example.com")
    add_contact(db, "no@example.com")
    add_contact(db, "quiet@example.com", zone="UTC")
    deploy_text(db, INVITE)
    engine = build_engine(segments=SEGMENTS)
    engine.tick()
    clock.advance(timedelta(hours=2))
    with db.session() as s, s.begin():
        for email, answer in (("yes@example.com", "yes"), ("no@example.com", "no")):
            contact = s.scalars(select(Contact).where(Contact.email == email)).one()
            enrollment = s.scalars(
                select(Enrollment).where(Enrollment.contact_id == contact.id)
            ).one()
            engine.record_event(
                s,
                kind=EventKind.RSVP,
                value=answer,
                contact_id=contact.id,
                enrollment_id=enrollment.id,
                step_id="invite",
            )
    run_until(engine, db, clock, datetime(2026, 12, 20, tzinfo=UTC))
    got = sent(db)
    assert got["yes@example.com"] == [("invite", START), ("reminder", tokyo(date(2026, 12, 9), 10))]
    assert got["no@example.com"] == [("invite", START)]
    # The same day before, at 10:00 in the contact's own zone: UTC here, and no reminder.
    quiet = enrollment_of(db, "quiet@example.com")
    assert quiet.context["dates"]["day_before"]["fire_at"] == "2026-12-09T10:00:00+00:00"
    assert got["quiet@example.com"] == [("invite", START)]


IF_PAST = textwrap.dedent(
    """\
    journey: if_past_{rule}
    name: A date that may have passed
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - id: wait_60
        wait_until_date: {{date: renewal_date, offset: 60 days before, at: "09:00",
            if_past: {rule}}}
      - id: remind_60
        email: {{template: renewal_reminder, subject: "Renewal in 60 days"}}
      - id: after
        email: {{template: onboarding_tips, subject: "Afterwards"}}
    """
)


@pytest.mark.parametrize("rule", ["skip", "now", "exit"])
def test_each_if_past_rule_decides_for_a_passed_or_missing_date(db, build_engine, clock, rule):
    add_contact(db, "passed@example.com", renewal=TODAY + timedelta(days=45))
    add_contact(db, "missing@example.com", renewal=None)
    add_contact(db, "ahead@example.com", renewal=TODAY + timedelta(days=80))
    deploy_text(db, IF_PAST.format(rule=rule))
    engine = build_engine(segments=SEGMENTS, links={**LINKS, "renew": "x"})
    engine.tick()
    got = sent(db)
    expected = {"skip": ["after"], "now": ["remind_60", "after"], "exit": []}[rule]
    for email in ("passed@example.com", "missing@example.com"):
        assert [step for step, _ in got.get(email, [])] == expected, email
        assert all(at == START for _, at in got.get(email, []))
    assert "ahead@example.com" not in got
    passed, missing = (
        enrollment_of(db, "passed@example.com"),
        enrollment_of(db, "missing@example.com"),
    )
    assert passed.context["dates"]["wait_60"]["action"] == rule
    assert passed.context["dates"]["wait_60"]["reason"] == (
        f"renewal_date: {TODAY + timedelta(days=45 - 60)} 09:00 Asia/Tokyo had passed on arrival"
    )
    assert missing.context["dates"]["wait_60"]["reason"] == "no date: renewal_date is empty"
    for enrollment in (passed, missing):
        assert enrollment.state == EnrollmentState.COMPLETED
        assert enrollment.exit_reason == (
            f"wait_60: {enrollment.context['dates']['wait_60']['reason']}"
            if rule == "exit"
            else "completed"
        )
    ahead = enrollment_of(db, "ahead@example.com")
    assert (ahead.state, ahead.next_run_at) == (
        EnrollmentState.ACTIVE,
        tokyo(TODAY + timedelta(days=20)),
    )


def test_on_the_fire_day_an_arrival_after_the_hour_goes_on_at_once(db, build_engine, clock):
    # START is 10:00 in Tokyo: after 09:00 on the day 60 days before this renewal.
    add_contact(db, "today@example.com", renewal=TODAY + timedelta(days=60))
    # In Los Angeles it is still the day before (17:00): the wait fires at 09:00 there.
    add_contact(
        db, "la@example.com", renewal=TODAY + timedelta(days=60), zone="America/Los_Angeles"
    )
    deploy_text(db, IF_PAST.format(rule="exit"))
    engine = build_engine(segments=SEGMENTS, links={**LINKS, "renew": "x"})
    engine.tick()
    got = sent(db)
    assert [step for step, _ in got["today@example.com"]] == ["remind_60", "after"]
    assert enrollment_of(db, "today@example.com").context["dates"]["wait_60"]["action"] == "go"
    la = datetime.combine(TODAY + timedelta(days=0), time(9), ZoneInfo("America/Los_Angeles"))
    assert enrollment_of(db, "la@example.com").next_run_at == la.astimezone(UTC)


AT_TEN = textwrap.dedent(
    """\
    journey: trial_end
    name: Trial ends
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: on_the_day
        wait_until_date: {date: contact.attributes.trial_ends, at: 10:00, if_past: now}
      - id: tips
        email: {template: onboarding_tips, subject: "Your trial ends today"}
    """
)


def test_at_is_the_local_time_in_each_contacts_zone(db, build_engine, clock):
    ends = {"trial_ends": "2026-12-01"}
    add_contact(db, "tokyo@example.com", zone="Asia/Tokyo", attributes=ends)
    add_contact(db, "utc@example.com", zone="UTC", attributes=ends)
    add_contact(db, "nowhere@example.com", zone=None, attributes=ends)  # unknown zone: UTC
    add_contact(db, "unset@example.com", attributes={"trial_ends": "soon"})
    deploy_text(db, AT_TEN)
    engine = build_engine(segments=SEGMENTS)
    run_until(engine, db, clock, datetime(2026, 12, 5, tzinfo=UTC))
    got = sent(db)
    assert got["tokyo@example.com"] == [("tips", datetime(2026, 12, 1, 1, 0, tzinfo=UTC))]
    assert got["utc@example.com"] == [("tips", datetime(2026, 12, 1, 10, 0, tzinfo=UTC))]
    assert got["nowhere@example.com"] == [("tips", datetime(2026, 12, 1, 10, 0, tzinfo=UTC))]
    assert got["unset@example.com"] == [("tips", START)]  # not a date: if_past now
    unset = enrollment_of(db, "unset@example.com")
    assert unset.context["dates"]["on_the_day"]["reason"] == (
        "no date: contact.attributes.trial_ends 'soon' is not a date"
    )


# ---------------------------------------------------------------------------- the rules, pure


def step(**fields: object) -> WaitUntilDateStep:
    values: dict[str, object] = {"date": "renewal_date", "if_past": "skip"} | fields
    return WaitUntilDateStep(**values)  # type: ignore[arg-type]


WINDOW = SendingWindow(days=(0, 1, 2, 3, 4), start=time(9, 30), end=time(18), time_zone="contact")
ARRIVAL = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo


@pytest.mark.parametrize(
    ("config", "value", "window", "zone", "expected"),
    [
        # A day ahead, at the window's opening in the contact's zone.
        (
            step(offset=timedelta(days=-60)),
            date(2027, 2, 1),
            WINDOW,
            "Asia/Tokyo",
            anchors.Arrival("wait", datetime(2026, 12, 3, 0, 30, tzinfo=UTC)),
        ),
        # No window: 09:00; a fixed window zone beats the contact's.
        (
            step(),
            "2026-12-01",
            None,
            "Asia/Tokyo",
            anchors.Arrival("wait", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
        ),
        (
            step(at=time(10)),
            date(2026, 12, 1),
            SendingWindow(time_zone="UTC"),
            "Asia/Tokyo",
            anchors.Arrival("wait", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ),
        # The fire day itself, after the hour: go on; the day before: passed.
        (
            step(at=time(9)),
            date(2026, 11, 24),
            None,
            "Asia/Tokyo",
            anchors.Arrival("go", datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
        ),
        (
            step(at=time(9), if_past="exit"),
            date(2026, 11, 23),
            None,
            "Asia/Tokyo",
            anchors.Arrival(
                "exit",
                datetime(2026, 11, 23, 0, 0, tzinfo=UTC),
                "renewal_date: 2026-11-23 09:00 Asia/Tokyo had passed on arrival",
            ),
        ),
        # An exact moment from a starts_at: no fire-day grace.
        (
            step(date="invite.starts_at", offset=timedelta(hours=-2), if_past="now"),
            datetime(2026, 11, 24, 11, 0, tzinfo=TOKYO),
            None,
            "UTC",
            anchors.Arrival(
                "now",
                datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
                "invite.starts_at: 2026-11-24 00:00 UTC had passed on arrival",
            ),
        ),
        (
            step(date="invite.starts_at", offset=timedelta(hours=-2)),
            datetime(2026, 11, 24, 16, 0, tzinfo=TOKYO),
            None,
            "UTC",
            anchors.Arrival("wait", datetime(2026, 11, 24, 5, 0, tzinfo=UTC)),
        ),
        # A datetime anchor in whole days: its day in the zone, at the time of day.
        (
            step(date="invite.starts_at", offset=timedelta(days=-1), at=time(10)),
            datetime(2026, 12, 10, 1, 0, tzinfo=UTC),  # 10 Dec in Tokyo, 9 Dec in LA
            None,
            "America/Los_Angeles",
            anchors.Arrival(
                "wait",
                datetime.combine(date(2026, 12, 8), time(10), ZoneInfo("America/Los_Angeles")),
            ),
        ),
        # No usable date.
        (
            step(),
            None,
            None,
            "UTC",
            anchors.Arrival("skip", None, "no date: renewal_date is empty"),
        ),
        (
            step(date="attributes.x"),
            "2026-13-01",
            None,
            "UTC",
            anchors.Arrival("skip", None, "no date: attributes.x '2026-13-01' is not a date"),
        ),
        (
            step(date="attributes.x", offset=timedelta(days=60)),
            "9999-12-30",
            None,
            "UTC",
            anchors.Arrival("skip", None, "no date: attributes.x '9999-12-30' is not a date"),
        ),
    ],
)
def test_when_a_date_wait_fires_and_what_a_late_arrival_does(config, value, window, zone, expected):
    assert anchors.on_arrival(config, value, ARRIVAL, window, zone) == expected


def test_an_iso_datetime_attribute_counts_by_its_day_in_the_zone():
    assert anchors.day_of("2026-12-01T20:00:00+00:00", "Asia/Tokyo") == date(2026, 12, 2)
    assert anchors.day_of("2026-12-01T20:00:00+00:00", "UTC") == date(2026, 12, 1)
    assert anchors.day_of(20261201, "UTC") is None


# ---------------------------------------------------------------------------- the language


BASE = textwrap.dedent(
    """\
    journey: j
    name: J
    segments: [everyone]
    entry: {{trigger: segment}}
    steps:
      - id: invite
        invite: {{event_name: W, starts_at: 2027-01-20T16:00:00+09:00,
            template: webinar_invite, subject: S}}
      - id: tips
        email: {{template: onboarding_tips, subject: T}}
      - id: wait
        wait_until_date: {block}
      - id: last
        email: {{template: onboarding_tips, subject: L}}
    """
)


def problems(block: str) -> list[str]:
    try:
        parse_journey(BASE.format(block=block), "j.yaml", segments=SEGMENTS, templates=TEMPLATES)
    except JourneyError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_valid_date_wait_is_read_into_its_config():
    journey = parse_journey(
        BASE.format(block="{date: renewal_date, offset: 60 days before, at: 10:00, if_past: skip}"),
        "j.yaml",
        segments=SEGMENTS,
        templates=TEMPLATES,
    )
    assert journey.step("wait").config == WaitUntilDateStep(
        "renewal_date", "skip", timedelta(days=-60), time(10)
    )
    for block, anchor in (
        ("{date: account.renewal_date, if_past: now}", "renewal_date"),
        ("{date: attributes.go_live, offset: 1 week after, if_past: now}", "attributes.go_live"),
        ("{date: contact.attributes.birthday, if_past: exit}", "contact.attributes.birthday"),
        ("{date: invite.starts_at, offset: 2 hours before, if_past: now}", "invite.starts_at"),
    ):
        assert problems(block) == [], block
        journey = parse_journey(
            BASE.format(block=block), "j.yaml", segments=SEGMENTS, templates=TEMPLATES
        )
        assert journey.step("wait").config.date == anchor  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "{date: renewal_date, if_past: skip, when: soon}",
            "j.yaml:12:58: unknown key 'when' in the wait_until_date of step 'wait'"
            " (allowed here: date, offset, at, if_past)",
        ),
        (
            "{date: arr, if_past: skip}",
            "j.yaml:12:29: 'arr' is not a date (date fields: renewal_date, contract_start,"
            " attributes.<name>, contact.attributes.<name>, <invite step>.starts_at)",
        ),
        ("{date: name, if_past: skip}", "j.yaml:12:29: 'name' is not a date (date fields:"),
        ("{date: renewal, if_past: skip}", "unknown date field 'renewal' (did you mean"),
        (
            "{date: invitation.starts_at, if_past: skip}",
            "j.yaml:12:29: no step 'invitation' (did you mean 'invite'?)",
        ),
        (
            "{date: tips.starts_at, if_past: skip}",
            "j.yaml:12:29: 'tips' is not an invite step: only an invite has a starts_at"
            " (invite steps before this one: invite)",
        ),
        ("{date: last.starts_at, if_past: skip}", "'last' runs later than step 'wait'"),
        ("{date: wait.starts_at, if_past: skip}", "step 'wait' waits for its own date"),
        ("{date: invite.ends_at, if_past: skip}", "step 'invite' has no date 'ends_at'"),
        (
            "{date: renewal_date, offset: 60 days, if_past: skip}",
            "j.yaml:12:51: bad offset: '60 days' is not an offset (write a duration and"
            " 'before' or 'after', e.g. '90 days before')",
        ),
        (
            "{date: renewal_date, offset: 36 hours before, if_past: skip}",
            "'36 hours before' is not a whole number of days: renewal_date is a date",
        ),
        (
            "{date: invite.starts_at, offset: 2 hours before, at: '10:00', if_past: skip}",
            "'at' does not go with the offset '2 hours before'",
        ),
        (
            "{date: renewal_date, at: '25:00', if_past: skip}",
            "j.yaml:12:47: bad at '25:00': not a time of day",
        ),
        ("{date: renewal_date, at: 600, if_past: skip}", "bad at 600: not a time of day"),
        ("{date: renewal_date, at: 9.30, if_past: skip}", "bad at 9.3: not a time of day"),
        (
            "{date: renewal_date}",
            "j.yaml:12:22: the wait_until_date of step 'wait' needs 'if_past': what to do when"
            " the date has passed on arrival (if_past: skip (skip the step after this one),"
            " now (go on at once) or exit)",
        ),
        (
            "{date: renewal_date, if_past: later}",
            "j.yaml:12:52: unknown if_past 'later' (one of: skip, now, exit)",
        ),
        ("{date: renewal_date, if_past: skp}", "unknown if_past 'skp' (did you mean 'skip'?)"),
        ("{if_past: skip}", "the wait_until_date of step 'wait' needs 'date'"),
        (
            "{date: 2027-01-08, if_past: skip}",
            "j.yaml:12:29: 'date' names a date field, not a fixed day (2027-01-08)",
        ),
        ("renewal_date", "'wait_until_date' in step 'wait' must be a mapping of options"),
    ],
)
def test_a_bad_date_wait_is_reported_where_it_stands(block, expected):
    found = problems(block)
    assert any(expected in p for p in found), found
    assert all(p.startswith("j.yaml:") for p in found)


def test_skip_needs_a_step_after_it_and_opens_a_path_past_an_exit():
    last = textwrap.dedent(
        """\
        journey: j
        name: J
        segments: [everyone]
        entry: {trigger: segment}
        steps:
          - id: tips
            email: {template: onboarding_tips, subject: T}
          - id: wait
            wait_until_date: {date: renewal_date, if_past: RULE}
        """
    )
    with pytest.raises(JourneyError) as caught:
        parse_journey(
            last.replace("RULE", "skip"), "j.yaml", segments=SEGMENTS, templates=TEMPLATES
        )
    assert [str(p) for p in caught.value.problems] == [
        "j.yaml:9:52: 'if_past: skip' skips the step after 'wait', but nothing follows it"
        " (put the message the date is for right after this step, or use now or exit)"
    ]
    parse_journey(last.replace("RULE", "now"), "j.yaml", segments=SEGMENTS, templates=TEMPLATES)
    # A passed date skips the exit, so the step after it can be reached; with now it cannot.
    past_exit = last + (
        "  - id: stop\n    exit: too_late\n"
        "  - id: late\n    email: {template: onboarding_tips, subject: L}\n"
    )
    parse_journey(
        past_exit.replace("RULE", "skip"), "j.yaml", segments=SEGMENTS, templates=TEMPLATES
    )
    with pytest.raises(JourneyError, match="step 'late' can never be reached"):
        parse_journey(
            past_exit.replace("RULE", "now"), "j.yaml", segments=SEGMENTS, templates=TEMPLATES
        )


VALID = textwrap.dedent(
    """\
    journey: fuzz_dates
    name: 更新
    segments: [everyone]
    entry: {trigger: segment}
    sending_window: {days: weekdays, hours: "09:00-18:00", time_zone: contact}
    steps:
      - id: invite
        invite: {event_name: W, starts_at: 2027-01-20T16:00:00+09:00,
            template: webinar_invite, subject: S}
      - id: wait_60
        wait_until_date:
          date: renewal_date
          offset: 60 days before
          at: "10:00"
          if_past: skip
      - id: remind
        email: {template: renewal_reminder, subject: R}
      - id: day_before
        wait_until_date: {date: invite.starts_at, offset: 1 day before, if_past: exit}
      - id: attr
        wait_until_date: {date: contact.attributes.go_live, offset: 2 weeks after, if_past: now}
      - id: tips
        email: {template: onboarding_tips, subject: T}
    """
)

TOKENS = [
    "date",
    "offset",
    "at",
    "if_past",
    "skip",
    "now",
    "exit",
    "renewal_date",
    "contract_start",
    "arr",
    "invite.starts_at",
    "remind.starts_at",
    "tips.starts_at",
    ".starts_at",
    "attributes.",
    "contact.attributes.x",
    "90 days before",
    "2 hours before",
    "before",
    "after",
    "10:00",
    '"24:00"',
    "99:99",
    "-",
    ":",
    "{",
    "}",
    "\n",
    "  ",
    "日",
    "前",
    "",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = VALID.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(9, len(lines) - 2))  # the steps with date waits and after
        line = lines[i]
        op = draw(st.sampled_from(["replace_word", "insert", "delete_line", "dup_line"]))
        if op == "replace_word" and line.split():
            words = line.split(" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(st.sampled_from(TOKENS))
            lines[i] = " ".join(words)
        elif op == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.sampled_from(TOKENS)) + line[at:]
        elif op == "delete_line":
            del lines[i]
        else:
            lines.insert(i, line)
    return "\n".join(lines)


def test_the_unmutated_date_journey_is_valid():
    journey = parse_journey(VALID, "fuzz.yaml", segments=SEGMENTS, templates=TEMPLATES)
    assert [s.id for s in journey.steps][:3] == ["invite", "wait_60", "remind"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_date_waits_give_a_journey_or_located_problems(text):
    try:
        journey = parse_journey(text, "fuzz.yaml", segments=SEGMENTS, templates=TEMPLATES)
    except JourneyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.col >= 1 and problem.message.strip()
            assert str(problem).startswith("fuzz.yaml:")
    else:
        for s in journey.steps:
            if isinstance(s.config, WaitUntilDateStep):
                assert s.config.if_past in ("skip", "now", "exit")
                assert s.config.offset % timedelta(days=1) == timedelta(0) or (
                    s.config.date.endswith(".starts_at") and s.config.at is None
                )


BLOCK_VALUES = st.one_of(
    st.sampled_from(TOKENS),
    st.sampled_from(["invite.starts_at", "60 days before", "1 day after", "2 hours after"]),
    st.none(),
    st.booleans(),
    st.integers(-1000, 100_000),
    st.dates(),
    st.text(max_size=12),
    st.lists(st.sampled_from(TOKENS), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["date", "offset", "at", "if_past", "when", "timeout"]),
        BLOCK_VALUES,
        max_size=5,
    ),
    st.sampled_from(["tips", "last"]),
)
def test_any_date_wait_block_gives_a_journey_or_located_problems(block, where):
    import yaml

    text = BASE.format(block=yaml.safe_dump(block, default_flow_style=True, width=10_000).strip())
    if where == "last":  # the date wait as the last step: skip has nothing to skip
        text = "\n".join(text.split("\n")[:12]) + "\n"
    try:
        journey = parse_journey(text, "j.yaml", segments=SEGMENTS, templates=TEMPLATES)
    except JourneyError as exc:
        assert all(str(p).startswith("j.yaml:") and p.line >= 1 for p in exc.problems)
    else:
        config = journey.step("wait").config
        assert isinstance(config, WaitUntilDateStep) and config.if_past in ("skip", "now", "exit")
        assert not (where == "last" and config.if_past == "skip")
