"""``re_entry: after N days`` counts from the last entry (its ``entered_at``), for the segment,
event and date triggers alike: not at N-1 days, again at N+1 (a fake clock; real databases)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import EnrollmentState, EventKind
from campaigns.store.models import Account, Contact, Enrollment
from tests.kit import START

HEAD = "journey: j\nname: J\nsegments: [everyone]\n"
STEPS = "steps:\n  - {id: pause, wait: 1 day}\n"  # ends a day after entry: nothing running


def setup(db, text: str, **account) -> int:
    with db.session() as s, s.begin():
        row = Account(external_id="A", name="A", arr=Decimal(1), **account)
        s.add(row)
        s.flush()
        contact = Contact(account_id=row.id, email="a@example.com")
        s.add(contact)
        deploy(s, parse_journey(text, "j.yaml"), text, "j.yaml")
        s.flush()
        return contact.id


def entries(db) -> list[tuple[str, EnrollmentState]]:
    with db.session() as s:
        return list(
            s.execute(select(Enrollment.entry_key, Enrollment.state).order_by(Enrollment.id))
        )


def finish_first(engine, clock) -> None:
    """Day 0: enter; day 2: the one-day wait is over and the enrollment completes."""
    assert engine.tick().entered == {"j": 1}
    clock.advance(timedelta(days=2))
    assert engine.tick().entered == {"j": 0}


@pytest.mark.parametrize("days", [90, 10])
def test_segment_re_entry_after_n_days_counts_from_the_last_entry(db, build_engine, clock, days):
    setup(db, HEAD + f"entry: {{trigger: segment}}\nre_entry: after {days} days\n" + STEPS)
    engine = build_engine()
    finish_first(engine, clock)
    assert [state for _, state in entries(db)] == [EnrollmentState.COMPLETED]
    # Not at the old period boundaries (day 31 and 61 of 90 re-entered), nor at N - 1.
    for day in (31, 61, days - 1):
        if day < days:
            clock.set(START + timedelta(days=day))
            assert engine.tick().entered == {"j": 0}, day
    clock.set(START + timedelta(days=days + 1))
    assert engine.tick().entered == {"j": 1}
    # The next one counts from this second entry, not from the first.
    clock.set(START + timedelta(days=days + 1 + days - 1))
    assert engine.tick().entered == {"j": 0}
    clock.set(START + timedelta(days=2 * days + 2))
    assert engine.tick().entered == {"j": 1}
    assert len({key for key, _ in entries(db)}) == 3


def test_event_re_entry_after_n_days_takes_one_event_and_counts_from_the_last_entry(
    db, build_engine, clock
):
    contact_id = setup(
        db,
        HEAD + "entry: {trigger: event, event: usage_dropped}\nre_entry: after 30 days\n" + STEPS,
    )
    engine = build_engine()

    def dropped() -> None:
        with db.session() as s, s.begin():
            engine.record_event(
                s, kind=EventKind.CUSTOM, name="usage_dropped", contact_id=contact_id
            )

    dropped()
    dropped()  # two events in one pass: one entry
    finish_first(engine, clock)
    clock.set(START + timedelta(days=29))
    dropped()
    assert engine.tick().entered == {"j": 0}
    clock.set(START + timedelta(days=31))  # the day-29 event is still fresh (7 days' grace)
    assert engine.tick().entered == {"j": 1}
    assert len(entries(db)) == 2


def test_date_re_entry_after_n_days_counts_from_the_last_entry_not_the_date(
    db, build_engine, clock
):
    today = START.date()
    setup(
        db,
        HEAD
        + "entry: {trigger: date, field: renewal_date, offset: 10 days before}\n"
        + "re_entry: after 30 days\n"
        + STEPS,
        renewal_date=today + timedelta(days=5),
    )
    engine = build_engine()
    finish_first(engine, clock)
    # Renewed early: the next renewal date is already inside the offset, but the last entry
    # was 29 days ago.
    with db.session() as s, s.begin():
        s.execute(update(Account).values(renewal_date=today + timedelta(days=35)))
    clock.set(START + timedelta(days=29))
    assert engine.tick().entered == {"j": 0}
    clock.set(START + timedelta(days=31))
    assert engine.tick().entered == {"j": 1}
    assert [key for key, _ in entries(db)] == [
        f"date:{today + timedelta(days=5)}",
        f"date:{today + timedelta(days=35)}",
    ]
