"""The test kit: one fixture per service, each built the one way the tests build it.

- ``db``: a migrated, empty database, SQLite and PostgreSQL in turn (real servers).
  PostgreSQL tests use a throw-away database created on the server at ``TEST_POSTGRES_URL``
  (default: the local server, trust auth). Set ``CAMPAIGNS_SKIP_POSTGRES=1`` to run only on
  SQLite on a machine without PostgreSQL; CI never sets it.
- ``redis_conn`` / ``redis_url``: the tests' one Redis database, from ``TEST_REDIS_URL``,
  flushed around each test (as rq's own tests do). No test names a database number.
- ``smtp_sink``: a real SMTP server (aiosmtpd) on loopback that keeps what it accepts.
- contacts have an ``opt_in`` consent basis unless a test takes it away (the gate on
  marketing mail, :mod:`campaigns.engine.consent`, would stop the others' mail).
- ``clock``: a fake clock at :data:`START`; a module may define its own ``clock`` fixture.
- ``build_engine`` / ``engine``: an :class:`~campaigns.engine.core.Engine` on ``db`` with the
  fake clock, the shipped templates and a file outbox under ``tmp_path`` (or the SMTP sink).
- ``build_app`` / ``app``: the Flask app on ``db`` with the fake clock and no Redis.
- ``cli``: click's CliRunner on ``campaigns`` in a project folder under ``tmp_path``.

Nothing is written into the checkout: databases, outboxes and project folders are under
``tmp_path``, and the CLI runs with the project folder as its working folder; a run that
leaves a new file in the checkout (``outbox/``, a database; ignored ones too) fails and names it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Hypothesis keeps caches (and its example database) in .hypothesis/ of the working folder;
# tests write nothing into the checkout, so they go to the temporary folder.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "campaigns-hypothesis")
)
# Processes that read the environment's settings without SECRET_KEY keep a generated one in
# the instance folder (campaigns.config.instance_secret): the temporary folder's, not the
# checkout's.
os.environ.setdefault(
    "CAMPAIGNS_INSTANCE", os.path.join(tempfile.gettempdir(), f"campaigns-instance-{os.getpid()}")
)
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine as DatabaseEngine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import ColumnDefault

from campaigns import config as settings_module
from campaigns.channels.transports import FileTransport, Transport, transport_from_url
from campaigns.clock import Clock, FakeClock
from campaigns.content.mime import Sender
from campaigns.engine.core import Engine, EngineSettings
from campaigns.journeys.segments import SegmentSet, parse_segments
from campaigns.store.db import make_engine, make_sessionmaker, migrate
from campaigns.store.models import Base, Contact
from tests.kit import EVERYONE, KIT_CONSENT, START, TEST_BASE_URL, TEST_SECRET, make_renderer

ROOT = Path(__file__).resolve().parent.parent

# No example database either: a failure found once should be found again by the seed.
hypothesis_settings.register_profile("campaigns", database=None)
hypothesis_settings.load_profile("campaigns")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
"""The one Redis database the tests may use (and flush); the server is shared. Tests reach it
through the ``redis_conn`` and ``redis_url`` fixtures only."""
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite"] + ([] if os.environ.get("CAMPAIGNS_SKIP_POSTGRES") else ["postgresql"])


@dataclass
class Database:
    """A migrated, empty database and a session factory bound to it."""

    url: str
    engine: DatabaseEngine
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
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc});"
            " start it (see .ci/run) or set CAMPAIGNS_SKIP_POSTGRES=1"
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _contacts_consent_by_default() -> Iterator[None]:
    """The kit's contacts may get marketing mail: a contact written without a consent basis
    (by the ORM, a Core insert or an import in this process) gets ``opt_in``, so the tests of
    sending need not each record one. A test of the consent gate takes it away after the
    insert (``tests.kit.without_consent``) or records a withdrawal."""
    column = Contact.__table__.c.consent_basis
    before = column.default
    column.default = ColumnDefault(KIT_CONSENT)
    yield
    column.default = before


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
def redis_conn() -> Iterator[Any]:
    """A connection to the tests' Redis database (``TEST_REDIS_URL``), empty at the start of
    the test and emptied at its end: only this database, never the server's others."""
    from redis import Redis

    conn = Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:  # pragma: no cover - a machine without the server
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see .ci/run)")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_url(redis_conn: Any) -> str:
    """The URL of ``redis_conn``'s database, for a second connection or another process."""
    return REDIS_URL


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


# ---------------------------------------------------------------------------- the engine


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at :data:`START`: it moves only when the test moves it."""
    return FakeClock(START)


BuildEngine = Callable[..., Engine]


@pytest.fixture
def build_engine(db: Database, clock: FakeClock, tmp_path: Path) -> Iterator[BuildEngine]:
    """Engines as every engine test builds them; each one's transport is closed afterwards.

    ``build_engine(transport=smtp_sink)`` sends to the SMTP sink (any other transport is used
    as it is; the default is a file outbox under ``tmp_path``). ``segments`` is the segments
    file's text or a parsed set (default :data:`EVERYONE`); ``settings`` are
    :class:`EngineSettings` fields; ``secret``, ``base_url``, ``sender`` and ``domain`` go to
    :func:`make_renderer`; ``clock`` replaces the fixture's; anything else (``links``,
    ``tuner``, ``send_times``, ``dispatch``, ``rate_limiter``) goes to the engine as it is.
    """
    made: list[Engine] = []

    def build(
        *,
        transport: Transport | SMTPSink | None = None,
        segments: str | SegmentSet = EVERYONE,
        settings: dict[str, Any] | None = None,
        clock: Clock = clock,
        secret: str = TEST_SECRET,
        base_url: str = TEST_BASE_URL,
        sender: Sender | None = None,
        domain: str = "example.com",
        **engine: Any,
    ) -> Engine:
        if isinstance(transport, SMTPSink):
            transport = transport_from_url(transport.url)
        elif transport is None:
            transport = FileTransport(tmp_path / "outbox")
        parsed = parse_segments(segments) if isinstance(segments, str) else segments
        renderer = make_renderer(secret=secret, base_url=base_url, sender=sender, domain=domain)
        made.append(
            Engine(
                db.sessions,
                clock,
                lambda: parsed,
                renderer,
                transport,
                EngineSettings(**(settings or {})),
                **engine,
            )
        )
        return made[-1]

    yield build
    for built in made:
        built.transport.close()


@pytest.fixture
def engine(build_engine: BuildEngine) -> Engine:
    """An engine with the kit's defaults: every contact in one segment, a file outbox."""
    return build_engine()


# ---------------------------------------------------------------------------- the app


BuildApp = Callable[..., Any]


@pytest.fixture
def build_app(db: Database, clock: FakeClock, tmp_path: Path) -> Iterator[BuildApp]:
    """Flask apps on ``db``, with the fake clock, no Redis (hits and sign-in counts in the
    database) and a file outbox under ``tmp_path`` (the default, ``./outbox``, would be the
    checkout's); each one's services are closed afterwards (transport, connection pool).

    Keyword arguments are :class:`~campaigns.config.Config` fields on top of the kit's
    (``secret_key`` :data:`TEST_SECRET`, ``base_url`` :data:`TEST_BASE_URL`), e.g.
    ``api_keys=(KEY,)``; ``flask`` is more of the app's own config (``{"HITS": log}``) and
    ``clock`` replaces the fixture's.
    """
    from campaigns.web import create_app

    made: list[Any] = []

    def build(*, clock: Clock = clock, flask: dict[str, Any] | None = None, **settings: Any) -> Any:
        settings = {
            "secret_key": TEST_SECRET,
            "base_url": TEST_BASE_URL,
            "redis_url": None,
            "mail_url": f"file://{tmp_path / 'outbox'}",
            **settings,
        }
        cfg = dataclasses.replace(settings_module.load({}), **settings)
        made.append(
            create_app(
                {
                    "DATABASE_URL": db.url,
                    "CAMPAIGNS": cfg,
                    "TESTING": True,
                    "CLOCK": clock,
                    "SECRET_KEY": cfg.secret_key,
                    **(flask or {}),
                }
            )
        )
        return made[-1]

    yield build
    for built in made:
        built.extensions["campaigns.services"].close()  # the transport if opened, the pool


@pytest.fixture
def app(build_app: BuildApp) -> Any:
    """The app with the kit's defaults."""
    return build_app()


# ---------------------------------------------------------------------------- the CLI


@dataclass
class CLI:
    """``campaigns`` run in-process by click's CliRunner, in a project folder of its own.

    The folder holds ``journeys/`` (with ``segments.yaml``: :data:`EVERYONE`) and an empty
    ``templates/``; the database is a SQLite file in it and the outbox a folder in it, unless
    the test sets ``env`` (``cli.env["DATABASE_URL"] = db.url``). The settings of the
    environment the tests run in (``DATABASE_URL``, ``REDIS_URL``, ...) do not leak in.
    """

    folder: Path
    env: dict[str, str | None] = field(default_factory=dict)

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from click.testing import CliRunner

        from campaigns.cli import cli

        return CliRunner().invoke(cli, list(args), env=self.env, input=input)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    """The CLI in a project folder under ``tmp_path``, which is also its working folder: a
    relative path in a command, or a default such as ``./outbox``, lands there."""
    folder = tmp_path / "project"
    (folder / "journeys").mkdir(parents=True)
    (folder / "templates").mkdir()
    (folder / "journeys" / "segments.yaml").write_text(EVERYONE, encoding="utf-8")
    monkeypatch.chdir(folder)
    env: dict[str, str | None] = {
        "CAMPAIGNS_JOURNEYS": str(folder / "journeys"),
        "CAMPAIGNS_TEMPLATES": str(folder / "templates"),
        "DATABASE_URL": f"sqlite:///{folder / 'campaigns.db'}",
        "MAIL_URL": f"file://{folder / 'outbox'}",
        "REDIS_URL": None,
        "SECRET_KEY": None,
        "MAIL_FROM": None,
    }
    return CLI(folder, env)


# ---------------------------------------------------------------------------- the checkout


_CHECKOUT = pytest.StashKey[dict[str, int] | None]()


def _checkout_entries() -> dict[str, int] | None:
    """What ``git status`` lists in the checkout, ignored entries (``outbox/``, a stray
    database) included, each with its modification time: a file added inside a folder that
    is already there changes the folder's time. None outside a git checkout."""
    import subprocess

    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "-z"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    entries: dict[str, int] = {}
    for item in listed.split("\0"):
        if not item.startswith(("?? ", "!! ")):
            continue  # a change to a tracked file is someone's edit, not a test's output
        path = item[3:]
        if not path or path.startswith((".venv", ".mypy_cache", ".ruff_cache")):
            continue
        if "__pycache__" in path or path.endswith((".pyc", ".egg-info/")):
            continue
        try:
            entries[path] = (ROOT / path).stat().st_mtime_ns
        except OSError:
            entries[path] = -1
    return entries


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_CHECKOUT] = _checkout_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests wrote into the checkout (they write under tmp_path)."""
    before = session.config.stash.get(_CHECKOUT, None)
    after = _checkout_entries()
    if before is None or after is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    written = sorted(path for path, stamp in after.items() if before.get(path) != stamp)
    if written:
        print(f"\nthe tests wrote into the checkout ({ROOT}): {', '.join(written)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
