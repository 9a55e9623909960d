"""Account journeys end to end: real database (SQLite and PostgreSQL), a real SMTP server on
loopback (aiosmtpd), a fake clock. An account enrols once whatever its number of contacts;
its emails address the contacts its recipients name, one message row each; its task is one
per account; any addressed contact's answer counts for it; an account event wakes its one
enrollment. A contact journey's task opens one open task per account and step."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.engine.deploy import deploy
from campaigns.engine.tasks import complete_task
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import EnrollmentState, EventKind
from campaigns.store.models import Account, Contact, Enrollment, Message, Task
from campaigns.tracking.events import record_event

RENEWAL = textwrap.dedent(
    """\
    journey: account_renewal
    name: Account renewal
    enrol: account
    recipients: [billing, executive]
    segments: [everyone]
    entry: {trigger: date, field: renewal_date, offset: 120 days before}
    goal: {event: renewed, within: 130 days}
    steps:
      - id: plan
        task:
          kind: meeting
          title: "Plan the renewal of {{ account.name }}"
          due: 7 days
      - id: notice
        email:
          template: renewal_reminder
          subject: {en: "Your renewal, {{ contact.name }}", ja: "{{ contact.name }}様 ご契約更新"}
      - id: ask
        recipients: all
        survey: {scale: nps, template: nps_survey, subject: "How likely are you to recommend us?"}
      - id: wait_answer
        wait_until: {answered: ask, timeout: 7 days}
      - id: route
        branch:
          - when: answered_all('ask')
            goto: everyone_answered
          - when: answered('ask')
            goto: someone_answered
          - else: nobody
      - id: everyone_answered
        exit: all_answered
      - id: someone_answered
        exit: some_answered
      - id: nobody
        exit: none_answered
    """
)

ROLES = ("admin", "billing", "executive", "user")


def populate(db, accounts: int = 2, today: date | None = None) -> list[int]:
    """``accounts`` accounts of 4 contacts each (one per role), renewing in 100 days."""
    today = today or date(2026, 11, 24)
    ids = []
    with db.session() as s:
        for n in range(accounts):
            account = Account(
                external_id=f"A{n}",
                name=f"Acme {n}",
                arr=Decimal(3_000_000),
                owner_email="csm@example.com",
                renewal_date=today + timedelta(days=100),
            )
            s.add(account)
            s.flush()
            ids.append(account.id)
            for k, role in enumerate(ROLES):
                s.add(
                    Contact(
                        account_id=account.id,
                        email=f"{role}{n}@acme{n}.example.com",
                        name=f"{role.title()} {n}",
                        role=role,
                        locale="ja" if k % 2 else "en",
                        time_zone="Asia/Tokyo",
                    )
                )
        s.commit()
    return ids


def deploy_text(db, text: str, path: str = "account_renewal.yaml") -> None:
    with db.session() as s:
        deploy(s, parse_journey(text, path), text, path)
        s.commit()


def run(engine, clock, days: int = 0) -> None:
    engine.tick()
    for _ in range(days):
        clock.advance(timedelta(days=1))
        engine.tick()


def test_an_account_with_four_contacts_gets_one_enrollment_one_task_and_mail_to_its_roles(
    db, smtp_sink, build_engine, clock
):
    populate(db, accounts=2)
    deploy_text(db, RENEWAL)
    engine = build_engine(transport=smtp_sink, clock=clock)
    run(engine, clock)
    run(engine, clock)  # a second tick enrols no one again
    with db.session() as s:
        enrollments = s.scalars(select(Enrollment)).all()
        assert len(enrollments) == 2
        assert all(e.contact_id is None and e.account_id for e in enrollments)
        tasks = s.scalars(select(Task)).all()
        titles = sorted(t.title for t in tasks)
        assert titles == ["Plan the renewal of Acme 0", "Plan the renewal of Acme 1"]
        assert all(t.contact_id is None for t in tasks)
        notices = s.scalars(select(Message).where(Message.step_id == "notice")).all()
        addressed = sorted(m.to_address for m in notices)
    assert addressed == sorted(
        f"{role}{n}@acme{n}.example.com" for n in range(2) for role in ("billing", "executive")
    )
    # over the wire: the two notices to the owner (one per account), 4 renewal notices, and
    # the survey to all 8 contacts; each recipient's subject is theirs
    arrived = smtp_sink.parsed()
    to_csm = [m for m in arrived if "csm@example.com" in str(m["To"])]
    assert len(to_csm) == 2
    subjects = sorted(str(m["Subject"]) for m in arrived if "billing0@" in m["To"])
    assert any("Billing 0" in subject for subject in subjects)
    surveys = [m for m in arrived if "recommend" in str(m["Subject"])]
    assert len(surveys) == 8
    assert len({m["Message-ID"] for m in arrived}) == len(arrived)


def test_any_answer_counts_for_the_account_and_all_needs_everyone(db, build_engine, clock):
    accounts = populate(db, accounts=2)
    deploy_text(db, RENEWAL)
    engine = build_engine(clock=clock)
    run(engine, clock)
    with db.session() as s:
        surveys = s.scalars(select(Message).where(Message.step_id == "ask")).all()
        by_account: dict[int, list[Message]] = {}
        for message in surveys:
            contact = s.get(Contact, message.contact_id)
            by_account.setdefault(contact.account_id, []).append(message)
        # the first account: one of its four answers; the second: all four
        answering = by_account[accounts[0]][:1] + by_account[accounts[1]]
        for message in answering:
            record_event(
                s,
                clock.now(),
                kind=EventKind.ANSWER,
                value="9",
                contact_id=message.contact_id,
                enrollment_id=message.enrollment_id,
                journey_id=message.journey_id,
                step_id="ask",
                message_id=message.id,
            )
        s.commit()
    run(engine, clock)
    with db.session() as s:
        reasons = {e.account_id: e.exit_reason for e in s.scalars(select(Enrollment))}
    assert reasons == {accounts[0]: "some_answered", accounts[1]: "all_answered"}


def test_an_account_event_wakes_its_one_enrollment_and_reaches_the_goal(db, build_engine, clock):
    accounts = populate(db, accounts=1)
    deploy_text(db, RENEWAL)
    engine = build_engine(clock=clock)
    run(engine, clock)
    with db.session() as s:
        (enrollment,) = s.scalars(select(Enrollment)).all()
        assert enrollment.state == EnrollmentState.WAITING
        record_event(s, clock.now(), kind=EventKind.CUSTOM, name="renewed", account_id=accounts[0])
        s.commit()
        s.refresh(enrollment)
        assert enrollment.next_run_at == clock.now()  # woken, not at its timeout
    run(engine, clock)
    with db.session() as s:
        (enrollment,) = s.scalars(select(Enrollment)).all()
        assert enrollment.state == EnrollmentState.GOAL


EVENT_ENTRY = textwrap.dedent(
    """\
    journey: usage_drop
    name: Usage dropped
    enrol: account
    segments: [everyone]
    entry: {trigger: event, event: usage_dropped}
    re_entry: always
    steps:
      - id: call
        task: {kind: call, title: "Usage dropped at {{ account.name }}", due: 2 days}
      - id: done
        exit: called
    """
)


def test_one_event_for_an_account_starts_one_enrollment_and_one_task(db, build_engine, clock):
    accounts = populate(db, accounts=1)
    deploy_text(db, EVENT_ENTRY, "usage_drop.yaml")
    with db.session() as s:
        record_event(
            s, clock.now(), kind=EventKind.CUSTOM, name="usage_dropped", account_id=accounts[0]
        )
        s.commit()
    engine = build_engine(clock=clock)
    run(engine, clock)
    run(engine, clock)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Enrollment)) == 1
        assert s.scalar(select(func.count()).select_from(Task)) == 1


CONTACT_TASK = textwrap.dedent(
    """\
    journey: usage_check
    name: Usage check
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: call
        task: {kind: call, title: "Check usage at {{ account.name }}", due: 2 days}
      - id: wait_call
        wait_until: {task_done: call, timeout: 10 days}
      - id: route
        branch:
          - when: task_done('call')
            goto: done
          - else: missed
      - id: done
        exit: called
      - id: missed
        exit: not_called
    """
)


def test_a_contact_journey_opens_one_task_per_account_and_step_and_all_its_contacts_see_it_done(
    db, build_engine, clock
):
    populate(db, accounts=2)
    deploy_text(db, CONTACT_TASK, "usage_check.yaml")
    engine = build_engine(clock=clock)
    run(engine, clock)
    with db.session() as s:
        tasks = s.scalars(select(Task).where(Task.step_id == "call")).all()
        assert len(tasks) == 2  # 8 contacts, 2 accounts
        assert s.scalar(select(func.count()).select_from(Enrollment)) == 8
        owner_mail = s.scalar(
            select(func.count()).select_from(Message).where(Message.attempt_key == "owner")
        )
        assert owner_mail == 2
        complete_task(s, tasks[0].id, clock.now(), by="csm@example.com")
        s.commit()
        done_account = tasks[0].account_id
    run(engine, clock)
    with db.session() as s:
        ended = {
            (s.get(Contact, e.contact_id).account_id, e.exit_reason)
            for e in s.scalars(select(Enrollment))
        }
        assert (done_account, "called") in ended
        assert not any(a == done_account and r != "called" for a, r in ended)
        # the closed task frees the key: a new one may open later
        assert s.get(Task, tasks[0].id).open_key is None


def test_per_contact_tasks_open_one_each(db, build_engine, clock):
    populate(db, accounts=1)
    text = textwrap.dedent(
        """\
        journey: write_each
        name: Write to each
        segments: [everyone]
        entry: {trigger: segment}
        steps:
          - id: each
            task: {kind: email, title: "Write to {{ contact.name }}", per: contact}
        """
    )
    deploy_text(db, text, "write_each.yaml")
    build_engine(clock=clock).tick()
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Task).where(Task.step_id == "each")) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("recipients: [billing, executive]", None),
        ("recipients: [billing, cfo]", "unknown role 'cfo'"),
        ("recipients: {roles: [billing], when: \"contact.locale == 'ja'\"}", None),
        ("recipients: {roles: [billing], when: \"opened('x')\"}", "cannot be used in a segment"),
        ("recipients: {rolez: [billing]}", "unknown key 'rolez'"),
        ("recipients: 12", "cannot be int 12"),
    ],
)
def test_recipients_are_checked_where_they_are_written(change, message):
    from campaigns.exceptions import JourneyError

    text = RENEWAL.replace("recipients: [billing, executive]", change)
    if message is None:
        parse_journey(text, "j.yaml")
        return
    with pytest.raises(JourneyError) as caught:
        parse_journey(text, "j.yaml")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("recipients"))
    assert any(p.line == line and message in p.message for p in caught.value.problems), str(
        caught.value
    )


# ---------------------------------------------------------------------------- hostile input

FUZZ_BASE = """\
journey: fuzz
name: ファズ
enrol: {enrol}
{top}
segments: [everyone]
entry: {{trigger: segment}}
steps:
  - id: notice
    {step}
    survey: {{scale: nps, template: nps_survey, subject: "Hi {{{{ contact.name }}}}"}}
  - id: route
    branch:
      - when: {condition}
        goto: call
      - else: done
  - id: call
    task: {{title: "{title}", per: {per}}}
  - id: done
    exit: completed
"""

FUZZ_VALUES = st.one_of(
    st.sampled_from(
        [
            "all",
            "primary",
            "[billing, executive]",
            "billing",
            "[billing, cfo]",
            "[]",
            "{roles: [admin], when: \"contact.locale == 'ja'\"}",
            "{roles: [admin], when: \"opened('notice')\"}",
            '{when: "contact.role =="}',
            "{who: all}",
            "12",
            "null",
            "account",
            "contact",
            "*a",
            "&a x",
            "[[billing]]",
            "{roles: {x: 1}}",
        ]
    ),
    st.text(alphabet="abc:[]{},'\" 日", max_size=12),
)
FUZZ_CONDITIONS = st.sampled_from(
    [
        "answered_share('notice') >= 0.5",
        "answered_all('notice')",
        "clicked_share('notice') > 0",
        "contact.role == 'billing'",
        "answered_share('notice'",
        "answered_share('later') > 0",
        "answered_all('notice', 2)",
        "health_score < 40",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    enrol=st.sampled_from(["account", "contact", "accounts", "[account]", "null"]),
    top=st.one_of(st.none(), FUZZ_VALUES),
    step=st.one_of(st.none(), FUZZ_VALUES),
    condition=FUZZ_CONDITIONS,
    title=st.sampled_from(["Call {{ account.name }}", "Call {{ contact.name }}", "{{ x"]),
    per=st.sampled_from(["account", "contact", "team", "[account]"]),
)
def test_account_journey_keys_give_a_journey_or_located_problems(
    enrol, top, step, condition, title, per
):
    from campaigns.exceptions import JourneyError

    text = FUZZ_BASE.format(
        enrol=enrol,
        top=f"recipients: {top}" if top is not None else "",
        step=f"recipients: {step}" if step is not None else "",
        condition=condition,
        title=title,
        per=per,
    )
    try:
        journey = parse_journey(text, "fuzz.yaml")
    except JourneyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert str(problem).startswith("fuzz.yaml:") and problem.line >= 1
            assert problem.col >= 1 and problem.message.strip()
    else:
        assert journey.per_account == (enrol == "account")
        if journey.per_account:
            # an account journey's conditions and task texts never read one contact
            assert "contact." not in condition and "contact." not in title
        for s in journey.steps:
            recipients = journey.recipients_of(s)
            assert recipients.pick in ("all", "primary", "roles")
            assert set(recipients.roles) <= set(ROLES) | {"champion", "technical"}


def test_the_fuzzed_account_journey_is_valid_when_unmutated():
    text = FUZZ_BASE.format(
        enrol="account",
        top="recipients: [billing, executive]",
        step="recipients: primary",
        condition="answered_share('notice') >= 0.5",
        title="Call {{ account.name }}",
        per="account",
    )
    journey = parse_journey(text, "fuzz.yaml")
    assert journey.per_account and journey.recipients.roles == ("billing", "executive")
    assert journey.recipients_of(journey.step("notice")).pick == "primary"


def test_the_report_counts_accounts_and_recipients_and_says_which(db, build_engine, clock):
    from campaigns.insight import report, stats

    populate(db, accounts=2)
    deploy_text(db, RENEWAL)
    deploy_text(db, CONTACT_TASK, "usage_check.yaml")
    run(build_engine(clock=clock), clock)
    with db.session() as s:
        stats.rollup(s, clock.now())
        s.commit()
        accounts = report.journey_report(s, "account_renewal")
        contacts = report.journey_report(s, "usage_check")
        listed = {item["journey"]: item["unit"] for item in report.overview(s)}
    assert (accounts.unit, accounts.entrants) == ("account", "accounts")
    assert accounts.totals.count("enrolled") == 2  # two accounts, eight contacts
    assert accounts.recipients == 8  # the survey reached all eight; the notice four of them
    assert accounts.totals.count("sent") == 4 + 8  # one message per recipient
    document = accounts.as_dict()
    assert document["counts"] == {"entered": 2, "entered_unit": "accounts", "recipients": 8}
    assert (contacts.unit, contacts.totals.count("enrolled"), contacts.recipients) == (
        "contact",
        8,
        0,
    )
    assert listed == {"account_renewal": "account", "usage_check": "contact"}
