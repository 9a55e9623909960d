"""Benchmark: outgoing events, emitted and delivered.

In one run, on a throw-away SQLite file (or ``--database-url``):
  1. the cost of the emit calls at an event site when no subscriber is configured (what the
     send, enrol and tracking paths pay: ``wants`` and an ``emit_many`` that writes nothing);
  2. emitting ``--events`` events in bulk for 2 subscribers (two outbox rows each), in
     batches of 1,000 per transaction: events/s and rows/s;
  3. delivering them, signed, to a receiver on loopback (``http.server`` in a thread that
     answers 200 at once): POSTs/s through the real deliverer (claims, leases, one result
     written per POST, the two subscribers side by side).

Usage: python bench/hooks.py [--events 5000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.clock import SystemClock  # noqa: E402
from campaigns.config import Subscriber  # noqa: E402
from campaigns.engine.hooks import Deliverer, Settings  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.enums import OutboundType  # noqa: E402
from campaigns.store.models import Account, Contact  # noqa: E402
from campaigns.store.outbox import Item, Outbox, attach, emit_many, wants  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"


class _Quick(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        database = make_engine(url)
        migrate(database)
        plain = make_sessionmaker(database)
        with plain() as s, s.begin():
            account = Account(external_id="BENCH", name="株式会社ベンチ")
            s.add(account)
            s.flush()
            contact = Contact(account_id=account.id, email="taro@example.co.jp", name="山田 太郎")
            s.add(contact)
            s.flush()
            contact_id = contact.id
        now = datetime.now(UTC)

        # 1. no subscribers: what an event site costs
        calls = 1_000_000
        none = attach(plain, Outbox(()))
        with none() as s:
            item = [Item(OutboundType.MESSAGE_SENT, now, contact_id=contact_id)]
            started = time.perf_counter()
            for _ in range(calls):
                if wants(s, OutboundType.MESSAGE_SENT):
                    raise AssertionError("no subscriber wants anything")
            check = (time.perf_counter() - started) / calls
            started = time.perf_counter()
            for _ in range(calls):
                emit_many(s, item)
            noop = (time.perf_counter() - started) / calls
        print(
            f"no subscribers: wants() {check * 1e9:.0f} ns,"
            f" emit_many() {noop * 1e9:.0f} ns per call"
        )

        # 2. emitting for two subscribers
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.server_address[:2]
        subscribers = [
            Subscriber("crm", f"http://{host}:{port}/crm", SECRET),
            Subscriber("bi", f"http://{host}:{port}/bi", SECRET),
        ]
        sessions = attach(plain, Outbox(subscribers))
        started = time.perf_counter()
        for start in range(0, args.events, 1000):
            with sessions() as s, s.begin():
                emit_many(
                    s,
                    [
                        Item(OutboundType.MESSAGE_OPENED, now, contact_id=contact_id, data={"n": i})
                        for i in range(start, min(args.events, start + 1000))
                    ],
                )
        took = time.perf_counter() - started
        print(
            f"emit, 2 subscribers: {args.events} events ({2 * args.events} rows) in {took:.2f} s:"
            f" {args.events / took:,.0f} events/s, {took / args.events * 1e6:.0f} us per event"
        )

        # 3. delivering them
        deliverer = Deliverer(sessions, subscribers, SystemClock(), Settings(timeout=5))
        started = time.perf_counter()
        result = deliverer.run()
        took = time.perf_counter() - started
        print(
            f"deliver to a loopback receiver: {result.delivered} POSTs in {took:.2f} s:"
            f" {result.delivered / took:,.0f} POSTs/s"
            f" ({result.retried} retried, {result.dead} dead)"
        )
        server.shutdown()
        database.dispose()


if __name__ == "__main__":
    main()
