"""The product API (``/api/v1``): events, in-app messages, contacts with their answers, the
bounce webhook (generic and Amazon SES through SNS), API keys on every route, garbage in
never a 500, and an OpenAPI document that lists every route. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask, url_for
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns import defaults
from campaigns.clock import FakeClock
from campaigns.store.enums import Classification, EnrollmentState, EventKind, MessageStatus
from campaigns.store.models import (
    Account,
    Contact,
    Enrollment,
    Event,
    InAppMessage,
    Journey,
    JourneyVersion,
    Message,
    Suppression,
)
from campaigns.web import (  # noqa: F401 (their routes)
    api,
    api_accounts,
    api_base,
    api_crm,
    api_events,
    api_in_app,
    api_people,
    roles,
)

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
MESSAGE_ID = "<20260401.welcome.1@example.co.jp>"


def _blueprint_rules() -> list[Any]:
    """The API's routes, read from the blueprint itself: a new endpoint is tested without
    anyone adding it to a list."""
    app = Flask(__name__)
    app.register_blueprint(api_base.bp)  # with the routes of api and api_crm, both imported
    OPEN.update(
        endpoint
        for endpoint, view in app.view_functions.items()
        if roles.marked(view) == roles.PUBLIC
    )
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")), key=lambda r: r.rule
    )


OPEN: set[str] = set()
"""The endpoints open without a key (marked public: the OpenAPI document)."""


RULES = _blueprint_rules()
SAMPLE_ARGS = {
    "email": "taro@example.co.jp",
    "in_app_id": 1,
    "journey": "onboarding",
    "task_id": 1,
    "external_id": "ACME-1",
}
PRIVATE = [r for r in RULES if r.endpoint not in OPEN]


def _method(rule: Any) -> str:
    return next(m for m in sorted(rule.methods) if m not in ("HEAD", "OPTIONS"))


def _url(app: Flask, rule: Any, **args: Any) -> str:
    with app.test_request_context():
        return url_for(rule.endpoint, **{**{k: SAMPLE_ARGS[k] for k in rule.arguments}, **args})


def _openapi_path(rule: Any) -> str:
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def app(build_app: Any) -> Flask:
    # The default BASE_URL: the OpenAPI document names it as the server.
    return build_app(base_url=defaults.BASE_URL, api_keys=(KEY,))


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@dataclasses.dataclass
class World:
    account: int
    taro: int
    hanako: int
    journey: int
    version: int
    waiting: int
    message: int


@pytest.fixture
def world(db: Any) -> World:
    """Two accounts: 山田太郎 at ACME (waiting in a journey, sent one email), and 佐藤花子
    elsewhere."""
    with db.session() as s, s.begin():
        acme = Account(external_id="ACME-1", name="株式会社アクメ")
        other = Account(external_id="OTHER-1", name="その他商事")
        s.add_all([acme, other])
        s.flush()
        taro = Contact(
            account_id=acme.id,
            email="taro@example.co.jp",
            name="山田太郎",
            locale="ja",
            time_zone="Asia/Tokyo",
            tags=["管理者"],
            attributes={"部署": "営業"},
        )
        hanako = Contact(
            account_id=other.id, email="Hanako@Example.co.jp", name="佐藤花子", locale="ja"
        )
        journey = Journey(key="onboarding", name="オンボーディング")
        s.add_all([taro, hanako, journey])
        s.flush()
        version = JourneyVersion(
            journey_id=journey.id,
            number=1,
            source_path="journeys/onboarding.yaml",
            source_text="x",
            source_hash="h",
            definition={},
        )
        s.add(version)
        s.flush()
        waiting = Enrollment(
            journey_id=journey.id,
            journey_version_id=version.id,
            contact_id=taro.id,
            state=EnrollmentState.WAITING,
            current_step="wait_login",
            next_run_at=NOW + timedelta(days=3),
        )
        s.add(waiting)
        s.flush()
        message = Message(
            enrollment_id=waiting.id,
            contact_id=taro.id,
            journey_id=journey.id,
            step_id="welcome",
            message_id=MESSAGE_ID,
            status=MessageStatus.SENT,
            to_address="taro@example.co.jp",
            subject="ようこそ",
        )
        s.add(message)
        s.flush()
        return World(acme.id, taro.id, hanako.id, journey.id, version.id, waiting.id, message.id)


def stored(db: Any) -> tuple[int, ...]:
    """Everything a request could have written."""
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Event)) or 0,
            s.scalar(select(func.count()).select_from(Suppression)) or 0,
            s.scalar(
                select(func.count())
                .select_from(InAppMessage)
                .where(InAppMessage.seen_at.is_not(None) | InAppMessage.clicked_at.is_not(None))
            )
            or 0,
            s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status == MessageStatus.BOUNCED)
            )
            or 0,
            s.scalar(select(func.count()).select_from(Contact).where(Contact.subscribed.is_(False)))
            or 0,
            s.scalar(
                select(func.count()).select_from(Enrollment).where(Enrollment.next_run_at <= NOW)
            )
            or 0,
        )


def events(db: Any, kind: str | None = None) -> list[Event]:
    with db.session() as s:
        query = select(Event).order_by(Event.id)
        return list(s.scalars(query.where(Event.kind == kind) if kind else query))


def error_of(response: Any, code: int) -> dict[str, Any]:
    """The one JSON error shape every refusal has."""
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert (
        set(body) == {"error"}
        and body["error"]["code"] == code
        and isinstance(body["error"]["message"], str)
    ), body
    return dict(body["error"])


# ---------------------------------------------------------------------------- POST /events


def test_a_posted_event_keeps_its_japanese_properties_and_wakes_the_waiting_enrollment(
    client, db, world
):
    body = {
        "name": "usage_dropped",
        "contact": {"email": "taro@example.co.jp"},
        "properties": {"画面": "ダッシュボード", "利用率": 0.4, "メモ": "先週から半減"},
    }
    response = client.post("/api/v1/events", json=body, headers=AUTH)
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"accepted": 1, "duplicates": 0}
    [event] = events(db)
    assert (event.kind, event.name, event.contact_id, event.account_id) == (
        EventKind.CUSTOM,
        "usage_dropped",
        world.taro,
        world.account,
    )
    assert (
        event.data == body["properties"] and event.occurred_at == NOW and event.recorded_at == NOW
    )
    with db.session() as s:
        enrollment = s.get(Enrollment, world.waiting)
        assert (
            enrollment is not None
            and enrollment.next_run_at == NOW
            and enrollment.state == EnrollmentState.WAITING
        )


def test_a_batch_names_contacts_in_any_case_or_accounts_and_keeps_occurred_at(client, db, world):
    batch = {
        "events": [
            {
                "name": "login",
                "contact": {"email": "HANAKO@example.CO.JP"},
                "occurred_at": "2026-03-31T18:00:00+09:00",
            },
            {
                "name": "renewed",
                "account": {"external_id": "ACME-1"},
                "properties": {"プラン": "エンタープライズ"},
            },
            {
                "name": "seat.added",
                "contact": {"email": "taro@example.co.jp"},
                "account": {"external_id": "ACME-1"},
            },
        ]
    }
    response = client.post("/api/v1/events", json=batch, headers=AUTH)
    assert response.status_code == 202 and response.get_json() == {"accepted": 3, "duplicates": 0}
    login, renewed, seat = events(db)
    assert (login.contact_id, login.occurred_at) == (
        world.hanako,
        datetime(2026, 3, 31, 9, 0, tzinfo=UTC),
    )
    assert (renewed.contact_id, renewed.account_id, renewed.data) == (
        None,
        world.account,
        {"プラン": "エンタープライズ"},
    )
    assert (seat.contact_id, seat.account_id) == (world.taro, world.account)


def test_an_event_id_is_an_idempotency_key_so_a_retried_request_stores_nothing_twice(
    client, db, world
):
    event = {"id": "evt-0001", "name": "renewed", "account": {"external_id": "ACME-1"}}
    assert client.post("/api/v1/events", json=event, headers=AUTH).get_json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post("/api/v1/events", json=event, headers=AUTH).get_json() == {
        "accepted": 0,
        "duplicates": 1,
    }
    again = {"events": [event, {**event, "id": "evt-0002"}, {**event, "id": "evt-0002"}]}
    assert client.post("/api/v1/events", json=again, headers=AUTH).get_json() == {
        "accepted": 1,
        "duplicates": 2,
    }
    assert sorted(e.dedupe_key or "" for e in events(db)) == ["api:evt-0001", "api:evt-0002"]


def test_an_idempotency_key_stored_by_a_concurrent_request_is_a_duplicate_not_a_500(
    client, db, world, monkeypatch
):
    """Two copies racing: both find the key free, one commits first; the other's insert hits the
    unique key, and its retry finds the key taken."""
    assert (
        client.post(
            "/api/v1/events",
            json={"id": "race", "name": "login", "contact": {"email": "taro@example.co.jp"}},
            headers=AUTH,
        ).status_code
        == 202
    )
    real, calls = api._existing_keys, []

    def blind_once(session, keys):
        calls.append(keys)
        return set() if len(calls) == 1 else real(session, keys)

    monkeypatch.setattr(api, "_existing_keys", blind_once)
    response = client.post(
        "/api/v1/events",
        json={
            "events": [{"id": "race", "name": "login", "contact": {"email": "taro@example.co.jp"}}]
        },
        headers=AUTH,
    )
    assert response.status_code == 202 and response.get_json() == {"accepted": 0, "duplicates": 1}
    assert len(calls) == 2 and len(events(db)) == 1


def test_one_bad_event_rejects_the_whole_request_and_every_problem_is_listed(client, db, world):
    batch = {
        "events": [
            {"name": "login", "contact": {"email": "taro@example.co.jp"}},
            {"name": "login", "contact": {"email": "nobody@example.co.jp"}},
            {"name": "ログイン", "account": {"external_id": "NOPE"}},
            {
                "name": "login",
                "contact": {"email": "taro@example.co.jp"},
                "account": {"external_id": "OTHER-1"},
            },
            {
                "name": "login",
                "contact": {"email": "taro@example.co.jp"},
                "occurred_at": "2026-04-03T00:00:00Z",
                "colour": "red",
            },
            {"name": "login"},
            {"name": 7, "contact": "taro@example.co.jp", "properties": [], "id": ""},
        ]
    }
    before = stored(db)
    error = error_of(client.post("/api/v1/events", json=batch, headers=AUTH), 422)
    assert error["message"].startswith("6 of 7 events invalid; nothing was stored")
    fields = {(p["index"], p["field"]) for p in error["items"]}
    assert fields >= {
        (1, "events[1].contact.email"),
        (2, "events[2].name"),
        (2, "events[2].account.external_id"),
        (3, "events[3].account.external_id"),
        (4, "events[4].occurred_at"),
        (4, "events[4].colour"),
        (5, "events[5]"),
        (6, "events[6].name"),
        (6, "events[6].contact"),
        (6, "events[6].properties"),
        (6, "events[6].id"),
    }
    assert all(p["index"] != 0 for p in error["items"])
    assert stored(db) == before


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"name": "x" * 129, "contact": {"email": "taro@example.co.jp"}},
            "name",
            "longer than 128",
        ),
        (
            {
                "name": "login",
                "contact": {"email": "taro@example.co.jp"},
                "occurred_at": "2026-04-01T09:00:00",
            },
            "occurred_at",
            "no UTC offset",
        ),
        (
            {"name": "login", "contact": {"email": "taro@example.co.jp"}, "occurred_at": "昨日"},
            "occurred_at",
            "ISO 8601",
        ),
        (
            {
                "name": "login",
                "contact": {"email": "taro@example.co.jp"},
                "properties": {"メモ": "あ" * 6000},
            },
            "properties",
            "16384 bytes",
        ),
        (
            {"name": "login", "contact": {"email": "taro@example.co.jp"}, "id": "k" * 101},
            "id",
            "longer than 100",
        ),
        ({"name": "login", "contact": {"email": "taro"}}, "contact.email", "not an email address"),
        (
            {"name": "login", "contact": {"email": "taro@example.co.jp", "name": "太郎"}},
            "contact.name",
            "unknown field",
        ),
    ],
)
def test_a_single_bad_event_is_a_422_naming_its_field(client, db, world, body, field, words):
    error = error_of(client.post("/api/v1/events", json=body, headers=AUTH), 422)
    assert [(p["index"], p["field"]) for p in error["items"]] == [(0, field)] and words in error[
        "items"
    ][0]["message"]
    assert events(db) == []


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"", 400, "empty body"),
        (b"{name: login}", 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b"[]", 400, "expected an event object"),
        (b'{"events": {}}', 400, "events: expected an array"),
        (b'{"events": []}', 400, "send 1 to 1000"),
        (b'{"events": [], "name": "x"}', 400, "name: unknown field"),
        (
            b'{"name": "login", "contact": {"email": "taro@example.co.jp"}, "properties": {"n": '
            b"NaN}}",
            400,
            "NaN",
        ),
        (
            b'{"name": "login", "contact": {"email": "taro@example.co.jp"}, "properties": {"n": '
            b"1e999}}",
            400,
            "out of range",
        ),
        (
            b'{"name": "login", "contact": {"email": "taro@example.co.jp"}, "properties": {"n": '
            b'"a\\u0000b"}}',
            400,
            "properties.n: contains a NUL",
        ),
        (
            b'{"name": "login", "contact": {"email": "taro@example.co.jp"}, "properties": {"n": '
            b'"\\ud800"}}',
            400,
            "unpaired surrogate",
        ),
        (
            b'{"name": "login", "properties": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
            400,
            "nested deeper than 32",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper"),
    ],
)
def test_a_malformed_body_is_a_400_that_says_what_is_wrong(client, db, world, raw, code, words):
    error = error_of(
        client.post("/api/v1/events", data=raw, content_type="application/json", headers=AUTH), code
    )
    assert words in error["message"]
    assert events(db) == []


def test_too_many_events_or_too_many_bytes_are_refused(client, db, world):
    one = {"name": "login", "contact": {"email": "taro@example.co.jp"}}
    assert (
        "send 1 to 1000"
        in error_of(
            client.post("/api/v1/events", json={"events": [one] * 1001}, headers=AUTH), 400
        )["message"]
    )
    big = {"events": [{**one, "properties": {"メモ": "あ" * 5000}} for _ in range(100)]}
    assert (
        "larger than 1048576 bytes"
        in error_of(client.post("/api/v1/events", json=big, headers=AUTH), 413)["message"]
    )
    assert client.post(
        "/api/v1/events", json={"events": [one] * 1000}, headers=AUTH
    ).get_json() == {"accepted": 1000, "duplicates": 0}


# ---------------------------------------------------------------------------- in-app messages


@pytest.fixture
def in_app(db: Any, world: World) -> dict[str, int]:
    with db.session() as s, s.begin():
        rows = {
            "old": InAppMessage(
                contact_id=world.taro,
                journey_id=world.journey,
                enrollment_id=world.waiting,
                step_id="tip_old",
                title="使い方のヒント",
                body="ダッシュボードを開いてみましょう",
                created_at=NOW - timedelta(hours=3),
            ),
            "seen": InAppMessage(
                contact_id=world.taro,
                title="既読",
                body="見ました",
                created_at=NOW - timedelta(hours=2),
                seen_at=NOW - timedelta(hours=1),
            ),
            "new": InAppMessage(
                contact_id=world.taro,
                journey_id=world.journey,
                enrollment_id=world.waiting,
                step_id="tip_new",
                title="新機能のお知らせ",
                body="レポートが速くなりました",
                url="https://example.co.jp/新機能",
                created_at=NOW - timedelta(hours=1),
                expires_at=NOW + timedelta(days=1),
            ),
            "expired": InAppMessage(
                contact_id=world.taro,
                title="期限切れ",
                body="もう古い",
                created_at=NOW - timedelta(days=9),
                expires_at=NOW - timedelta(minutes=1),
            ),
            "hanako": InAppMessage(
                contact_id=world.hanako, title="花子さんへ", body="こんにちは", created_at=NOW
            ),
        }
        s.add_all(rows.values())
        s.flush()
        return {name: row.id for name, row in rows.items()}


def test_in_app_lists_the_unseen_unexpired_messages_newest_first_and_all_adds_the_seen(
    client, in_app
):
    response = client.get("/api/v1/contacts/Taro@Example.co.jp/in-app", headers=AUTH)
    assert response.status_code == 200
    items = response.get_json()
    assert [i["id"] for i in items] == [in_app["new"], in_app["old"]]
    assert items[0] == {
        "id": in_app["new"],
        "title": "新機能のお知らせ",
        "body": "レポートが速くなりました",
        "url": "https://example.co.jp/新機能",
        "created_at": (NOW - timedelta(hours=1)).isoformat(),
        "expires_at": (NOW + timedelta(days=1)).isoformat(),
        "seen_at": None,
        "clicked_at": None,
    }
    everything = client.get(
        "/api/v1/contacts/taro@example.co.jp/in-app?all=1", headers=AUTH
    ).get_json()
    assert [i["id"] for i in everything] == [in_app["new"], in_app["seen"], in_app["old"]]
    assert (
        "all: expected 1 or 0"
        in error_of(
            client.get("/api/v1/contacts/taro@example.co.jp/in-app?all=maybe", headers=AUTH), 400
        )["message"]
    )
    assert (
        "no contact"
        in error_of(client.get("/api/v1/contacts/nobody@example.co.jp/in-app", headers=AUTH), 404)[
            "message"
        ]
    )


def test_seen_and_clicked_keep_the_first_time_and_record_one_event_each(
    client, db, clock, world, in_app
):
    seen = client.post(f"/api/v1/in-app/{in_app['old']}/seen", headers=AUTH)
    assert (
        seen.status_code == 200
        and seen.get_json()["seen_at"] == NOW.isoformat()
        and seen.get_json()["clicked_at"] is None
    )
    clock.advance(timedelta(minutes=5))
    assert (
        client.post(f"/api/v1/in-app/{in_app['old']}/seen", json={}, headers=AUTH).get_json()[
            "seen_at"
        ]
        == NOW.isoformat()
    )
    clicked = client.post(f"/api/v1/in-app/{in_app['new']}/clicked", headers=AUTH).get_json()
    assert clicked["seen_at"] == clicked["clicked_at"] == clock.now().isoformat()
    clock.advance(timedelta(minutes=5))
    again = client.post(f"/api/v1/in-app/{in_app['new']}/clicked", headers=AUTH).get_json()
    assert again["clicked_at"] == clicked["clicked_at"]
    recorded = [
        (e.name, e.contact_id, e.journey_id, e.enrollment_id, e.step_id, e.data) for e in events(db)
    ]
    assert recorded == [
        (
            "in_app_seen",
            world.taro,
            world.journey,
            world.waiting,
            "tip_old",
            {"in_app_id": in_app["old"]},
        ),
        (
            "in_app_seen",
            world.taro,
            world.journey,
            world.waiting,
            "tip_new",
            {"in_app_id": in_app["new"]},
        ),
        (
            "in_app_clicked",
            world.taro,
            world.journey,
            world.waiting,
            "tip_new",
            {"in_app_id": in_app["new"]},
        ),
    ]
    assert all(e.kind == EventKind.CUSTOM for e in events(db))
    assert [
        i["id"]
        for i in client.get("/api/v1/contacts/taro@example.co.jp/in-app", headers=AUTH).get_json()
    ] == []


def test_acknowledging_an_unknown_message_is_a_404_and_a_body_with_fields_a_400(client, db, in_app):
    assert (
        "no in-app message 999999"
        in error_of(client.post("/api/v1/in-app/999999/seen", headers=AUTH), 404)["message"]
    )
    assert (
        client.post("/api/v1/in-app/99999999999999999999/clicked", headers=AUTH).status_code == 404
    )
    error_of(
        client.post(f"/api/v1/in-app/{in_app['old']}/seen", json={"seen": True}, headers=AUTH), 400
    )
    assert events(db) == []


# ---------------------------------------------------------------------------- GET /contacts/<email>


def test_a_contact_shows_their_profile_account_and_latest_answers_but_no_machine_hits(
    client, db, world
):
    with db.session() as s, s.begin():
        for day in range(55):
            s.add(
                Event(
                    kind=EventKind.ANSWER,
                    contact_id=world.taro,
                    journey_id=world.journey,
                    step_id="nps",
                    value=str(day % 11),
                    occurred_at=NOW - timedelta(days=60 - day),
                )
            )
        s.add(
            Event(
                kind=EventKind.RSVP,
                contact_id=world.taro,
                step_id="webinar",
                value="yes",
                occurred_at=NOW - timedelta(hours=2),
            )
        )
        s.add(
            Event(
                kind=EventKind.ANSWER,
                contact_id=world.taro,
                journey_id=world.journey,
                step_id="nps",
                value="0",
                classification=Classification.MACHINE,
                occurred_at=NOW,
            )
        )
        s.add(Event(kind=EventKind.CLICK, contact_id=world.taro, occurred_at=NOW))
    response = client.get("/api/v1/contacts/TARO@example.co.jp", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    answers = body.pop("answers")
    assert body == {
        "email": "taro@example.co.jp",
        "name": "山田太郎",
        "locale": "ja",
        "time_zone": "Asia/Tokyo",
        "subscribed": True,
        "tags": ["管理者"],
        "attributes": {"部署": "営業"},
        "account": {"external_id": "ACME-1", "name": "株式会社アクメ"},
    }
    assert len(answers) == 50
    assert answers[0] == {
        "kind": "rsvp",
        "step_id": "webinar",
        "journey": None,
        "value": "yes",
        "occurred_at": (NOW - timedelta(hours=2)).isoformat(),
    }
    assert answers[1] == {
        "kind": "answer",
        "step_id": "nps",
        "journey": "onboarding",
        "value": "10",
        "occurred_at": (NOW - timedelta(days=6)).isoformat(),
    }
    assert (
        client.get("/api/v1/contacts/hanako@example.co.jp", headers=AUTH).get_json()["name"]
        == "佐藤花子"
    )
    error_of(client.get("/api/v1/contacts/nobody@example.co.jp", headers=AUTH), 404)
    error_of(client.get("/api/v1/contacts/not-an-address", headers=AUTH), 400)


# ---------------------------------------------------------------------------- POST
# /webhooks/bounces


def suppression(db: Any, email: str) -> Suppression | None:
    with db.session() as s:
        return s.scalars(select(Suppression).where(Suppression.email == email)).one_or_none()


def message_status(db: Any, world: World) -> str:
    with db.session() as s:
        message = s.get(Message, world.message)
        assert message is not None
        return message.status


def test_a_hard_bounce_suppresses_the_address_marks_the_message_and_records_the_event_once(
    client, db, world
):
    notice = {
        "type": "bounce",
        "email": "Taro@Example.co.jp",
        "message_id": MESSAGE_ID.strip("<>"),
        "bounce_type": "hard",
        "diagnostic": "550 5.1.1 ユーザーが存在しません",
    }
    response = client.post("/api/v1/webhooks/bounces", json=notice, headers=AUTH)
    assert response.status_code == 200 and response.get_json() == {
        "processed": 1,
        "duplicates": 0,
        "ignored": 0,
    }
    row = suppression(db, "taro@example.co.jp")
    assert row is not None and (row.reason, row.source) == (
        "hard_bounce",
        "webhook: 550 5.1.1 ユーザーが存在しません",
    )
    assert message_status(db, world) == MessageStatus.BOUNCED
    [event] = events(db)
    assert (
        event.kind,
        event.contact_id,
        event.message_id,
        event.journey_id,
        event.step_id,
        event.classification,
        event.reason,
    ) == (
        EventKind.BOUNCE,
        world.taro,
        world.message,
        world.journey,
        "welcome",
        Classification.UNKNOWN,
        "hard bounce",
    )
    assert client.post("/api/v1/webhooks/bounces", json=[notice], headers=AUTH).get_json() == {
        "processed": 0,
        "duplicates": 1,
        "ignored": 0,
    }
    without_id = {k: v for k, v in notice.items() if k != "message_id"}
    assert client.post("/api/v1/webhooks/bounces", json=without_id, headers=AUTH).get_json() == {
        "processed": 0,
        "duplicates": 1,
        "ignored": 0,
    }
    assert len(events(db)) == 1 and stored(db)[1] == 1


def test_a_soft_bounce_only_records_the_event(client, db, world):
    notice = {
        "type": "bounce",
        "email": "taro@example.co.jp",
        "message_id": MESSAGE_ID,
        "bounce_type": "soft",
        "diagnostic": "452 4.2.2 mailbox full",
    }
    assert client.post("/api/v1/webhooks/bounces", json=notice, headers=AUTH).status_code == 200
    assert (
        suppression(db, "taro@example.co.jp") is None
        and message_status(db, world) == MessageStatus.SENT
    )
    [event] = events(db)
    assert (event.kind, event.classification, event.reason, event.message_id) == (
        EventKind.BOUNCE,
        Classification.UNKNOWN,
        "soft bounce",
        world.message,
    )


def test_a_complaint_suppresses_and_unsubscribes_the_contact(client, db, world):
    response = client.post(
        "/api/v1/webhooks/bounces",
        json=[
            {"type": "complaint", "email": "hanako@example.co.jp"},
            {"type": "complaint", "email": "stranger@example.org"},
        ],
        headers=AUTH,
    )
    assert response.get_json() == {"processed": 2, "duplicates": 0, "ignored": 0}
    with db.session() as s:
        hanako = s.get(Contact, world.hanako)
        assert hanako is not None and hanako.subscribed is False
    assert suppression(db, "hanako@example.co.jp").reason == "complaint"  # type: ignore[union-attr]
    assert suppression(db, "stranger@example.org") is not None
    assert [(e.kind, e.contact_id) for e in events(db)] == [
        (EventKind.COMPLAINT, world.hanako),
        (EventKind.COMPLAINT, None),
    ]


def ses_bounce(
    email: str, bounce_type: str = "Permanent", feedback_id: str = "0100018e-bounce-0001"
) -> dict[str, Any]:
    """An SES bounce notification as SES writes it (docs.aws.amazon.com/ses: notification
    contents)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "feedbackId": feedback_id,
            "timestamp": "2026-03-31T23:59:30.123Z",
            "reportingMTA": "dsn; a27-1.smtp-out.ap-northeast-1.amazonses.com",
            "remoteMtaIp": "203.0.113.7",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {
            "timestamp": "2026-03-31T23:59:28.000Z",
            "source": "cs@example.com",
            "messageId": "0106018e7a0b1c2d-ses-own-id-000000",
            "destination": [email],
            "headersTruncated": False,
            "headers": [
                {"name": "Message-ID", "value": MESSAGE_ID},
                {"name": "Subject", "value": "ようこそ"},
            ],
            "commonHeaders": {
                "from": ["cs@example.com"],
                "to": [email],
                "messageId": MESSAGE_ID,
                "subject": "ようこそ",
            },
        },
    }


def sns(notification: dict[str, Any], kind: str = "Notification") -> bytes:
    envelope = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:ses-feedback",
        "Message": json.dumps(notification, ensure_ascii=False),
        "Timestamp": "2026-03-31T23:59:31.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.ap-northeast-1.amazonaws.com/?Action=Unsubscribe",
    }
    if kind == "SubscriptionConfirmation":
        envelope["SubscribeURL"] = (
            "https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription&Token=x"
        )
    return json.dumps(envelope, ensure_ascii=False).encode()


def test_an_ses_hard_bounce_through_sns_finds_the_message_by_our_message_id(client, db, world):
    basic = {
        "Authorization": "Basic " + base64.b64encode(f"sns:{KEY}".encode()).decode()
    }  # https://sns:KEY@host/... is all SNS can send
    response = client.post(
        "/api/v1/webhooks/bounces",
        data=sns(ses_bounce("taro@example.co.jp")),
        content_type="text/plain; charset=UTF-8",
        headers=basic,
    )
    assert response.status_code == 200 and response.get_json() == {
        "processed": 1,
        "duplicates": 0,
        "ignored": 0,
    }
    assert suppression(db, "taro@example.co.jp").source == ("ses: smtp; 550 5.1.1 user unknown")  # type: ignore[union-attr]
    assert message_status(db, world) == MessageStatus.BOUNCED
    [event] = events(db)
    assert (event.message_id, event.occurred_at, event.data["bounce_type"]) == (
        world.message,
        datetime(2026, 3, 31, 23, 59, 30, 123000, tzinfo=UTC),
        "Permanent",
    )
    again = client.post(
        "/api/v1/webhooks/bounces",
        data=sns(ses_bounce("taro@example.co.jp")),
        content_type="text/plain",
        headers=basic,
    )
    assert again.get_json() == {"processed": 0, "duplicates": 1, "ignored": 0}


def test_an_ses_transient_bounce_raw_or_through_sns_is_soft(client, db, world):
    response = client.post(
        "/api/v1/webhooks/bounces", json=ses_bounce("taro@example.co.jp", "Transient"), headers=AUTH
    )
    assert response.get_json() == {"processed": 1, "duplicates": 0, "ignored": 0}
    assert (
        suppression(db, "taro@example.co.jp") is None
        and message_status(db, world) == MessageStatus.SENT
    )
    assert [e.reason for e in events(db)] == ["soft bounce"]


def test_an_ses_complaint_through_sns_suppresses_and_unsubscribes(client, db, world):
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": "Hanako@example.co.jp"}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-03-31T23:50:00.000Z",
            "timestamp": "2026-03-31T23:55:00.000Z",
            "feedbackId": "0100018e-complaint-0001",
        },
        "mail": {
            "timestamp": "2026-03-31T12:00:00.000Z",
            "messageId": "0106018e-ses-own-id",
            "source": "cs@example.com",
            "destination": ["hanako@example.co.jp"],
        },
    }
    response = client.post(
        "/api/v1/webhooks/bounces",
        data=sns(complaint),
        content_type="text/plain; charset=UTF-8",
        headers=AUTH,
    )
    assert response.get_json() == {"processed": 1, "duplicates": 0, "ignored": 0}
    assert suppression(db, "hanako@example.co.jp").reason == "complaint"  # type: ignore[union-attr]
    with db.session() as s:
        assert s.get(Contact, world.hanako).subscribed is False  # type: ignore[union-attr]
    [event] = events(db)
    assert (event.kind, event.contact_id, event.value, event.dedupe_key is not None) == (
        EventKind.COMPLAINT,
        world.hanako,
        "abuse",
        True,
    )
    assert (
        client.post("/api/v1/webhooks/bounces", data=sns(complaint), headers=AUTH).get_json()[
            "duplicates"
        ]
        == 1
    )


def test_subscription_confirmations_sends_and_not_spam_are_ignored(client, db, world):
    send = {"notificationType": "Send", "mail": {"messageId": "x"}, "send": {}}
    not_spam = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "taro@example.co.jp"}],
            "complaintFeedbackType": "not-spam",
        },
        "mail": {},
    }
    for body in (sns(send), sns({}, "SubscriptionConfirmation"), json.dumps(not_spam).encode()):
        response = client.post(
            "/api/v1/webhooks/bounces", data=body, content_type="text/plain", headers=AUTH
        )
        assert response.get_json() == {"processed": 0, "duplicates": 0, "ignored": 1}
    assert stored(db) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "bounce", "email": "taro@example.co.jp"}, "bounce_type"),
        ({"type": "bounced", "email": "taro@example.co.jp", "bounce_type": "hard"}, "type"),
        (
            {"type": "complaint", "email": "taro@example.co.jp", "bounce_type": "hard"},
            "bounce_type",
        ),
        ({"type": "bounce", "email": "太郎", "bounce_type": "hard"}, "email"),
        (
            {"type": "bounce", "email": "taro@example.co.jp", "bounce_type": "hard", "smtp": 550},
            "smtp",
        ),
        (
            [{"type": "complaint", "email": "hanako@example.co.jp"}, {"type": "complaint"}],
            "[1].email",
        ),
        (
            {
                "notificationType": "Bounce",
                "bounce": {"bounceType": "Permanent", "bouncedRecipients": []},
                "mail": {},
            },
            "bounce.bouncedRecipients",
        ),
        ({"Type": "Notification", "Message": "{not json"}, "Message"),
        (
            {
                "notificationType": {},
                "bounce": {
                    "bounceType": "Permanent",
                    "bouncedRecipients": [{"emailAddress": "taro@example.co.jp"}],
                },
            },
            "notificationType",
        ),
        ([{"eventType": 7}], "[0].eventType"),
    ],
)
def test_a_bad_notification_is_a_422_naming_its_field_and_nothing_is_stored(
    client, db, world, body, field
):
    error = error_of(client.post("/api/v1/webhooks/bounces", json=body, headers=AUTH), 422)
    assert field in [p["field"] for p in error["items"]], error
    assert stored(db) == (0, 0, 0, 0, 0, 0)


def test_an_ses_recipient_is_a_plain_address_or_a_name_with_one_in_angle_brackets(
    client, db, world
):
    """A plain address may itself hold "<" (the document's pattern allows it); only what is not
    one is read as a display name."""
    both = ses_bounce("Taro Yamada <taro@example.co.jp>")
    both["bounce"]["bouncedRecipients"].append({"emailAddress": "o<dd@example.org"})
    assert client.post("/api/v1/webhooks/bounces", json=both, headers=AUTH).get_json() == {
        "processed": 2,
        "duplicates": 0,
        "ignored": 0,
    }
    assert (
        suppression(db, "taro@example.co.jp") is not None
        and suppression(db, "o<dd@example.org") is not None
    )


# ---------------------------------------------------------------------------- HTTP edges


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "PUT", "PATCH", "DELETE", "GET"])
def test_a_method_a_path_does_not_take_is_a_405_whose_allow_lists_the_ones_it_does(client, method):
    response = client.open("/api/v1/events", method=method, headers=AUTH)
    error_of(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert error_of(
        client.open("/api/v1/contacts/taro@example.co.jp", method="POST", headers=AUTH), 405
    )


def test_a_url_longer_than_4000_bytes_is_a_414_in_the_one_error_shape(client, world):
    assert (
        client.get("/api/v1/nps?journey=" + "x" * 3950, headers=AUTH).status_code == 404
    )  # long, but under the limit
    assert (
        "longer than 4000 bytes"
        in error_of(client.get("/api/v1/nps?journey=" + "x" * 4000, headers=AUTH), 414)["message"]
    )
    error_of(
        client.get("/api/v1/contacts/" + "x" * 4000 + "@example.co.jp"), 414
    )  # before the key is even looked at


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/tasks?due=",  # the enum has no empty value; absent is no filter
        "/api/v1/tasks?limit=%C2%B2",  # "²" is a digit to str.isdigit, not to int()
        "/api/v1/tasks?offset=1000000001",
        "/api/v1/contacts/taro@example.co.jp/in-app?all=",
        "/api/v1/contacts/taro@example.co.jp/in-app?all=TRUE",
        "/api/v1/reports/onboarding?since=20260401",  # ISO 8601's basic form is not format: date
        "/api/v1/nps?until=2026-W14-3",
        # RFC 3339 wants the T
        "/api/v1/contacts/taro@example.co.jp/timeline?before=2026-04-01%2009:00:00%2B00:00",
        "/api/v1/contacts/taro@example.co.jp/timeline?before=2026-04-01T09:00",
        "/api/v1/contacts/%20taro@example.co.jp",
    ],
)
def test_a_parameter_the_document_does_not_allow_is_a_400(client, world, url):
    error_of(client.get(url, headers=AUTH), 400)


def test_times_are_rfc_3339_with_an_offset_lowercase_and_leap_seconds_included(client, db, world):
    batch = {
        "events": [
            {"name": "login", "account": {"external_id": "ACME-1"}, "occurred_at": at}
            for at in ("2026-03-31t23:59:60z", "2026-03-31T09:00:00.5+09:00")
        ]
    }
    assert client.post("/api/v1/events", json=batch, headers=AUTH).status_code == 202
    assert [e.occurred_at for e in events(db)] == [
        NOW,
        datetime(2026, 3, 31, 0, 0, 0, 500000, tzinfo=UTC),
    ]
    for at, words in (
        ("2026-03-31T09:00:00", "no UTC offset"),
        ("2026-03-31 09:00:00Z", "ISO 8601"),
        ("20260331T090000Z", "ISO 8601"),
    ):
        error = error_of(
            client.post(
                "/api/v1/events", json={**batch["events"][0], "occurred_at": at}, headers=AUTH
            ),
            422,
        )
        assert words in error["items"][0]["message"], (at, error)


def test_a_null_optional_field_is_the_field_left_out(client, db, world):
    assert (
        client.post(
            "/api/v1/events",
            json={
                "name": "login",
                "account": {"external_id": "ACME-1"},
                "occurred_at": None,
                "properties": None,
            },
            headers=AUTH,
        ).status_code
        == 202
    )
    [event] = events(db)
    assert (event.occurred_at, event.data) == (NOW, {})


# ---------------------------------------------------------------------------- API keys


@pytest.mark.parametrize("rule", PRIVATE, ids=lambda r: f"{_method(r)} {r.rule}")
def test_every_endpoint_needs_a_valid_key(client, app, db, world, rule):
    url, method = _url(app, rule), _method(rule)
    missing = client.open(url, method=method)
    assert "missing Authorization header" in error_of(missing, 401)["message"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    for header in (
        f"Bearer {KEY}x",
        "Bearer ",
        "Bearer 鍵",
        f"Token {KEY}",
        "Basic " + base64.b64encode(b"sns:wrong-key-0123456789").decode(),
    ):
        response = client.open(url, method=method, headers={"Authorization": header})
        error_of(response, 401)
        assert "Bearer" in response.headers["WWW-Authenticate"]
    assert stored(db) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("rule", PRIVATE, ids=lambda r: f"{_method(r)} {r.rule}")
def test_every_endpoint_is_off_without_api_keys(build_app, rule):
    app = build_app(base_url=defaults.BASE_URL)
    response = app.test_client().open(_url(app, rule), method=_method(rule), headers=AUTH)
    assert error_of(response, 403)["message"] == "the API is off: set API_KEYS"


def test_a_basic_key_is_taken_only_where_sns_needs_it(client, world):
    basic = {"Authorization": "Basic " + base64.b64encode(f"sns:{KEY}".encode()).decode()}
    error_of(client.get("/api/v1/contacts/taro@example.co.jp", headers=basic), 401)
    assert (
        client.post(
            "/api/v1/webhooks/bounces",
            json={"type": "complaint", "email": "x@example.org"},
            headers=basic,
        ).status_code
        == 200
    )


def test_the_openapi_document_needs_no_key(build_app):
    app = build_app(base_url=defaults.BASE_URL)
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.get_json()["servers"] == [
        {"url": "http://127.0.0.1:5000"}
    ]


# ---------------------------------------------------------------------------- garbage in


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Near misses: the right fields with wrong values, and always one field too many, so no example can
# be valid.
NEAR_EVENT = st.fixed_dictionaries(
    {
        "name": st.text(max_size=20) | st.sampled_from(["login", "usage_dropped"]),
        "zz_unknown": JSON,
    },
    optional={
        "contact": st.fixed_dictionaries({"email": JSON | st.emails()}) | JSON,
        "account": JSON,
        "occurred_at": JSON | st.datetimes().map(str),
        "properties": JSON,
        "id": JSON,
    },
)
NEAR_NOTICE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["bounce", "complaint"]) | JSON,
        "email": st.emails() | JSON,
        "zz_unknown": JSON,
    },
    optional={
        "bounce_type": st.sampled_from(["hard", "soft"]) | JSON,
        "message_id": JSON,
        "diagnostic": JSON,
    },
)
NEAR_SES = st.fixed_dictionaries(
    {
        "notificationType": st.sampled_from(["Bounce", "Complaint"]),
        "bounce": JSON,
        "complaint": JSON,
    },
    optional={"mail": JSON | st.fixed_dictionaries({"commonHeaders": JSON})},
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(_encoded),
    NEAR_EVENT.map(_encoded),
    st.lists(NEAR_EVENT, min_size=1, max_size=3).map(lambda e: _encoded({"events": e})),
    NEAR_NOTICE.map(_encoded),
    st.lists(NEAR_NOTICE, min_size=1, max_size=3).map(_encoded),
    NEAR_SES.map(_encoded),
    NEAR_SES.map(lambda n: _encoded({"Type": "Notification", "Message": json.dumps(n)})),
)
POSTS = [r for r in PRIVATE if "POST" in r.methods]
GETS = [r for r in PRIVATE if "GET" in r.methods]


def _empty_or_blank_object(raw: bytes) -> bool:
    try:
        return not raw.strip() or json.loads(raw.decode("utf-8-sig")) == {}
    except ValueError:
        return False


@pytest.mark.parametrize("rule", POSTS, ids=lambda r: r.rule)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=BODIES)
def test_garbage_posted_to_any_endpoint_is_a_4xx_and_stores_nothing(
    client, app, db, world, in_app, rule, raw
):
    if "in_app_id" in rule.arguments:
        assume(not _empty_or_blank_object(raw))  # the one body these endpoints take
    before = stored(db)
    response = client.post(
        _url(app, rule, in_app_id=in_app["old"]) if rule.arguments else _url(app, rule),
        data=raw,
        content_type="application/json",
        headers=AUTH,
    )
    assert 400 <= response.status_code < 500, (
        response.status_code,
        raw,
        response.get_data(as_text=True),
    )
    error_of(response, response.status_code)
    assert stored(db) == before


STORABLE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)
PROPERTIES = st.dictionaries(
    STORABLE_TEXT,
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63)
        | st.floats(allow_nan=False, allow_infinity=False)
        | STORABLE_TEXT
        | st.sampled_from(["解約", "🙂", "Ａ"]),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(STORABLE_TEXT, inner, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=5,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(properties=PROPERTIES, name=st.from_regex(api.EVENT_NAME, fullmatch=True))
def test_any_properties_and_any_valid_name_round_trip(client, db, world, properties, name):
    response = client.post(
        "/api/v1/events",
        json={"name": name, "contact": {"email": "taro@example.co.jp"}, "properties": properties},
        headers=AUTH,
    )
    assert response.status_code == 202, response.get_json()
    with db.session() as s:
        event = s.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
        assert (event.name, _numbers_as_decimals(event.data)) == (
            name,
            _numbers_as_decimals(properties),
        )


def _numbers_as_decimals(value: Any) -> Any:
    """JSON numbers compared as numbers: PostgreSQL's jsonb gives 2.5e+16 back as
    25000000000000000."""
    if isinstance(value, dict):
        return {k: _numbers_as_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_decimals(v) for v in value]
    if isinstance(value, float | int) and not isinstance(value, bool):
        return Decimal(repr(value)).normalize()
    return value


@pytest.mark.parametrize("rule", GETS, ids=lambda r: r.rule)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(email=st.text(max_size=40), flag=st.text(max_size=5))
def test_garbage_in_a_url_is_a_4xx(client, app, db, world, rule, email, flag):
    assume(
        email.strip().lower() not in ("taro@example.co.jp", "hanako@example.co.jp")
        and flag.strip().lower() not in ("", "0", "1", "true", "false", "yes", "no")
    )
    url = (
        _openapi_path(rule).replace("{email}", quote(email, safe=""))
        + f"?all={quote(flag, safe='')}"
    )
    response = client.get(url, headers=AUTH)
    assert 400 <= response.status_code < 500, (
        response.status_code,
        url,
        response.get_data(as_text=True),
    )
    assert "error" in response.get_json()


# ---------------------------------------------------------------------------- the OpenAPI document


def test_the_openapi_document_lists_every_route_of_the_blueprint(client, app):
    document = client.get("/api/v1/openapi.json").get_json()
    routes = {
        (_openapi_path(r), m.lower())
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith("api.")
        for m in r.methods
        if m not in ("HEAD", "OPTIONS")
    }
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == documented
    assert {
        (_openapi_path(r), _method(r).lower()) for r in RULES
    } == routes  # the test's own list is the app's


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_openapi_document_is_valid_openapi_3_1(client):
    document = api.openapi_document()
    assert (
        re.fullmatch(r"3\.1\.\d+", document["openapi"])
        and document["info"]["title"]
        and document["info"]["version"]
    )
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    operation_ids = []
    for path, item in document["paths"].items():
        declared = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            for code in operation["responses"]:
                assert re.fullmatch(r"[1-5]\d\d|default", code), (path, method, code)
            params = {
                p["name"]
                for p in (_component(document, p) for p in operation.get("parameters", []))
                if p["in"] == "path"
            }
            assert params == declared, (path, method)
            for requirement in operation.get("security", document["security"]):
                assert set(requirement) <= set(schemes)
            if operation.get("security", document["security"]):
                assert "401" in operation["responses"] and "403" in operation["responses"], (
                    path,
                    method,
                )
            operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))


def _component(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    target: Any = document
    for part in node["$ref"][2:].split("/"):
        target = target[part]
    return dict(target)


def test_answers_match_the_schemas_the_document_promises(client, db, world, in_app):
    schemas = api.openapi_document()["components"]["schemas"]

    def fits(body: dict[str, Any], name: str) -> None:
        schema = schemas[name]
        assert set(schema["required"]) <= set(body) <= set(schema["properties"]), (name, body)

    fits(
        client.post(
            "/api/v1/events",
            json={"name": "login", "contact": {"email": "taro@example.co.jp"}},
            headers=AUTH,
        ).get_json(),
        "EventsAccepted",
    )
    fits(client.get("/api/v1/contacts/taro@example.co.jp", headers=AUTH).get_json(), "Contact")
    fits(
        client.get("/api/v1/contacts/taro@example.co.jp/in-app", headers=AUTH).get_json()[0],
        "InAppMessage",
    )
    fits(
        client.post(f"/api/v1/in-app/{in_app['old']}/clicked", headers=AUTH).get_json(),
        "InAppMessage",
    )
    fits(
        client.post(
            "/api/v1/webhooks/bounces",
            json={"type": "complaint", "email": "x@example.org"},
            headers=AUTH,
        ).get_json(),
        "WebhookResult",
    )
    error = client.post("/api/v1/events", json={"name": "login"}, headers=AUTH).get_json()
    fits(error, "Error")
    assert set(error["error"]) <= set(schemas["Error"]["properties"]["error"]["properties"])
    fits(error["error"]["items"][0], "ItemError")


def test_every_endpoint_is_in_the_api_guide():
    guide = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for rule in RULES:
        assert f"{_method(rule)} {_openapi_path(rule)}" in guide, rule.rule
    for limit in (f"{api.MAX_ITEMS}", "1 MB", "16 KB", "API_KEYS"):
        assert limit in guide, limit


# ---------------------------------------------------------------------------- GET /reports


def test_the_reports_overview_gives_the_global_control_groups_lift(client: Any, db: Any) -> None:
    from collections import Counter

    from campaigns.engine.deploy import deploy
    from campaigns.insight import stats
    from campaigns.journeys.parse import parse_journey

    text = (
        "journey: trial\nname: Trial\nsegments: [everyone]\nentry: {trigger: segment}\n"
        "goal: {event: converted, within: 30 days}\nsteps:\n  - {id: pause, wait: 1 day}\n"
    )
    assert "global_control" not in client.get("/api/v1/reports", headers=AUTH).get_json()
    with db.session() as s, s.begin():
        deploy(s, parse_journey(text, "trial.yaml"), text, "trial.yaml")
        journey = s.scalars(select(Journey.id).where(Journey.key == "trial")).one()
        day = NOW.date()
        counts = {"enrolled": 900, "goal": 270, "control": 100, "control_goal": 20}
        stats.add(
            s,
            Counter({(journey, "", "", "", "", "", day, m): n for m, n in counts.items()}),
        )
    document = client.get("/api/v1/reports", headers=AUTH).get_json()
    assert document["global_control"] == {
        "treated": {"value": 0.3, "hits": 270, "n": 900, "low": 0.271, "high": 0.3307},
        "control": {"value": 0.2, "hits": 20, "n": 100, "low": 0.1334, "high": 0.2888},
        "lift": {"difference": 0.1, "low": 0.0065, "high": 0.1734, "relative": 0.5},
    }
    goal = client.get("/api/v1/reports/trial", headers=AUTH).get_json()["goal"]
    assert (
        goal["control"]["n"] == 100 and goal["control_lift"] == document["global_control"]["lift"]
    )
    assert "holdout" not in goal and "lift" not in goal


def test_reports_give_the_same_numbers_as_the_stats(client: Any, db: Any, world: World) -> None:
    from collections import Counter

    from campaigns.insight import stats

    day = NOW.date()
    with db.session() as s, s.begin():
        stats.add(
            s,
            Counter(
                {
                    (world.journey, "welcome", "email", "", "", "", day, "sent"): 7,
                    (world.journey, "welcome", "email", "", "", "", day, "opened"): 3,
                    (world.journey, "", "", "", "", "", day, "enrolled"): 8,
                }
            ),
        )
    document = client.get("/api/v1/reports/onboarding", headers=AUTH).get_json()
    assert document["name"] == "オンボーディング"
    [welcome] = document["rows"]
    assert welcome["key"] == "welcome" and welcome["rates"]["open_rate"] == {
        "value": 0.4286,
        "hits": 3,
        "n": 7,
        "low": 0.1582,
        "high": 0.7495,
    }  # Wilson 3/7
    assert document["totals"]["counts"] == {"enrolled": 8, "opened": 3, "sent": 7}
    assert (
        client.get("/api/v1/reports/onboarding?since=2026-04-02", headers=AUTH).get_json()["rows"]
        == []
    )
    assert (
        client.get("/api/v1/reports", headers=AUTH).get_json()["journeys"][0]["counts"]["sent"] == 7
    )
    assert error_of(client.get("/api/v1/reports/onboarding?by=colour", headers=AUTH), 400)[
        "message"
    ].startswith("by: one of step")
    assert (
        error_of(client.get("/api/v1/reports/onboarding?since=yesterday", headers=AUTH), 400)[
            "message"
        ]
        == "since: expected a date YYYY-MM-DD"
    )
    assert (
        error_of(client.get("/api/v1/reports/nope", headers=AUTH), 404)["message"]
        == "no journey 'nope'"
    )
