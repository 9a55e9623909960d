"""A real HTTP receiver of outgoing events on loopback (http.server in a thread) that checks
every signature with :func:`campaigns.engine.hooks.verify`, and the subscribers the tests
configure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from campaigns.config import Subscriber
from campaigns.engine.hooks import verify

SECRET = "whsec-0123456789abcdefXYZ"
OTHER_SECRET = "whsec-other-9876543210zyx"


@dataclass
class Received:
    uid: str
    type: str
    body: dict[str, Any]
    signed: bool


@dataclass
class Receiver:
    """Answers each POST with ``answer(n)`` (n counts POSTs from 0): a status code, or a
    number of seconds to sleep first as ``("sleep", s, status)``."""

    secret: str = SECRET
    answer: Callable[[int], Any] = lambda n: 200
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def subscriber(self, name: str = "crm", **options: Any) -> Subscriber:
        return Subscriber(name, self.url, self.secret, **options)

    def uids(self) -> list[str]:
        with self.lock:
            return [r.uid for r in self.received]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                signed = verify(
                    receiver.secret, self.headers.get("Campaigns-Signature"), raw, window=300
                )
                with receiver.lock:
                    n = len(receiver.received)
                    receiver.received.append(
                        Received(
                            self.headers.get("Campaigns-Event-Id", ""),
                            self.headers.get("Campaigns-Event-Type", ""),
                            json.loads(raw.decode("utf-8")),
                            signed,
                        )
                    )
                answer = receiver.answer(n)
                if isinstance(answer, tuple):
                    _, seconds, answer = answer
                    time.sleep(seconds)
                status = int(answer) if signed else 400
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (a timeout): nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
