"""Private servers and worker processes for the fault tests and ``bench/faults.py``.

A fault test restarts, kills and slows things down, so it never touches the shared servers:
it starts its own ``redis-server`` and, for a database restart, its own PostgreSQL cluster,
each on a free port of its own and in a temporary folder outside the working tree. Workers
are real ``python worker.py`` processes with the settings a test gives them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

JOURNEY = textwrap.dedent(
    """\
    journey: blast
    name: One email
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email: {template: onboarding_tips, subject: {en: "Tips for {{ contact.name }}",
            ja: "{{ contact.name }}様へ活用のヒント"}}
    """
)
SEGMENTS = "tiers:\n  everyone: {when: true}\n"
SECRET = "fault-secret-0123456789-abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``condition`` until true; seconds it took. Fails with ``what`` on timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


# ---------------------------------------------------------------------------- Redis


class PrivateRedis:
    """A ``redis-server`` of the test's own, which it may stop, restart and flush."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="campaigns-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, 10, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            return bool(Redis.from_url(self.url, socket_timeout=0.5).ping())
        except RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down: float = 0.0) -> None:
        """Kill the server (it keeps nothing), stay down ``down`` seconds, start it empty."""
        self.stop()
        time.sleep(down)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found (apt-get install postgresql)")
    return str(found[-1])


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, trust auth), run
    as the ``postgres`` user, which the test may stop and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="campaigns-pg-"))
        self.data = self.folder / "data"
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self._run(
            [
                _pg_bin("initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )

    def _run(self, command: Sequence[str]) -> None:
        if self._user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # fsync=off: the machine does not crash in a test, only the server does, and the
        # kernel keeps what was written. (synchronous_commit stays on: a commit acknowledged
        # must survive the server's crash, which is what the test is about.)
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.folder / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def restart(self, down: float = 0.0) -> None:
        """Stop at once (as a crash would: every connection drops), then start again."""
        self.stop()
        time.sleep(down)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------- the relay


class Relay:
    """What an SMTP relay received, by recipient and Message-ID (fed by the test's sink).
    Each message is parsed once, however often it is asked."""

    def __init__(self, messages: list[tuple[str, list[str], bytes]]) -> None:
        self.messages = messages
        self._seen: dict[str, list[str]] = defaultdict(list)
        self._parsed = 0

    def ids_by_recipient(self) -> dict[str, list[str]]:
        for _, recipients, raw in self.messages[self._parsed :]:
            message_id = str(message_from_bytes(raw, policy=policy.default)["Message-ID"])
            for to in recipients:
                self._seen[to].append(message_id)
            self._parsed += 1
        return self._seen

    def copies(self) -> Counter[str]:
        return Counter({to: len(ids) for to, ids in self.ids_by_recipient().items()})


# ---------------------------------------------------------------------------- a project


def seed(sessions, n: int, *, prefix: str = "r") -> list[str]:
    """``n`` contacts at one account (every other one Japanese) and the one-email journey,
    deployed; returns their addresses."""
    from sqlalchemy import insert, select

    from campaigns.engine.deploy import deploy
    from campaigns.journeys.parse import parse_journey
    from campaigns.store.models import Account, Contact

    addresses = [f"{prefix}{i}@example.com" for i in range(n)]
    with sessions() as s, s.begin():
        account = s.scalar(select(Account).where(Account.external_id == "A"))
        if account is None:
            account = Account(external_id="A", name="株式会社エー", arr=Decimal(1))
            s.add(account)
            s.flush()
        for start in range(0, n, 5_000):
            s.execute(
                insert(Contact),
                [
                    {
                        "account_id": account.id,
                        "email": address,
                        "name": f"山田 {i}" if i % 2 else f"Pat {i}",
                        "locale": "ja" if i % 2 else "en",
                        "time_zone": "UTC",
                        "tags": [],
                        "attributes": {},
                    }
                    for i, address in enumerate(addresses[start : start + 5_000], start)
                ],
            )
        deploy(s, parse_journey(JOURNEY, "blast.yaml"), JOURNEY, "blast.yaml")
    return addresses


@dataclass
class Workers:
    """``python worker.py`` processes against a database, a Redis and a relay."""

    database_url: str
    redis_url: str
    mail_url: str
    settings: dict[str, str] = field(default_factory=dict)
    cron: bool = True
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="campaigns-workers-"))
    )
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        journeys = self.folder / "journeys"
        journeys.mkdir(exist_ok=True)
        (journeys / "segments.yaml").write_text(SEGMENTS)

    def env(self) -> dict[str, str]:
        return {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DATABASE_URL", "REDIS_URL", "MAIL_URL"))
            },
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "MAIL_URL": self.mail_url,
            "SECRET_KEY": SECRET,
            "FREQUENCY_CAP": "0/7d",
            "CAMPAIGNS_JOURNEYS": str(self.folder / "journeys"),
            "CAMPAIGNS_TEMPLATES": str(ROOT / "templates"),
            "PYTHONPATH": str(ROOT),
            **self.settings,
        }

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            log = open(self.folder / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115 - the process owns it
            flags = ["--no-flusher"] + ([] if self.cron else ["--no-cron"])
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py"), *flags],
                cwd=self.folder,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            self.processes.append(process)
            started.append(process)
        return started

    def owner(self, process: subprocess.Popen[bytes]) -> str:
        """The name its claims carry (``claimed_by``)."""
        return f"{socket.gethostname()}:{process.pid}"

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its children (cron, RQ's scheduler): a machine gone at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def log(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.folder.glob("worker-*.log"))
        )

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill(process)
        shutil.rmtree(self.folder, ignore_errors=True)


def claimed_by(sessions, owner: str) -> int:
    """How many enrollments still carry ``owner``'s claim."""
    from sqlalchemy import func, select

    from campaigns.store.models import Enrollment

    with sessions() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(Enrollment).where(Enrollment.claimed_by == owner)
            )
            or 0
        )


def statuses(sessions) -> Counter[str]:
    from sqlalchemy import func, select

    from campaigns.store.models import Message

    with sessions() as s:
        return Counter(
            {
                str(status): int(n)
                for status, n in s.execute(
                    select(Message.status, func.count()).group_by(Message.status)
                )
            }
        )
