"""Outgoing events, delivered: the outbox on the test database (SQLite and PostgreSQL), a
real HTTP receiver on loopback that checks every signature, retries after 500s and timeouts,
dead letters, and replay from the API and from the dashboard page (with its CSRF token)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from campaigns import config as settings
from campaigns.clock import FakeClock
from campaigns.config import Subscriber
from campaigns.engine.hooks import Deliverer, Settings, body_of, replay, sign, verify
from campaigns.exceptions import ConfigError
from campaigns.store.enums import AuditAction, OutboundStatus, OutboundType
from campaigns.store.models import Account, AuditEntry, Contact, OutboundEvent
from campaigns.store.outbox import Item, Outbox, attach, emit, emit_many
from campaigns.store.users import add_user
from tests.hooks_kit import OTHER_SECRET, SECRET, Receiver
from tests.kit import START

KEY = "api-key-0123456789abcdef"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def clock():
    return FakeClock(START)


def seeded(sessions) -> int:
    with sessions() as s, s.begin():
        account = Account(external_id="ACME-JP", name="株式会社アクメ")
        s.add(account)
        s.flush()
        contact = Contact(account_id=account.id, email="hanako@example.co.jp", name="山田 花子")
        s.add(contact)
        s.flush()
        return contact.id


def emit_some(sessions, contact_id: int, n: int) -> list[str]:
    with sessions() as s, s.begin():
        return emit_many(
            s,
            [
                Item(OutboundType.TASK_DONE, START, contact_id=contact_id, data={"n": i})
                for i in range(n)
            ],
        )


def rows(db) -> list[OutboundEvent]:
    with db.session() as s:
        return list(s.scalars(select(OutboundEvent).order_by(OutboundEvent.id)))


def deliverer(sessions, subscribers, clock, **options) -> Deliverer:
    return Deliverer(sessions, subscribers, clock, Settings(jitter=lambda: 1.0, **options))


# ---------------------------------------------------------------------------- signatures


def test_a_signature_verifies_only_with_its_secret_body_and_time():
    body = body_of({"id": "e1", "data": {"name": "山田 花子"}})
    header = sign(SECRET, body, 1_800_000_000)
    assert verify(SECRET, header, body, now=1_800_000_100)
    assert not verify(OTHER_SECRET, header, body, now=1_800_000_100)
    assert not verify(SECRET, header, body + b" ", now=1_800_000_100)
    assert not verify(SECRET, header, body, now=1_800_000_301)  # past the replay window
    assert verify(SECRET, header, body, now=1_800_000_301, window=600)
    rotated = f"{header},v1={sign(OTHER_SECRET, body, 1_800_000_000).split('v1=')[1]}"
    assert verify(OTHER_SECRET, rotated, body, now=1_800_000_000)
    for bad in (None, "", "t=x,v1=00", "v1=abc", "t=1800000000", "garbage,,=="):
        assert not verify(SECRET, bad, body, now=1_800_000_000)


def test_the_short_check_in_the_docs_agrees_with_verify():
    import time
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text("utf-8")
    code = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", doc, re.DOTALL)
    assert code and len([line for line in code.group(1).splitlines() if line.strip()]) <= 7
    scope: dict = {}
    exec(code.group(1), scope)  # the receiver's code, as printed
    body = body_of({"id": "e2", "type": "task.done", "data": {"name": "山田 花子"}})
    header = sign(SECRET, body, int(time.time()))
    assert scope["verify"](SECRET, header, body) and verify(SECRET, header, body)
    assert not scope["verify"](OTHER_SECRET, header, body)
    stale = sign(SECRET, body, int(time.time()) - 301)
    assert not scope["verify"](SECRET, stale, body) and not verify(SECRET, stale, body)


# ---------------------------------------------------------------------------- settings


def test_subscribers_parse_with_types_and_the_machine_filter():
    cfg = settings.load(
        {
            "EVENT_SUBSCRIBERS": f"crm=https://crm.example/hooks|secret={SECRET}|types=message.*,"
            f"task.done|machine=no ; bi=http://10.0.0.5:8080/in|secret={OTHER_SECRET}",
            "EVENT_MAX_ATTEMPTS": "3",
            "EVENT_TIMEOUT": "2",
        }
    )
    crm, bi = cfg.event_subscribers
    assert (crm.name, crm.url, crm.types, crm.machine) == (
        "crm",
        "https://crm.example/hooks",
        ("message.*", "task.done"),
        False,
    )
    assert crm.wants("message.opened") and crm.wants("task.done") and not crm.wants("task.created")
    assert bi.wants("journey.entered") and bi.machine
    assert (cfg.event_max_attempts, cfg.event_timeout) == (3, 2)
    assert SECRET not in repr(cfg)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EVENT_SUBSCRIBERS": "crm=ftp://x.example/|secret=" + SECRET}, "http:// or https://"),
        ({"EVENT_SUBSCRIBERS": "crm=https://x.example/"}, "no secret="),
        ({"EVENT_SUBSCRIBERS": "crm=https://x.example/|secret=short"}, "too short"),
        ({"EVENT_SUBSCRIBERS": f"CRM!=https://x.example/|secret={SECRET}"}, "subscriber name"),
        ({"EVENT_SUBSCRIBERS": f"a=https://x.example/|secret={SECRET}|types=mail.*"}, "unknown"),
        ({"EVENT_SUBSCRIBERS": f"a=https://x.example/|secret={SECRET}|colour=red"}, "option"),
        (
            {"EVENT_SUBSCRIBERS": f"a=https://x/|secret={SECRET} a=https://y/|secret={SECRET}"},
            "twice",
        ),
        ({"EVENT_SUBSCRIBERS": f"a=https://x.example/|secret={SECRET}|machine=maybe"}, "yes or"),
        ({"EVENT_MAX_ATTEMPTS": "0"}, "EVENT_MAX_ATTEMPTS"),
        ({"EVENT_TIMEOUT": "10 s"}, "EVENT_TIMEOUT"),
        ({"EVENT_BACKOFF_BASE": "600", "EVENT_BACKOFF_CAP": "60"}, "EVENT_BACKOFF_CAP"),
        ({"EVENT_REPLAY_WINDOW": "5"}, "EVENT_REPLAY_WINDOW"),
    ],
)
def test_bad_event_settings_are_one_line_naming_the_variable(env, says):
    with pytest.raises(ConfigError) as caught:
        settings.load(env)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize("command", [["-m", "campaigns", "events", "dead"], ["worker.py"]])
def test_the_cli_and_the_worker_refuse_bad_event_settings_in_one_line_with_exit_2(
    command, tmp_path, project_root, redis_url
):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REDIS_URL": redis_url,
        "EVENT_SUBSCRIBERS": "crm=https://crm.example/hooks|secret=tooshort",
    }
    result = subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EVENT_SUBSCRIBERS (crm) secret: too short" in lines[0]


# ---------------------------------------------------------------------------- emitting


def test_without_subscribers_emit_writes_nothing(db):
    contact_id = seeded(db.sessions)
    for sessions in (db.sessions, attach(db.sessions, Outbox(()))):
        with sessions() as s, s.begin():
            assert emit(s, OutboundType.TASK_DONE, START, {}, contact_id=contact_id) is None
            assert emit_many(s, [Item(OutboundType.TASK_DONE, START)]) == []
    assert rows(db) == []


def test_emit_writes_one_row_per_subscriber_that_wants_the_type_with_one_id(db):
    subs = [
        Subscriber("crm", "https://crm.example/h", SECRET, ("message.*",), machine=False),
        Subscriber("bi", "https://bi.example/h", OTHER_SECRET),
        Subscriber("tasks", "https://t.example/h", SECRET, ("task.*",)),
    ]
    sessions = attach(db.sessions, Outbox(subs))
    contact_id = seeded(sessions)
    with sessions() as s, s.begin():
        human = emit(s, OutboundType.MESSAGE_OPENED, START, {}, contact_id=contact_id)
        [machine] = emit_many(
            s, [Item(OutboundType.MESSAGE_OPENED, START, contact_id=contact_id, machine=True)]
        )
        done = emit(s, OutboundType.TASK_DONE, START, {"x": 1}, contact_id=contact_id)
    found = {(r.uid, r.subscriber) for r in rows(db)}
    assert found == {
        (human, "crm"),
        (human, "bi"),
        (machine, "bi"),  # crm takes no machine opens
        (done, "bi"),
        (done, "tasks"),
    }
    payload = next(r.payload for r in rows(db) if r.uid == human)
    assert payload["id"] == human and payload["type"] == "message.opened"
    assert payload["occurred_at"] == "2026-11-24T01:00:00Z"
    assert payload["data"]["contact"] == {"email": "hanako@example.co.jp", "name": "山田 花子"}
    assert payload["data"]["account"] == {"external_id": "ACME-JP", "name": "株式会社アクメ"}
    assert payload["data"]["classification"] == "human"
    assert all(r.status == OutboundStatus.PENDING and r.attempts == 0 for r in rows(db))


def test_an_event_rolls_back_with_the_change_that_made_it(db):
    sessions = attach(db.sessions, Outbox([Subscriber("bi", "https://bi.example/h", SECRET)]))
    contact_id = seeded(sessions)
    with sessions() as s:
        emit(s, OutboundType.TASK_DONE, START, {}, contact_id=contact_id)
        s.rollback()
    assert rows(db) == []


# ---------------------------------------------------------------------------- delivering


def test_events_arrive_signed_in_order_and_are_marked_delivered(db, receiver, clock):
    sub = receiver.subscriber()
    sessions = attach(db.sessions, Outbox([sub]))
    uids = emit_some(sessions, seeded(sessions), 5)
    result = deliverer(sessions, [sub], clock).run()
    assert (result.delivered, result.retried, result.dead) == (5, 0, 0)
    assert receiver.uids() == uids  # per subscriber, in the order of the events
    assert all(r.signed and r.type == "task.done" for r in receiver.received)
    assert receiver.received[0].body["data"]["contact"]["name"] == "山田 花子"
    assert all(
        r.status == OutboundStatus.DELIVERED and r.attempts == 1 and r.last_status == 200
        for r in rows(db)
    )
    assert deliverer(sessions, [sub], clock).run().claimed == 0  # nothing twice


def test_a_500_is_retried_with_backoff_and_later_events_wait_behind_it(db, receiver, clock):
    receiver.answer = lambda n: 500 if n < 2 else 204
    sub = receiver.subscriber()
    sessions = attach(db.sessions, Outbox([sub]))
    first, second = emit_some(sessions, seeded(sessions), 2)
    d = deliverer(sessions, [sub], clock, backoff_base=30, backoff_cap=3600)
    result = d.deliver()
    assert (result.retried, result.deferred, result.delivered) == (1, 1, 0)
    failed = next(r for r in rows(db) if r.uid == first)
    assert (failed.attempts, failed.last_status, failed.last_error) == (1, 500, "HTTP 500: ok")
    assert failed.next_attempt_at == START + timedelta(seconds=30)  # jitter 1.0: the full wait
    # The second event went back unposted: it may go now, the first only after its wait.
    assert d.deliver().retried == 1  # the second, posted and refused (the receiver's 2nd 500)
    assert d.deliver().claimed == 0
    clock.advance(timedelta(seconds=31))
    assert d.run().delivered == 2
    assert receiver.uids() == [first, second, first, second]
    assert all(r.status == OutboundStatus.DELIVERED for r in rows(db))
    assert [r.attempts for r in rows(db)] == [2, 2]


def test_a_receiver_slower_than_the_timeout_counts_as_a_failure_and_is_retried(db, receiver, clock):
    receiver.answer = lambda n: ("sleep", 2.5, 200) if n == 0 else 200
    sub = receiver.subscriber()
    sessions = attach(db.sessions, Outbox([sub]))
    [uid] = emit_some(sessions, seeded(sessions), 1)
    d = deliverer(sessions, [sub], clock, timeout=1, backoff_base=10)
    assert d.deliver().retried == 1
    [row] = rows(db)
    assert (row.status, row.last_status, row.last_error) == (
        "pending",
        None,
        "no answer within 1 s",
    )
    clock.advance(timedelta(seconds=11))
    assert d.deliver().delivered == 1
    assert receiver.uids() == [uid, uid]  # the same id: the receiver deduplicates on it


def test_a_refused_connection_and_a_redirect_are_failures(db, clock):
    dead_port = Subscriber("gone", "http://127.0.0.1:9/hooks", SECRET)
    sessions = attach(db.sessions, Outbox([dead_port]))
    emit_some(sessions, seeded(sessions), 1)
    assert deliverer(sessions, [dead_port], clock).deliver().retried == 1
    [row] = rows(db)
    assert row.last_status is None and row.last_error.startswith("connection failed")


def dead_letters(db, receiver, clock, n: int = 2):
    """``n`` events that end dead after 3 attempts of 500s; the receiver then says 200."""
    status = {"code": 500}
    receiver.answer = lambda _: status["code"]
    sub = receiver.subscriber()
    sessions = attach(db.sessions, Outbox([sub]))
    uids = emit_some(sessions, seeded(sessions), n)
    d = deliverer(sessions, [sub], clock, max_attempts=3, backoff_base=5, backoff_cap=5)
    for _ in range(3 * n + 2):
        d.run()
        clock.advance(timedelta(seconds=6))
    assert {r.status for r in rows(db)} == {OutboundStatus.DEAD}
    assert all(r.attempts == 3 and r.last_status == 500 for r in rows(db))
    status["code"] = 200
    return d, uids


def test_retries_end_in_dead_letters_and_a_replay_delivers_them(db, receiver, clock):
    d, uids = dead_letters(db, receiver, clock)
    assert d.run().claimed == 0  # the dead are not tried again by themselves
    with db.session() as s, s.begin():
        assert replay(s, clock.now(), ids=[rows(db)[0].id]) == 1
    assert d.run().delivered == 1
    with db.session() as s, s.begin():
        assert replay(s, clock.now()) == 1
    assert d.run().delivered == 1
    assert {r.status for r in rows(db)} == {OutboundStatus.DELIVERED}
    assert set(receiver.uids()) == set(uids)


def test_dead_letters_are_listed_and_replayed_through_the_api(db, receiver, clock, build_app):
    d, uids = dead_letters(db, receiver, clock)
    app = build_app(api_keys=(KEY,), event_subscribers=(receiver.subscriber(),))
    client = app.test_client()
    auth = {"Authorization": f"Bearer {KEY}"}
    listed = client.get("/api/v1/events/outgoing?status=dead", headers=auth).get_json()
    assert {e["event_id"] for e in listed["events"]} == set(uids)
    assert listed["counts"]["crm"]["dead"] == 2
    assert listed["events"][0]["last_error"] == "HTTP 500: ok"
    first = listed["events"][0]["id"]
    for bad in ({}, {"ids": "1"}, {"ids": [1], "all": True}, {"all": "yes"}, {"nope": 1}, []):
        response = client.post("/api/v1/events/outgoing/replay", json=bad, headers=auth)
        assert response.status_code == 400, bad
    assert client.get("/api/v1/events/outgoing?status=lost", headers=auth).status_code == 400
    answer = client.post("/api/v1/events/outgoing/replay", json={"ids": [first]}, headers=auth)
    assert answer.get_json() == {"replayed": 1}
    assert client.post(
        "/api/v1/events/outgoing/replay", json={"all": True}, headers=auth
    ).get_json() == {"replayed": 1}
    assert d.run().delivered == 2
    assert set(receiver.uids()) == set(uids)
    with db.session() as s:
        actions = list(
            s.scalars(select(AuditEntry.action).where(AuditEntry.target_kind == "events"))
        )
    assert actions == [AuditAction.REPLAY, AuditAction.REPLAY]


def test_dead_letters_show_on_the_page_and_its_replay_button_needs_the_csrf_token(
    db, receiver, clock, build_app
):
    d, uids = dead_letters(db, receiver, clock, n=1)
    app = build_app(event_subscribers=(receiver.subscriber(),))
    with db.session() as s, s.begin():
        add_user(s, "admin@example.com", "correct horse battery", START, role="admin")
        add_user(s, "viewer@example.com", "correct horse battery", START, role="viewer")
    client = signed_in(app, "admin@example.com")
    page = client.get("/integrations/events").get_data(as_text=True)
    assert 'data-subscriber="crm"' in page and uids[0] in page and "HTTP 500: ok" in page
    assert ">Events</a>" in client.get("/journeys").get_data(as_text=True)  # in the nav
    row_id = str(rows(db)[0].id)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    refused = client.post("/integrations/events/replay", data={"id": row_id})
    assert refused.status_code in (400, 403)
    assert rows(db)[0].status == OutboundStatus.DEAD
    done = client.post("/integrations/events/replay", data={"id": row_id, "csrf": csrf})
    assert done.status_code == 302
    assert rows(db)[0].status == OutboundStatus.PENDING
    assert d.run().delivered == 1
    assert "No dead events." in client.get("/integrations/events").get_data(as_text=True)
    viewer = signed_in(app, "viewer@example.com")
    assert viewer.get("/integrations/events").status_code == 403
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1


def signed_in(app, email: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"csrf": csrf, "email": email, "password": "correct horse battery"}
    )
    assert response.status_code == 302
    return client


def test_subscribers_are_served_side_by_side_and_a_slow_one_holds_up_no_other(db, clock):
    fast, slow = Receiver().start(), Receiver(secret=OTHER_SECRET).start()
    slow.answer = lambda n: ("sleep", 1.5, 200)
    try:
        subs = [fast.subscriber("fast"), slow.subscriber("slow")]
        sessions = attach(db.sessions, Outbox(subs))
        emit_some(sessions, seeded(sessions), 2)
        result = deliverer(sessions, subs, clock, timeout=1).deliver()
        assert result.delivered == 2 and result.retried == 1 and result.deferred == 1
        assert len(fast.received) == 2 and len(slow.received) == 1
    finally:
        fast.stop()
        slow.stop()


def test_replay_window_and_payload_reach_the_receiver_unchanged(db, receiver, clock):
    sub = dataclasses.replace(receiver.subscriber(), types=("task.*",))
    sessions = attach(db.sessions, Outbox([sub]))
    [uid] = emit_some(sessions, seeded(sessions), 1)
    deliverer(sessions, [sub], clock).run()
    [got] = receiver.received
    assert got.signed and got.uid == uid and got.body == rows(db)[0].payload


def test_the_worker_schedules_delivery_only_when_there_are_subscribers():
    from campaigns.worker import cron, jobs

    class Scheduler:
        def __init__(self):
            self.jobs = []

        def register(self, func, **options):
            self.jobs.append((func, options["interval"]))

    bare = settings.load({})
    with_one = dataclasses.replace(bare, event_subscribers=(Subscriber("a", "https://a/", SECRET),))
    without, with_subscribers = Scheduler(), Scheduler()
    cron.schedule(without, bare)
    cron.schedule(with_subscribers, with_one)
    assert jobs.deliver_events not in [f for f, _ in without.jobs]
    assert (jobs.deliver_events, 5) in with_subscribers.jobs
