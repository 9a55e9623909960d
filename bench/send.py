"""Benchmark: recipients enrolled -> rendered -> delivered to an SMTP sink, with N workers.

In one run:
  1. the raw limit: the same messages, pre-rendered, over one smtplib connection into the
     same sink (what SMTP itself costs here);
  2. the engine: a fresh database with the recipients and a one-email journey; one tick
     enrols them and enqueues one advance job per worker on Redis; ``--workers`` worker
     processes (``python worker.py --burst --no-cron``, the production path) claim send
     batches under their leases and deliver them.
Prints messages/s for both, their ratio (target >= 0.5) and the workers' peak RSS (target
< 250 MB; each worker's VmHWM from /proc, sampled while it runs: ``ru_maxrss`` of children
would report this script's own size, which a child has at fork, before its exec). The sink
runs in its own process (aiosmtpd) and only counts.

Usage: python bench/send.py [--recipients 100000] [--workers 2] [--database-url URL]
       (default database: a throw-away PostgreSQL database on the local server)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JOURNEY = textwrap.dedent(
    """\
    journey: bench
    name: Bench
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: hello
        email: {template: onboarding_tips, subject: {en: "Tips for {{ contact.name }}",
            ja: "{{ contact.name }}様へ活用のヒント"}}
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_sink(port: int, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    import asyncio

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += len(envelope.rcpt_tos)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.new_event_loop().run_until_complete(asyncio.sleep(10**9))


def watch_rss(workers: list[subprocess.Popen[bytes]]) -> dict[int, int]:
    """Sample each worker's peak RSS (VmHWM, kB) from /proc while it runs, so the figure is
    the workers' own and not that of any other child of this script (the SMTP sink)."""
    import threading

    peaks: dict[int, int] = {}

    def sample() -> None:
        while any(w.poll() is None for w in workers):
            for w in workers:
                try:
                    for line in Path(f"/proc/{w.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            peaks[w.pid] = max(peaks.get(w.pid, 0), int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    return peaks


def wait_for(counter: multiprocessing.Value, target: int, timeout: float) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    while counter.value < target and time.perf_counter() - started < timeout:
        time.sleep(0.01)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="a Redis database it may empty (default: $TEST_REDIS_URL, as the tests')",
    )
    args = parser.parse_args()
    n = args.recipients

    from redis import Redis
    from sqlalchemy import insert, text

    from campaigns.channels.transports import transport_from_url
    from campaigns.clock import FakeClock
    from campaigns.content.mime import Sender
    from campaigns.content.render import Renderer
    from campaigns.content.templates import TemplateStore
    from campaigns.engine.core import Engine, EngineSettings
    from campaigns.engine.deploy import deploy
    from campaigns.journeys.parse import parse_journey
    from campaigns.journeys.segments import parse_segments
    from campaigns.store.db import make_engine, make_sessionmaker, migrate
    from campaigns.store.models import Account, Contact
    from campaigns.tracking.tokens import Tokens

    port = free_port()
    counter = multiprocessing.Value("q", 0)
    sink = multiprocessing.Process(target=run_sink, args=(port, counter), daemon=True)
    sink.start()
    time.sleep(1.0)
    mail_url = f"smtp://127.0.0.1:{port}?starttls=off"

    # 1. The raw limit: pre-rendered messages over one connection.
    store = TemplateStore(ROOT / "templates")
    renderer = Renderer(
        store, Tokens("bench-secret-0123456789", "https://cs.example.com"), Sender("cs@example.com")
    )
    sample = min(n, 20_000)
    prepared = [
        renderer.render(
            message=i,
            message_id=None,
            to=f"r{i}@example.com",
            to_name=f"R {i}",
            template="onboarding_tips",
            locale="en",
            subject="Tips",
            preheader=None,
            context={"contact": {"name": f"R {i}"}, "links": {}},
            now=datetime.now(UTC),
        )
        for i in range(sample)
    ]
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        started = time.perf_counter()
        for mail in prepared:
            smtp.sendmail(mail.mail_from, [mail.to], mail.raw)
        raw_seconds = time.perf_counter() - started
    raw_rate = sample / raw_seconds
    print(
        f"raw limit: {sample:,} pre-rendered messages over one smtplib connection in "
        f"{raw_seconds:.1f} s = {raw_rate:,.0f} msg/s"
    )
    del prepared
    counter.value = 0

    # 2. The engine, with worker processes.
    admin = None
    database_url = args.database_url
    if database_url is None:
        name = f"campaigns_bench_{uuid.uuid4().hex[:6]}"
        admin = make_engine(
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database = make_engine(database_url)
    migrate(database)
    sessions = make_sessionmaker(database)
    started = time.perf_counter()
    with sessions() as s, s.begin():
        s.add(Account(external_id="A", name="A", arr=Decimal(1)))
        s.flush()
        account_id = s.scalar(text("SELECT id FROM accounts"))
        for start in range(0, n, 10_000):
            s.execute(
                insert(Contact),
                [
                    {
                        "account_id": account_id,
                        "email": f"r{i}@example.com",
                        "name": f"R {i}",
                        "locale": "ja" if i % 2 else "en",
                        "time_zone": "UTC",
                        "tags": [],
                        "attributes": {},
                    }
                    for i in range(start, min(n, start + 10_000))
                ],
            )
        deploy(s, parse_journey(JOURNEY, "bench.yaml"), JOURNEY, "bench.yaml")
    print(
        f"seeded {n:,} recipients in {time.perf_counter() - started:.1f} s "
        f"({database.dialect.name})"
    )

    redis = Redis.from_url(args.redis_url)
    redis.flushdb()
    from rq import Queue

    from campaigns.worker import jobs

    queue = Queue(jobs.ADVANCE_QUEUE, connection=redis)
    segments = parse_segments("tiers:\n  everyone: {when: true}\n")

    def dispatch(wanted: int) -> int:
        """As the worker's dispatcher would with this many workers: one advance job each
        (each claims batches until nothing is due, handing over to a fresh job every minute)."""
        count = min(wanted, args.workers)
        for _ in range(count):
            queue.enqueue(jobs.advance, job_timeout=600)
        return count

    engine = Engine(
        sessions,
        FakeClock(datetime.now(UTC)),
        lambda: segments,
        renderer,
        transport_from_url(mail_url),
        EngineSettings(),
        dispatch,
    )
    started = time.perf_counter()
    tick = engine.tick()
    tick_seconds = time.perf_counter() - started
    print(
        f"tick: enrolled {sum(tick.entered.values()):,}, counted {tick.due:,} due and enqueued "
        f"{tick.batches} advance jobs in {tick_seconds:.1f} s"
    )

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "MAIL_URL": mail_url,
        "SECRET_KEY": "bench-secret-0123456789",
        "FREQUENCY_CAP": "0/7d",
        "CAMPAIGNS_TEMPLATES": str(ROOT / "templates"),
        "CAMPAIGNS_JOURNEYS": str(ROOT / "journeys"),
    }
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        logs = [open(Path(folder) / f"worker{i}.log", "w+b") for i in range(args.workers)]  # noqa: SIM115 - closed below
        workers = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py"), "--burst", "--no-cron"],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            for log in logs
        ]
        peaks = watch_rss(workers)
        for worker in workers:
            worker.wait()
        elapsed = wait_for(counter, n, 60) + time.perf_counter() - started
        failures = []
        for worker, log in zip(workers, logs, strict=True):
            log.seek(0)
            if worker.returncode:
                failures.append(f"worker exited {worker.returncode}: {log.read().decode()[-500:]}")
            log.close()
    delivered = counter.value
    rate = delivered / elapsed
    peak = max(peaks.values(), default=0) / 1024
    print(
        f"engine: {delivered:,} of {n:,} delivered by {args.workers} workers in {elapsed:.1f} s "
        f"= {rate:,.0f} msg/s"
    )
    print(f"ratio engine / raw limit: {rate / raw_rate:.2f} (target >= 0.5)")
    # Claims happen inside the jobs now (they were in the tick before): compare end to end.
    print(
        f"end to end (tick + delivery): {tick_seconds + elapsed:.1f} s = "
        f"{n / (tick_seconds + elapsed):,.0f} msg/s"
    )
    print(f"peak worker RSS: {peak:.0f} MB (target < 250 MB)")
    for failure in failures:
        print(failure)
    database.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database.url.database}" WITH (FORCE)'))
    sink.terminate()


if __name__ == "__main__":
    main()
