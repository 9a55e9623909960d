"""No outgoing event is lost when a process dies: a deliverer (``campaigns events deliver``
in a subprocess) SIGKILLed while a POST hangs leaves its claim to run out, and the next one
delivers every event (only the one in flight may arrive twice); a web process SIGKILLed
right after answering an unsubscribe has the event in the outbox already, written in the
request's transaction. Real processes, a real receiver on loopback; SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from campaigns.store.enums import OutboundStatus, OutboundType
from campaigns.store.models import Account, Contact, Message, OutboundEvent
from campaigns.store.outbox import Item, Outbox, attach, emit_many
from campaigns.tracking.tokens import Tokens
from tests.conftest import free_port
from tests.hooks_kit import SECRET, Receiver
from tests.kit import START, TEST_SECRET

ROOT = Path(__file__).resolve().parent.parent


def environment(db, tmp_path, receiver: Receiver, **more: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "EVENT"))}
    return {
        **keep,
        "DATABASE_URL": db.url,
        "SECRET_KEY": TEST_SECRET,
        "BASE_URL": "http://127.0.0.1",
        "CAMPAIGNS_INSTANCE": str(tmp_path / "instance"),
        "MAIL_URL": f"file://{tmp_path / 'outbox'}",
        "EVENT_SUBSCRIBERS": f"crm={receiver.url}|secret={SECRET}",
        **more,
    }


def seed(db) -> tuple[int, int]:
    with db.session() as s, s.begin():
        account = Account(external_id="ACME-JP", name="株式会社アクメ")
        s.add(account)
        s.flush()
        contact = Contact(account_id=account.id, email="hanako@example.co.jp", name="山田 花子")
        s.add(contact)
        s.flush()
        message = Message(
            contact_id=contact.id,
            step_id="hello",
            to_address=contact.email,
            subject="ようこそ",
            status="sent",
            message_id="<hello.1@example.com>",
            sent_at=START,
        )
        s.add(message)
        s.flush()
        return contact.id, message.id


def test_a_deliverer_killed_mid_post_loses_no_event(db, tmp_path):
    hanging = threading.Event()

    def answer(n: int):
        if n == 2:
            hanging.set()
            return ("sleep", 4, 200)  # the deliverer is killed while this POST waits
        return 200

    receiver = Receiver(answer=answer).start()
    try:
        sessions = attach(db.sessions, Outbox([receiver.subscriber()]))
        contact_id, _ = seed(db)
        with sessions() as s, s.begin():
            uids = emit_many(
                s,
                [
                    Item(OutboundType.TASK_DONE, START, contact_id=contact_id, data={"n": i})
                    for i in range(6)
                ],
            )
        env = environment(db, tmp_path, receiver, EVENT_TIMEOUT="3", LEASE_SECONDS="2")
        command = [sys.executable, "-m", "campaigns", "events", "deliver"]
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
        assert hanging.wait(60), "the deliverer never reached the third event"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with db.session() as s:
            states = Counter(s.scalars(select(OutboundEvent.status)))
        assert states == {OutboundStatus.DELIVERED: 2, OutboundStatus.PENDING: 4}
        time.sleep(5.5)  # the dead deliverer's lease (EVENT_TIMEOUT + LEASE_SECONDS) runs out
        second = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 0, second.stderr
        with db.session() as s:
            assert set(s.scalars(select(OutboundEvent.status))) == {OutboundStatus.DELIVERED}
        seen = Counter(receiver.uids())
        assert set(seen) == set(uids)  # every event arrived
        twice = {uid for uid, n in seen.items() if n > 1}
        assert twice <= {uids[2]}  # only the one in flight may arrive twice
        assert all(r.signed for r in receiver.received)
    finally:
        receiver.stop()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the web process exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("the web process did not start listening")


def test_an_unsubscribe_is_in_the_outbox_even_if_the_web_process_dies_after_answering(db, tmp_path):
    receiver = Receiver()  # never started: only its URL is configured
    receiver.server = type("S", (), {"server_address": ("127.0.0.1", 9)})()  # type: ignore
    contact_id, message_id = seed(db)
    port = free_port()
    env = environment(db, tmp_path, receiver)
    env.pop("REDIS_URL", None)  # hits are written by the request itself
    log = tmp_path / "web.log"
    with log.open("w") as stderr:
        web = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", str(ROOT / "web.py"), "run", "-p", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait_for_port(port, web, log)
        url = Tokens(TEST_SECRET, "http://127.0.0.1").unsubscribe_url(message_id)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{urlsplit(url).path}",
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        web.send_signal(signal.SIGKILL)  # at once: nothing after the answer may be needed
        web.wait(10)
    finally:
        if web.poll() is None:
            web.kill()
            web.wait(10)
    with db.session() as s:
        [row] = s.scalars(select(OutboundEvent)).all()
        assert s.get(Contact, contact_id).subscribed is False
    assert (row.type, row.subscriber, row.status) == ("contact.unsubscribed", "crm", "pending")
    assert row.payload["data"]["contact"]["email"] == "hanako@example.co.jp"
    assert row.payload["data"]["message"]["message_id"] == "<hello.1@example.com>"
