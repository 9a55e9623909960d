"""Unsubscribe by mail: a real email sent by the engine (both databases, aiosmtpd on
loopback), its List-Unsubscribe mailto answered with a raw message piped to
``campaigns inbound``, which unsubscribes the contact as the one-click POST does."""

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns.store.enums import EventKind
from campaigns.store.models import Contact, Event
from tests.kit import TEST_BASE_URL, TEST_SECRET
from tests.test_sender import _contacts, _send


def _reply(to: str, *, envelope_header: str = "To") -> bytes:
    return (
        "From: =?utf-8?b?5bGx55SwIOWkqumDjg==?= <taro@example.co.jp>\r\n"
        f"{envelope_header}: {to}\r\n"
        "Subject: unsubscribe\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0900\r\n"
        "Message-ID: <reply.1@example.co.jp>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "配信停止をお願いします。\r\n"
    ).encode()


def _mailto(db, smtp_sink, build_engine) -> str:
    _contacts(db, owner="csm.sato@example.com")
    message = _send(db, smtp_sink, build_engine)["taro@example.co.jp"]
    mailto = re.findall(r"<(mailto:[^>]+)>", str(message["List-Unsubscribe"]))[0]
    return mailto[len("mailto:") :].split("?", 1)[0]


def _inbound(cli, db, raw: bytes, *args: str):
    cli.env.update(DATABASE_URL=db.url, SECRET_KEY=TEST_SECRET, BASE_URL=TEST_BASE_URL)
    from click.testing import CliRunner

    from campaigns.cli import cli as group

    return CliRunner().invoke(group, ["inbound", *args], env=cli.env, input=raw)


def _subscribed(db) -> bool:
    with db.session() as s:
        return s.scalar(select(Contact.subscribed).where(Contact.email == "taro@example.co.jp"))


def test_mail_to_the_unsubscribe_address_unsubscribes_like_the_one_click(
    db, smtp_sink, build_engine, cli
):
    address = _mailto(db, smtp_sink, build_engine)
    assert _subscribed(db)
    done = _inbound(cli, db, _reply(address))
    assert done.exit_code == 0, done.output
    assert "unsubscribe recorded for message" in done.output
    assert not _subscribed(db)
    with db.session() as s:
        (event,) = s.scalars(select(Event).where(Event.kind == EventKind.UNSUBSCRIBE)).all()
        assert event.classification == "human"


def test_the_envelope_recipient_is_read_first(db, smtp_sink, build_engine, cli):
    address = _mailto(db, smtp_sink, build_engine)
    raw = _reply("list@example.com")  # a list or alias rewrote To
    done = _inbound(cli, db, raw, "--recipient", address)
    assert done.exit_code == 0, done.output
    assert not _subscribed(db)


def test_a_forged_or_altered_token_unsubscribes_no_one(db, smtp_sink, build_engine, cli):
    address = _mailto(db, smtp_sink, build_engine)
    local, domain = address.split("@")
    forged = f"{local[:-1]}{'A' if local[-1] != 'A' else 'B'}@{domain}"
    done = _inbound(cli, db, _reply(forged))
    assert done.exit_code == 67
    assert done.output.strip().splitlines() == [
        "inbound: no recipient is an unsubscribe+TOKEN@ address with a valid token"
    ]
    assert _subscribed(db)
    garbage = _inbound(cli, db, b"\x00\x01 not a mail")
    assert garbage.exit_code == 65 and _subscribed(db)
