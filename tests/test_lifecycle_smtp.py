"""Pausing over real SMTP (aiosmtpd on loopback), on SQLite and PostgreSQL with a fake clock:
a journey with messages in flight (refused for now by the relay, or marked "sending" in a
batch when the pause lands) sends nothing across several ticks; resuming delivers each held
message once, under the Message-ID its row was given before the pause."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from campaigns.channels.transports import Transport, transport_from_url
from campaigns.content.mime import OutgoingEmail
from campaigns.engine import batch, lifecycle
from campaigns.engine.deploy import deploy
from campaigns.journeys.parse import parse_journey
from campaigns.store.enums import MessageStatus
from campaigns.store.models import Account, Contact, Message
from tests.kit import LINKS, START

JOURNEY = textwrap.dedent(
    """\
    journey: welcome_ja
    name: ようこそ
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - {id: hello, email: {template: onboarding_tips, subject: "{{ contact.name }}様、ようこそ"}}
      - {id: rest, wait: 2 days}
      - {id: tips, email: {template: onboarding_tips, subject: Tips}}
    """
)


class PausingTransport:
    """The real SMTP transport, with the marketer's click on Pause landing just before the
    ``at``-th message goes (a batch is then in the middle of delivering its round)."""

    def __init__(self, inner: Transport, pause: object, at: int) -> None:
        self.inner, self.pause, self.at, self.calls = inner, pause, at, 0

    def send(self, mail: OutgoingEmail) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.pause()  # type: ignore[operator]
        self.inner.send(mail)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


def test_a_paused_journey_sends_nothing_over_smtp_and_resumes_with_the_same_message_ids(
    db, build_engine, clock, smtp_sink, monkeypatch
):
    monkeypatch.setattr(batch, "RESULTS_COMMIT_SECONDS", 0.0)  # look after every send
    with db.session() as s, s.begin():
        company = Account(external_id="ACME", name="株式会社アクメ")
        s.add(company)
        s.flush()
        emails = [f"c{i}@example.co.jp" for i in range(6)]
        for i, email in enumerate(emails):
            s.add(Contact(account_id=company.id, email=email, name=f"山田 {i}"))
        deploy(s, parse_journey(JOURNEY, "w.yaml"), JOURNEY, "w.yaml")

    def pause() -> None:
        with db.session() as s, s.begin():
            lifecycle.pause(s, "welcome_ja", "marketer@example.com", clock.now())

    smtp_sink.data_replies = ["451 4.3.0 try again later", "451 4.3.0 try again later"]
    transport = PausingTransport(transport_from_url(smtp_sink.url), pause, at=4)
    engine = build_engine(transport=transport, links=LINKS, settings={"heartbeat": False})
    engine.tick()

    first = smtp_sink.parsed()
    assert len(first) == 2  # two refused for now, two sent, then the pause
    with db.session() as s:
        rows = s.scalars(select(Message).order_by(Message.id)).all()
    held = {r.to_address: r.message_id for r in rows if r.status != MessageStatus.SENT}
    assert len(held) == 4 and all(held.values())  # every held row has its Message-ID
    assert {r.status for r in rows if r.to_address in held} == {
        MessageStatus.DEFERRED,
        MessageStatus.PENDING,
    }

    for minutes in (2, 10, 60, 60 * 24, 60 * 24 * 3):  # the retries' backoff is long over
        clock.set(START + timedelta(minutes=minutes))
        engine.tick()
        assert len(smtp_sink.messages) == 2

    with db.session() as s, s.begin():
        lifecycle.resume(s, "welcome_ja", "marketer@example.com", clock.now())
    engine.tick()

    arrived = smtp_sink.parsed()
    hello = [m for m in arrived if m["Subject"].endswith("様、ようこそ")]
    assert len(hello) == 6
    assert Counter(m["To"].addresses[0].addr_spec for m in hello) == Counter(emails)  # each once
    later = {m["To"].addresses[0].addr_spec: m["Message-ID"] for m in hello[2:]}
    assert later == held  # the rows written before the pause, under their Message-IDs
    assert len({m["Message-ID"] for m in hello}) == 6
    assert {m["Subject"] for m in hello} == {f"山田 {i}様、ようこそ" for i in range(6)}
    with db.session() as s:
        statuses = set(s.scalars(select(Message.status).where(Message.step_id == "hello")))
    assert statuses == {MessageStatus.SENT}
