"""Each outgoing event type is emitted by its real path, in the transaction of the change:
a journey through the engine to the file outbox (entered, sent, task created, exited), the
tracking URLs through the app (opened, clicked, answered, unsubscribed: machine and human
apart), a task done, a bounce reported to the API. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from campaigns import config as settings
from campaigns.engine.deploy import deploy
from campaigns.engine.tasks import complete_task
from campaigns.journeys.parse import parse_journey
from campaigns.services import build
from campaigns.store.enums import EventKind, MessageStatus
from campaigns.store.models import (
    Account,
    Contact,
    Event,
    Message,
    OutboundEvent,
    Suppression,
    Task,
)
from campaigns.tracking.tokens import Tokens
from tests.hooks_kit import SECRET
from tests.kit import EVERYONE, TEST_BASE_URL, TEST_SECRET

ROOT = Path(__file__).resolve().parent.parent
KEY = "api-key-0123456789abcdef"
JOURNEY = textwrap.dedent(
    """\
    journey: welcome_hooks
    name: ようこそ
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email:
          template: onboarding_welcome
          subject: {en: "Welcome, {{ contact.name }}", ja: "{{ contact.name }}様、ようこそ"}
      - id: call
        task: {kind: call, title: "{{ contact.name }}様にお電話", due: 2 days, per: contact}
    """
)


@pytest.fixture
def cfg(tmp_path):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    return dataclasses.replace(
        settings.load({}),
        secret_key=TEST_SECRET,
        base_url=TEST_BASE_URL,
        redis_url=None,
        mail_url=f"file://{tmp_path / 'outbox'}",
        journeys_dir=journeys,
        templates_dir=ROOT / "templates",
        event_subscribers=(
            settings.Subscriber("all", "https://all.example/hooks", SECRET),
            settings.Subscriber("people", "https://crm.example/h", SECRET, machine=False),
        ),
    )


def events(db, subscriber: str = "all") -> list[OutboundEvent]:
    with db.session() as s:
        return list(
            s.scalars(
                select(OutboundEvent)
                .where(OutboundEvent.subscriber == subscriber)
                .order_by(OutboundEvent.id)
            )
        )


def of_type(db, type_: str, subscriber: str = "all") -> list[dict]:
    return [e.payload for e in events(db, subscriber) if e.type == type_]


def seed(db) -> None:
    with db.session() as s, s.begin():
        account = Account(external_id="ACME-JP", name="株式会社アクメ")
        s.add(account)
        s.flush()
        s.add(
            Contact(
                account_id=account.id,
                email="hanako@example.co.jp",
                name="山田 花子",
                locale="ja",
                time_zone="Asia/Tokyo",
            )
        )
        deploy(s, parse_journey(JOURNEY, "welcome_hooks.yaml"), JOURNEY, "welcome_hooks.yaml")


def run_journey(db, cfg, clock):
    services = build(cfg, clock, sessions=db.sessions)
    try:
        services.engine.tick()
    finally:
        services.close()


def test_a_journey_run_announces_entered_sent_task_created_and_exited(db, cfg, clock):
    seed(db)
    run_journey(db, cfg, clock)
    types = [e.type for e in events(db)]
    assert types == [
        "journey.entered",
        "message.sent",
        "task.created",
        "journey.exited",
    ]
    entered, sent, task, exited = (e.payload for e in events(db))
    for payload in (entered, sent, task, exited):
        assert payload["data"]["contact"] == {"email": "hanako@example.co.jp", "name": "山田 花子"}
        assert payload["data"]["account"] == {"external_id": "ACME-JP", "name": "株式会社アクメ"}
        assert payload["data"]["journey"] == "welcome_hooks"
    with db.session() as s:
        message = s.scalar(select(Message))
        assert message.status == MessageStatus.SENT
    assert sent["data"]["message"]["message_id"] == message.message_id
    assert sent["data"]["message"]["subject"] == "山田 花子様、ようこそ"
    assert sent["data"]["step"] == "hello"
    assert task["data"]["task"]["title"] == "山田 花子様にお電話"
    assert exited["data"]["state"] == "completed"
    # One id per event, the same for every subscriber that takes it.
    assert [e.uid for e in events(db, "people")] == [e.uid for e in events(db)]


def test_nothing_is_announced_without_subscribers(db, cfg, clock):
    seed(db)
    run_journey(db, dataclasses.replace(cfg, event_subscribers=()), clock)
    with db.session() as s:
        assert s.scalar(select(Message)).status == MessageStatus.SENT
        assert s.scalars(select(OutboundEvent)).all() == []


def test_a_dry_run_announces_nothing(db, cfg, clock):
    seed(db)
    services = build(cfg, clock, sessions=db.sessions, dry_run=True)
    services.engine.tick()
    services.close()
    with db.session() as s:
        assert s.scalars(select(OutboundEvent)).all() == []


def test_tracking_hits_announce_opens_clicks_answers_and_unsubscribes(db, cfg, clock, build_app):
    seed(db)
    run_journey(db, cfg, clock)
    app = build_app(event_subscribers=cfg.event_subscribers)
    client = app.test_client()
    with db.session() as s:
        message = s.scalar(select(Message))
    tokens = Tokens(TEST_SECRET, TEST_BASE_URL)

    def path(url: str) -> str:
        parts = urlsplit(url)
        return parts.path

    person = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15"}
    clock.advance(__import__("datetime").timedelta(minutes=5))
    assert client.get(path(tokens.open_url(message.id)), headers=person).status_code == 200
    clock.advance(__import__("datetime").timedelta(minutes=5))
    clicked = client.get(path(tokens.click_url(message.id, 0)), headers=person)
    assert clicked.status_code == 302
    scanner = {"User-Agent": "Barracuda Sentinel (EE)"}
    client.get(path(tokens.click_url(message.id, 0)), headers=scanner)
    with app.app_context():
        form = app.extensions["campaigns.tracking"].form_token(message.id, "answer")
    answered = client.post(path(tokens.answer_url(message.id, 9)), data={"csrf": form})
    assert answered.status_code == 200
    one_click = client.post(
        path(tokens.unsubscribe_url(message.id)), data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200

    [opened] = of_type(db, "message.opened")
    assert opened["data"]["message"]["message_id"] == message.message_id
    assert opened["data"]["contact"]["email"] == "hanako@example.co.jp"
    clicks = of_type(db, "message.clicked")
    assert {c["data"]["classification"] for c in clicks} >= {"human"}
    assert all(c["data"]["url"].startswith("http") for c in clicks)
    machine = [c for c in clicks if c["data"]["classification"] == "machine"]
    people_clicks = of_type(db, "message.clicked", "people")
    assert len(people_clicks) == len(clicks) - len(machine)  # machine=no leaves them out
    [answer] = of_type(db, "message.answered")
    assert (answer["data"]["kind"], answer["data"]["value"]) == ("answer", "9")
    [unsubscribed] = of_type(db, "contact.unsubscribed")
    assert unsubscribed["data"]["source"] == "one-click"


def test_a_task_done_and_a_bounce_report_are_announced(db, cfg, clock, build_app):
    seed(db)
    run_journey(db, cfg, clock)
    services = build(cfg, clock, sessions=db.sessions)
    with services.sessions() as s, s.begin():
        task_id = s.scalar(select(Task.id))
        complete_task(s, task_id, clock.now(), by="sato@example.com", outcome="話せました")
    services.close()
    [done] = of_type(db, "task.done")
    assert (
        done["data"]["task"]["outcome"] == "話せました" and done["data"]["by"] == "sato@example.com"
    )

    app = build_app(api_keys=(KEY,), event_subscribers=cfg.event_subscribers)
    with db.session() as s:
        message = s.scalar(select(Message))
    response = app.test_client().post(
        "/api/v1/webhooks/bounces",
        json={
            "type": "bounce",
            "email": "hanako@example.co.jp",
            "bounce_type": "hard",
            "message_id": message.message_id,
            "diagnostic": "550 5.1.1 user unknown",
        },
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 200, response.get_json()
    [bounced] = of_type(db, "message.bounced")
    assert bounced["data"]["hard"] is True
    assert bounced["data"]["message"]["message_id"] == message.message_id


def test_a_delivery_notice_is_recorded_and_announced_once(db, cfg, clock, build_app):
    seed(db)
    run_journey(db, cfg, clock)
    app = build_app(api_keys=(KEY,), event_subscribers=cfg.event_subscribers)
    with db.session() as s:
        message = s.scalar(select(Message))
    # An Amazon SES Delivery notification, raw (SES writes our Message-ID in commonHeaders).
    notice = {
        "notificationType": "Delivery",
        "mail": {"messageId": "0100018e-ses", "commonHeaders": {"messageId": message.message_id}},
        "delivery": {
            "timestamp": "2026-04-01T00:00:05.000Z",
            "recipients": [message.to_address],
            "smtpResponse": "250 2.0.0 OK",
        },
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    client = app.test_client()
    first = client.post("/api/v1/webhooks/bounces", json=notice, headers=headers)
    again = client.post("/api/v1/webhooks/bounces", json=notice, headers=headers)
    assert first.get_json() == {"processed": 1, "duplicates": 0, "ignored": 0}
    assert again.get_json() == {"processed": 0, "duplicates": 1, "ignored": 0}
    [delivered] = of_type(db, "message.delivered")
    assert delivered["data"]["message"]["message_id"] == message.message_id
    assert delivered["data"]["smtp_response"] == "250 2.0.0 OK"
    assert delivered["occurred_at"].startswith("2026-04-01T00:00:05")
    with db.session() as s:
        [event] = s.scalars(select(Event).where(Event.kind == EventKind.DELIVERED)).all()
        assert (event.message_id, event.reason) == (message.id, "delivered")
        assert s.get(Message, message.id).status == MessageStatus.SENT  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
    # The generic format says the same with type "delivery".
    generic = {"type": "delivery", "email": message.to_address, "message_id": "<other@x.example>"}
    response = client.post("/api/v1/webhooks/bounces", json=generic, headers=headers)
    assert response.get_json() == {"processed": 1, "duplicates": 0, "ignored": 0}
    bad = dict(generic, bounce_type="hard")
    assert client.post("/api/v1/webhooks/bounces", json=bad, headers=headers).status_code == 422


def test_archiving_a_journey_announces_its_running_enrollments_exited(db, cfg, clock):
    from campaigns.engine import lifecycle

    text = JOURNEY.replace("  - id: hello\n", "  - {id: rest, wait: 2 days}\n  - id: hello\n")
    assert "rest" in text
    with db.session() as s, s.begin():
        account = Account(external_id="ACME-JP", name="株式会社アクメ")
        s.add(account)
        s.flush()
        s.add(Contact(account_id=account.id, email="taro@example.co.jp", name="山田 太郎"))
        deploy(s, parse_journey(text, "welcome_hooks.yaml"), text, "welcome_hooks.yaml")
    run_journey(db, cfg, clock)  # entered, now waiting two days
    services = build(cfg, clock, sessions=db.sessions)
    with services.sessions() as s, s.begin():
        lifecycle.archive(s, "welcome_hooks", "cli:test", clock.now())
    services.close()
    [exited] = of_type(db, "journey.exited")
    assert exited["data"]["state"] == "exited"
    assert exited["data"]["contact"]["name"] == "山田 太郎"
    assert exited["data"]["journey"] == "welcome_hooks"


def test_unsubscribing_from_all_on_the_preference_page_is_announced(db, cfg, clock, build_app):
    seed(db)
    run_journey(db, cfg, clock)
    app = build_app(event_subscribers=cfg.event_subscribers)
    with db.session() as s:
        message = s.scalar(select(Message))
    with app.app_context():
        form = app.extensions["campaigns.tracking"].form_token(message.id, "prefs")
    url = Tokens(TEST_SECRET, TEST_BASE_URL).preferences_url(message.id)
    response = app.test_client().post(
        urlsplit(url).path, data={"csrf": form, "unsubscribe": "all", "pause": "0"}
    )
    assert response.status_code == 200
    [unsubscribed] = of_type(db, "contact.unsubscribed")
    assert unsubscribed["data"]["source"] == "preference page"
    assert unsubscribed["data"]["contact"]["email"] == "hanako@example.co.jp"
