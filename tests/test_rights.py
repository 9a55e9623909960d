"""Data rights on SQLite and PostgreSQL: a contact with data everywhere (mail sent through the
engine to a real SMTP sink, hits on its tracking links through the app, an in-app message, a
task, consent through the API, outgoing events, an audit entry), exported (API and CLI) and
erased (API and CLI); then every text and JSON column of every table is scanned for their
personal data. The erased address is never mailed again, re-imported or re-upserted."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, String, Text, func, select

from campaigns.clock import FakeClock
from campaigns.engine.deploy import deploy
from campaigns.imports.importer import import_csv
from campaigns.journeys.parse import parse_journey
from campaigns.store.consent import email_hash
from campaigns.store.enums import AuditAction, MessageStatus, SuppressionReason
from campaigns.store.models import (
    AuditEntry,
    Base,
    ConsentRecord,
    Contact,
    ErasedAddress,
    Event,
    InAppMessage,
    Message,
    OutboundEvent,
    Stat,
    Suppression,
    Task,
)

KEY = "rights-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
START = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo
EMAIL = "taro.yamada@example.jp"
NAME = "山田 太郎"
PHONE = "03-1234-5678"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36 RightsTest"
)
PERSONAL = [EMAIL, NAME, PHONE, "RightsTest", "taro.yamada"]

JOURNEY = textwrap.dedent(
    """\
    journey: rights
    name: Rights
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: welcome
        email:
          template: onboarding_welcome
          subject: {en: "Welcome, {{ contact.name }}", ja: "{{ contact.name }}様、ようこそ"}
      - id: tip
        in_app:
          title: {en: "Hi {{ contact.name }}", ja: "{{ contact.name }}様へ"}
          body: {en: "For {{ contact.email }}", ja: "{{ contact.email }} 宛のお知らせ"}
      - id: call
        task:
          kind: call
          title: "Call {{ contact.name }} ({{ contact.email }}) at {{ account.name }}"
          due: 2 days
          per: contact
    """
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def client(build_app):
    return build_app(api_keys=(KEY,)).test_client()


def _tick(build_engine, smtp_sink, clock) -> None:
    build_engine(transport=smtp_sink, clock=clock).tick()


def _setup(db, client, build_engine, smtp_sink, clock) -> int:
    """The contact, with data in every table that can hold some; returns their id."""
    assert (
        client.put(
            "/api/v1/accounts/ACME",
            json={"name": "株式会社アクメ", "owner_email": "csm@example.com"},
            headers=AUTH,
        ).status_code
        == 201
    )
    put = client.put(
        f"/api/v1/contacts/{EMAIL}",
        json={
            "name": NAME,
            "account_external_id": "ACME",
            "locale": "ja",
            "time_zone": "Asia/Tokyo",
            "title": "情報システム部長",
            "attributes": {"phone": PHONE},
            "tags": ["決裁者"],
            "consent": {"basis": "opt_in", "source": "webform", "wording": "v1"},
        },
        headers=AUTH,
    )
    assert put.status_code == 201, put.get_json()
    with db.session() as s, s.begin():
        text = JOURNEY
        deploy(s, parse_journey(text, "rights.yaml"), text, "rights.yaml")
    _tick(build_engine, smtp_sink, clock)
    sent = [m for m in smtp_sink.parsed() if m["To"].addresses[0].addr_spec == EMAIL]
    assert len(sent) == 1
    html = sent[0].get_body(("html",)).get_content()
    urls = sorted(set(re.findall(r'https://cs\.example\.com/[^"\s<>]+', html)))
    assert urls
    clock.advance(timedelta(minutes=10))  # a person reads it a little later
    for url in urls:  # the pixel, the links, the unsubscribe page: a person's browser
        client.get(
            url.replace("https://cs.example.com", "").replace("&amp;", "&"),
            headers={"User-Agent": BROWSER},
        )
    with db.session() as s, s.begin():
        person = s.scalars(select(Contact).where(Contact.email == EMAIL)).one()
        s.add(Suppression(email=EMAIL, reason=SuppressionReason.COMPLAINT, source="test"))
        for status in ("pending", "delivered"):
            s.add(
                OutboundEvent(
                    uid=f"uid-{status}",
                    subscriber="crm",
                    type="message.sent",
                    occurred_at=START,
                    contact_id=person.id,
                    status=status,
                    payload={"contact": {"email": EMAIL, "name": NAME}},
                )
            )
        s.add(
            AuditEntry(
                actor="marketer@example.com",
                action=AuditAction.REMOVE,
                target_kind="journey",
                target="rights",
                detail={"removed": [EMAIL], "name": NAME},
            )
        )
        pid = person.id
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.contact_id == pid))
        assert s.scalar(select(func.count()).select_from(InAppMessage))
        assert s.scalar(select(func.count()).select_from(Task))
    return pid


def _texts(db) -> list[tuple[str, str, str]]:
    """(table, column, text) of every text and JSON value of every table."""
    found = []
    with db.session() as s:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if not columns:
                continue
            for row in s.execute(select(*columns)).mappings():
                for column in columns:
                    value = row[column.name]
                    if value is None:
                        continue
                    text = (
                        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    )
                    found.append((table.name, column.name, text))
    return found


def _mentions(db) -> list[tuple[str, str, str]]:
    return [
        (table, column, text[:120])
        for table, column, text in _texts(db)
        if any(p.lower() in text.lower() for p in PERSONAL)
    ]


def test_an_erased_contact_leaves_no_personal_data_in_any_table(
    db, client, build_engine, smtp_sink, clock
):
    pid = _setup(db, client, build_engine, smtp_sink, clock)
    before = _mentions(db)
    tables = {t for t, _, _ in before}
    assert {
        "contacts",
        "messages",
        "events",
        "tasks",
        "in_app_messages",
        "suppressions",
        "outbound_events",
        "audit_log",
    } <= tables, tables
    with db.session() as s:
        stats_before = sorted((r.metric, r.count) for r in s.scalars(select(Stat)))
        sent_before = s.scalar(
            select(func.count()).select_from(Message).where(Message.status == MessageStatus.SENT)
        )

    erased = client.delete(f"/api/v1/contacts/{EMAIL.upper()}", headers=AUTH)
    assert erased.status_code == 200, erased.get_json()
    body = erased.get_json()
    assert body["contact_found"] is True and body["email_hash"] == email_hash(EMAIL)

    assert _mentions(db) == []
    with db.session() as s:
        assert s.get(ErasedAddress, email_hash(EMAIL)) is not None
        tomb = s.get(Contact, pid)
        assert tomb is not None and tomb.email == f"erased-{pid}@erased.invalid"
        assert s.scalar(select(func.count()).select_from(InAppMessage)) == 0
        assert s.scalars(select(OutboundEvent.uid)).all() == ["uid-delivered"]
        record = s.scalars(select(ConsentRecord)).one()
        assert (record.contact_id, record.email_hash, record.basis) == (
            None,
            email_hash(EMAIL),
            "opt_in",
        )
        assert sorted((r.metric, r.count) for r in s.scalars(select(Stat))) == stats_before
        assert (
            s.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status == MessageStatus.SENT)
            )
            == sent_before
        )
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == AuditAction.ERASE)).one()
        assert entry.target == email_hash(EMAIL) and entry.actor == "api:admin"
    assert client.get(f"/api/v1/contacts/{EMAIL}/export", headers=AUTH).status_code == 404
    again = client.delete(f"/api/v1/contacts/{EMAIL}", headers=AUTH)
    assert again.status_code == 200 and again.get_json()["already_erased"] is True


def test_the_export_holds_everything_and_is_audited_on_the_api_and_the_cli(
    db, client, build_engine, smtp_sink, clock, cli, tmp_path: Path
):
    _setup(db, client, build_engine, smtp_sink, clock)
    response = client.get(f"/api/v1/contacts/{EMAIL}/export", headers=AUTH)
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    assert data["contact"]["email"] == EMAIL and data["contact"]["name"] == NAME
    assert data["contact"]["attributes"] == {"phone": PHONE}
    assert data["account"] == {"external_id": "ACME", "name": "株式会社アクメ"}
    assert [c["basis"] for c in data["consent"]] == ["opt_in"]
    assert [e["journey"] for e in data["enrollments"]] == ["rights"]
    assert [m["subject"] for m in data["messages"] if m["channel"] == "email"] == [
        f"{NAME}様、ようこそ"
    ]
    assert {e["kind"] for e in data["events"]} >= {"open", "click"}
    assert any(e["user_agent"] == BROWSER for e in data["events"])
    assert NAME in data["tasks"][0]["title"]
    assert data["in_app_messages"][0]["title"] == f"{NAME}様へ"
    assert [s["reason"] for s in data["suppressions"]] == ["complaint"]
    assert len(data["outbound_events"]) == 2

    cli.env["DATABASE_URL"] = db.url
    out = tmp_path / "export.json"
    result = cli("contact", "export", EMAIL, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["contact"]["name"] == NAME
    missing = cli("contact", "export", "nobody@example.com")
    assert missing.exit_code != 0 and "no contact" in missing.output
    with db.session() as s:
        actors = s.scalars(
            select(AuditEntry.actor)
            .where(
                AuditEntry.action == AuditAction.DATA_EXPORT, AuditEntry.target == email_hash(EMAIL)
            )
            .order_by(AuditEntry.id)
        ).all()
    assert actors[0] == "api:admin" and actors[1].startswith("cli:")

    refused = cli("contact", "erase", EMAIL, input="n\n")
    assert refused.exit_code != 0
    erased = cli("contact", "erase", EMAIL, "--yes")
    assert erased.exit_code == 0, erased.output
    assert "contact erased" in erased.output and EMAIL not in erased.output
    assert _mentions(db) == []


def test_an_erased_address_is_never_mailed_again_reimported_or_upserted(
    db, client, build_engine, smtp_sink, clock, tmp_path: Path
):
    _setup(db, client, build_engine, smtp_sink, clock)
    assert client.delete(f"/api/v1/contacts/{EMAIL}", headers=AUTH).status_code == 200
    delivered = len(smtp_sink.messages)
    late = client.post(
        "/api/v1/webhooks/bounces", json={"type": "complaint", "email": EMAIL}, headers=AUTH
    )
    assert late.status_code == 200, late.get_json()
    assert _mentions(db) == []  # a late complaint does not write the address down again

    csv = tmp_path / "contacts.csv"
    csv.write_text(f"email,name,account_external_id\n{EMAIL},{NAME},ACME\n", encoding="utf-8")
    report = import_csv("contacts", csv, db.sessions)
    assert report.inserted == 1
    again = client.put(
        "/api/v1/contacts/other.person@example.jp",
        json={"name": "別人", "account_external_id": "ACME"},
        headers=AUTH,
    )
    assert again.status_code == 201
    _tick(build_engine, smtp_sink, clock)

    recipients = [to for _, tos, _ in smtp_sink.messages[delivered:] for to in tos]
    assert EMAIL not in recipients
    assert "other.person@example.jp" in recipients  # the gate stops only the erased address
    with db.session() as s:
        refused = s.scalars(
            select(Message).where(Message.to_address == EMAIL, Message.channel == "email")
        ).one()
        assert (refused.status, refused.error) == (MessageStatus.SUPPRESSED, "address erased")


def test_the_gate_finds_erased_addresses_by_hash_across_chunks_and_tombstones(db):
    from campaigns.engine import controls
    from campaigns.store.erased import erased_among, tombstone_address

    addresses = [f"person{i}@example.jp" for i in range(1200)]
    with db.session() as s, s.begin():
        s.add_all(ErasedAddress(email_hash=email_hash(a), erased_at=START) for a in addresses[::7])
    with db.session() as s:
        found = erased_among(s, [a.upper() for a in addresses] + [tombstone_address(9)])
        assert found == {a for a in addresses[::7]} | {tombstone_address(9)}
        assert controls.is_suppressed(s, "PERSON0@example.jp")
        assert not controls.is_suppressed(s, "person1@example.jp")
