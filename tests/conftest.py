"""Shared fixtures: the database on SQLite and PostgreSQL (real servers), paths, CLI runner.

PostgreSQL tests use a throw-away database created on the server at ``TEST_POSTGRES_URL``
(default: the local server, trust auth). Set ``CAMPAIGNS_SKIP_POSTGRES=1`` to run only on
SQLite on a machine without PostgreSQL; CI never sets it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Hypothesis keeps caches (and its example database) in .hypothesis/ of the working folder;
# tests write nothing into the checkout, so they go to the temporary folder.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "campaigns-hypothesis")
)
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.store.models import Base

ROOT = Path(__file__).resolve().parent.parent

# No example database either: a failure found once should be found again by the seed.
hypothesis_settings.register_profile("campaigns", database=None)
hypothesis_settings.load_profile("campaigns")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
"""The one Redis database the tests may use (and flush); the server is shared."""
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite"] + ([] if os.environ.get("CAMPAIGNS_SKIP_POSTGRES") else ["postgresql"])


@dataclass
class Database:
    """A migrated, empty database and a session factory bound to it."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    def clear(self) -> None:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        with self.engine.begin() as conn:
            if self.backend == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                conn.execute(text("UPDATE journeys SET current_version_id = NULL"))
                for name in tables:
                    conn.execute(text(f"DELETE FROM {name}"))


def _postgres_database() -> Iterator[str]:
    admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"campaigns_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
    except Exception as exc:  # pragma: no cover - a machine without the server
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); start it (see .ci/run) or set CAMPAIGNS_SKIP_POSTGRES=1"
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database URL, once per backend for the whole session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    gen = _postgres_database()
    url = next(gen)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    gen.close()


@pytest.fixture(scope="session")
def _engines(database_url: str) -> Iterator[Database]:
    engine = make_engine(database_url)
    yield Database(database_url, engine, make_sessionmaker(engine))
    engine.dispose()


@pytest.fixture
def db(_engines: Database) -> Iterator[Database]:
    """An empty database, SQLite and PostgreSQL in turn (tests run once per backend)."""
    _engines.clear()
    yield _engines


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh SQLite database file, for tests that need only the embedded default."""
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    engine = make_engine(url)
    migrate(engine)
    yield Database(url, engine, make_sessionmaker(engine))
    engine.dispose()


@pytest.fixture
def redis_conn():
    """A connection to the tests' Redis database (``TEST_REDIS_URL``)."""
    from redis import Redis

    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:  # pragma: no cover - a machine without the server
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see .ci/run)")
    yield conn
    conn.close()


@pytest.fixture
def project_root() -> Path:
    return ROOT


# ---------------------------------------------------------------------------- SMTP sink


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts."""

    def __init__(self) -> None:
        import threading

        self.messages: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self.refuse: dict[str, str] = {}  # recipient -> SMTP reply, e.g. "550 5.1.1 no such user"
        self.data_replies: list[
            str
        ] = []  # replies to the next DATA commands ("451 ...", "drop"), then 250
        self.delay = 0.0  # seconds each DATA takes, as a throttled relay's

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if reply == "drop":  # the connection dies in the middle of DATA
                server.transport.close()
                return "421 closing"
            return reply
        with self._lock:
            self.messages.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                )
            )
        return "250 Message accepted"

    def parsed(self):
        import email
        from email import policy

        return [email.message_from_bytes(raw, policy=policy.default) for _, _, raw in self.messages]

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    from aiosmtpd.controller import Controller

    sink = SMTPSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()
