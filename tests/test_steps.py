"""Every step type executes: in_app, update, webhook (signed, retried), exit rules, wait_until
on an answer, with real HTTP on loopback and a real database."""

from __future__ import annotations

import hashlib
import hmac
import json
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campaigns.clock import FakeClock
from campaigns.engine.core import Engine
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.store.enums import EnrollmentState, EventKind, MessageStatus
from campaigns.store.models import Account, Contact, Enrollment, InAppMessage, Message

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = parse_segments("tiers:\n  everyone: {when: true}\n")
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
SECRET = "steps-secret-0123456789"


class Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict, str]] = []
    statuses: list[int] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            Hook.received.append((json.loads(body), self.headers["X-Campaigns-Signature"]))
            Hook.raw = body
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def hook_server():
    Hook.received, Hook.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def setup(db, text: str) -> None:
    with db.session() as s, s.begin():
        account = Account(
            external_id="ACME",
            name="株式会社アクメ",
            arr=Decimal(1),
            health_score=30,
            owner_email="csm@example.com",
        )
        s.add(account)
        s.flush()
        s.add(
            Contact(
                account_id=account.id,
                email="taro@example.com",
                name="山田 太郎",
                locale="ja",
                tags=["trial"],
            )
        )
        deploy(s, parse_journey(text, "j.yaml"), text, "j.yaml")


def engine_for(build_engine, sink, clock) -> Engine:
    return build_engine(
        transport=sink, clock=clock, secret=SECRET, settings={"webhook_secret": SECRET}
    )


def test_in_app_update_and_a_signed_webhook_run_in_order(db, smtp_sink, hook_server, build_engine):
    setup(
        db,
        textwrap.dedent(
            f"""\
            journey: nudge
            name: Nudge
            segments: [everyone]
            entry: {{trigger: segment}}
            steps:
              - id: tip
                in_app: {{title: {{en: Try reports, ja: レポートをお試しください}},
                    body: "{{{{ account.name }}}}様へ", url: "https://app.example.com/r",
                    expires: 14 days}}
              - id: mark
                update: {{set: {{attributes.nudged: "yes",
                    contact.attributes.last: "{{{{ journey.key }}}}", health_score: 45}},
                    add_tags: [nudged], remove_tags: [trial]}}
              - id: tell_crm
                webhook: {{url: "{hook_server}",
                    payload: {{account: "{{{{ account.external_id }}}}", score: 5}}}}
            """
        ),
    )
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    Hook.statuses = [503]  # the first POST fails: retried after the backoff
    engine.tick()
    assert Hook.received == []
    clock.advance(timedelta(minutes=1))
    engine.tick()
    with db.session() as s:
        item = s.scalars(select(InAppMessage)).one()
        assert (item.title, item.body, item.expires_at) == (
            "レポートをお試しください",
            "株式会社アクメ様へ",
            START + timedelta(days=14),
        )
        contact = s.scalars(select(Contact)).one()
        assert contact.tags == ["nudged"] and contact.attributes == {"last": "nudge"}
        account = s.scalars(select(Account)).one()
        assert account.attributes == {"nudged": "yes"} and account.health_score == 45
        hook = s.scalars(select(Message).where(Message.channel == "webhook")).one()
        assert hook.status == MessageStatus.SENT and hook.tries == 2
        assert s.scalars(select(Enrollment.state)).one() == EnrollmentState.COMPLETED
    [(document, signature)] = Hook.received
    assert document["data"] == {"account": "ACME", "score": 5} and document["journey"] == "nudge"
    stamp, mac = (part.split("=", 1)[1] for part in signature.split(","))
    assert hmac.compare_digest(
        mac, hmac.new(SECRET.encode(), f"{stamp}.".encode() + Hook.raw, hashlib.sha256).hexdigest()
    )


def test_wait_until_answered_wakes_on_the_answer_and_branches_on_its_value(
    db, smtp_sink, build_engine
):
    setup(
        db,
        textwrap.dedent(
            """\
            journey: nps
            name: NPS
            segments: [everyone]
            entry: {trigger: segment}
            exit_when:
              - event: churned
            steps:
              - id: ask
                survey: {scale: nps, template: nps_survey, subject: {en: Q, ja: 質問}}
              - id: wait
                wait_until: {answered: ask, timeout: 7 days}
              - id: route
                branch:
                  - when: answer('ask') is not none and answer('ask') <= 6
                    goto: call
                  - else: done
              - id: call
                task: {title: "Call {{ contact.name }}: {{ answer('ask') }}"}
              - id: done
                exit: done
            """
        ),
    )
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    engine.tick()
    with db.session() as s:
        enrollment = s.scalars(select(Enrollment)).one()
        assert (
            enrollment.state == EnrollmentState.WAITING
            and enrollment.next_run_at == START + timedelta(days=7)
        )
    clock.advance(timedelta(hours=5))
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact)).one()
        engine.record_event(
            s,
            kind=EventKind.ANSWER,
            contact_id=contact.id,
            enrollment_id=enrollment.id,
            step_id="ask",
            value="3",
        )
    engine.tick()
    with db.session() as s:
        from campaigns.store.models import Task

        task = s.scalars(select(Task)).one()
        assert task.title == "Call 山田 太郎: 3" and task.owner_email == "csm@example.com"
        assert s.scalars(select(Enrollment.state)).one() == EnrollmentState.COMPLETED


def test_an_exit_event_ends_a_waiting_enrollment(db, smtp_sink, build_engine):
    setup(
        db,
        textwrap.dedent(
            """\
            journey: slow
            name: Slow
            segments: [everyone]
            entry: {trigger: segment}
            exit_when:
              - event: churned
            steps:
              - {id: pause, wait: 30 days}
              - {id: hello, email: {template: onboarding_tips, subject: Hi}}
            """
        ),
    )
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    engine.tick()
    with db.session() as s, s.begin():
        account = s.scalars(select(Account)).one()
        engine.record_event(s, kind=EventKind.CUSTOM, name="churned", account_id=account.id)
    engine.tick()
    clock.advance(timedelta(days=31))
    engine.tick()
    assert smtp_sink.messages == []
    with db.session() as s:
        enrollment = s.scalars(select(Enrollment)).one()
        assert (enrollment.state, enrollment.exit_reason) == (
            EnrollmentState.EXITED,
            "event: churned",
        )


def add_people(db, n: int, **account_fields) -> None:
    with db.session() as s, s.begin():
        for i in range(n):
            account = Account(
                external_id=f"E{i}",
                name=f"E{i}",
                arr=Decimal(1),
                **{k: (v(i) if callable(v) else v) for k, v in account_fields.items()},
            )
            s.add(account)
            s.flush()
            s.add(Contact(account_id=account.id, email=f"e{i}@example.com"))


def deploy_text(db, text: str) -> None:
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "j.yaml"), text, "j.yaml")


HEAD = "journey: j\nname: J\nsegments: [everyone]\n"
STEPS = "steps:\n  - {id: hi, email: {template: onboarding_tips, subject: Hi}}\n"


def test_an_event_entry_enrols_whoever_posted_the_event_once(db, smtp_sink, build_engine):
    add_people(db, 3)
    deploy_text(db, HEAD + "entry: {trigger: event, event: usage_dropped}\n" + STEPS)
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    assert engine.tick().entered == {"j": 0}
    with db.session() as s, s.begin():
        contact = s.scalars(select(Contact).where(Contact.email == "e1@example.com")).one()
        engine.record_event(s, kind=EventKind.CUSTOM, name="usage_dropped", contact_id=contact.id)
        engine.record_event(s, kind=EventKind.CUSTOM, name="usage_dropped", contact_id=contact.id)
    assert engine.tick().entered == {"j": 1}
    assert engine.tick().entered == {"j": 0}
    assert [tos for _, tos, _ in smtp_sink.messages] == [["e1@example.com"]]


def test_a_date_entry_takes_renewals_inside_the_offset_and_not_beyond(db, smtp_sink, build_engine):
    today = START.date()
    add_people(db, 4, renewal_date=lambda i: today + timedelta(days=[10, 90, 91, -1][i]))
    deploy_text(
        db,
        HEAD
        + "entry: {trigger: date, field: renewal_date, offset: 90 days before}\nre_entry: always\n"
        + STEPS,
    )
    engine = engine_for(build_engine, smtp_sink, FakeClock(START))
    assert engine.tick().entered == {"j": 2}
    with db.session() as s:
        keys = set(s.scalars(select(Enrollment.entry_key)))
    assert keys == {f"date:{today + timedelta(days=10)}", f"date:{today + timedelta(days=90)}"}


def test_a_holdout_share_stays_enrolled_sent_nothing_until_its_window_ends(
    db, smtp_sink, build_engine
):
    add_people(db, 200)
    deploy_text(db, HEAD + "entry: {trigger: segment}\nholdout: 20%\n" + STEPS)
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    engine.tick()
    with db.session() as s:
        held = s.scalars(select(Enrollment).where(Enrollment.holdout.is_(True))).all()
    assert 20 <= len(held) <= 60  # a stable 20% of ids, give or take
    # No goal, so no `within`: held for the default window (30 days), sent nothing.
    assert {(e.state, e.next_run_at, e.finished_at) for e in held} == {
        (EnrollmentState.ACTIVE, START + timedelta(days=30), None)
    }
    assert len(smtp_sink.messages) == 200 - len(held)
    clock.advance(timedelta(days=29))
    engine.tick()
    with db.session() as s:
        assert s.scalar(
            select(func.count()).where(
                Enrollment.holdout.is_(True), Enrollment.finished_at.is_(None)
            )
        ) == len(held)
    clock.advance(timedelta(days=1))
    engine.tick()
    with db.session() as s:
        ends = set(
            s.execute(
                select(Enrollment.state, Enrollment.exit_reason).where(Enrollment.holdout.is_(True))
            )
        )
    assert ends == {(EnrollmentState.COMPLETED, "holdout: goal window ended")}
    assert len(smtp_sink.messages) == 200 - len(held)


@pytest.mark.parametrize("shared", [False, True])
def test_a_domain_rate_limit_holds_sends_until_the_next_window(
    db, smtp_sink, shared, request, build_engine
):
    import uuid

    from campaigns.config import parse_limits
    from campaigns.engine.ratelimit import DomainRateLimiter

    add_people(db, 5)
    deploy_text(db, HEAD + "entry: {trigger: segment}\n" + STEPS)
    redis = request.getfixturevalue("redis_conn") if shared else None
    domain = f"{uuid.uuid4().hex[:8]}.example"  # a fresh domain: the Redis counters are shared
    with db.session() as s, s.begin():
        for contact in s.scalars(select(Contact)):
            contact.email = contact.email.replace("example.com", domain)
    clock = FakeClock(START)
    engine = engine_for(build_engine, smtp_sink, clock)
    engine.rate_limiter = DomainRateLimiter(parse_limits(f"{domain}=2/60s"), redis)
    engine.tick()
    assert len(smtp_sink.messages) == 2
    clock.advance(timedelta(seconds=61))
    engine.tick()
    assert len(smtp_sink.messages) == 4
    clock.advance(timedelta(seconds=60))
    engine.tick()
    assert len(smtp_sink.messages) == 5
    with db.session() as s:
        assert set(s.scalars(select(Message.status))) == {MessageStatus.SENT}


def test_rate_limit_settings_are_checked():
    from campaigns.config import Limit, parse_limits
    from campaigns.exceptions import ConfigError

    assert parse_limits("gmail.com=600/60s, *=3000/60") == {
        "gmail.com": Limit(600, 60),
        "*": Limit(3000, 60),
    }
    for bad in ("gmail.com", "gmail.com=fast", "x=1/0s", "=1/1s"):
        with pytest.raises(ConfigError, match="DOMAIN_RATE_LIMITS"):
            parse_limits(bad)
