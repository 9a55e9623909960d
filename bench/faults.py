"""Benchmark: the delivery guarantee under faults, during a 10k send.

Two runs, each on a fresh PostgreSQL database (on the local server), a Redis server of its
own (started here on a free port) and an SMTP sink in this process that keeps every message:

  1. **kills**: two ``python worker.py`` processes send to 10,000 recipients; ten times, a
     worker in the middle of a send is SIGKILLed (with its children) and a new one started.
     For each kill: the messages it left in doubt ("sending"), how many of those went twice,
     and how long until another worker had taken over all of its claims.
  2. **slow relay**: four workers; the relay takes 40 ms per message, so a send batch of 100
     takes 4 s against a 3 s lease, and every 500th message takes 4 s on its own (past the
     lease); jobs may run 20 s. Nothing crashes, so nothing may go twice.

Prints lost messages, extra copies with their Message-IDs, recovery seconds, and PASS/FAIL
against the targets: 0 lost; 0 extra copies in the slow-relay run; at most the in-flight
batch per kill; recovery under 60 s.

Usage: python bench/faults.py [--recipients 10000] [--kills 10] [--run kills|slow|both]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from campaigns import defaults  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.models import Enrollment, Message, MessageStatus  # noqa: E402
from tests.cluster import PrivateRedis, Relay, Workers, claimed_by, seed, statuses, wait_until  # noqa: E402
from tests.conftest import SMTPSink  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


class Sink(SMTPSink):
    """The test suite's SMTP sink, with a slower message now and then."""

    def __init__(self, delay: float = 0.0, every: int = 0, pause: float = 0.0) -> None:
        super().__init__()
        self.delay, self.every, self.pause, self.seen = delay, every, pause, 0

    async def handle_DATA(self, server, session, envelope):
        self.seen += 1
        if self.every and self.seen % self.every == 0:
            await asyncio.sleep(self.pause)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Kill:
    at: float
    in_doubt: set[str]
    recovery: float | None = None


def database() -> tuple[str, object]:
    name = f"campaigns_faults_{uuid.uuid4().hex[:6]}"
    admin = make_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return f"{POSTGRES}/{name}", admin


def drop(admin, url: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def in_doubt(sessions, owner: str) -> set[str]:
    """Recipients of the messages marked "sending" on the rows ``owner`` holds."""
    with sessions() as s:
        query = select(Message.to_address).join(Enrollment, Enrollment.id == Message.enrollment_id)
        return set(
            s.scalars(
                query.where(Enrollment.claimed_by == owner, Message.status == MessageStatus.SENDING)
            )
        )


def report_copies(relay: Relay, addresses: list[str]) -> tuple[int, dict[str, list[str]]]:
    ids = relay.ids_by_recipient()
    lost = sum(1 for address in addresses if address not in ids)
    extra = {address: found for address, found in ids.items() if len(found) > 1}
    return lost, extra


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def run_kills(n: int, kills: int) -> bool:
    lease, batch = defaults.LEASE_SECONDS, defaults.SEND_BATCH
    url, admin = database()
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    addresses = seed(sessions, n)
    sink = Sink(delay=0.004)
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    relay = Relay(sink.messages)
    redis = PrivateRedis()
    redis.start()
    workers = Workers(url, redis.url, sink.url)
    print(
        f"run 1: {n:,} recipients, 2 workers, a worker SIGKILLed {kills} times "
        f"(LEASE_SECONDS={lease}, SEND_BATCH={batch}, relay 4 ms a message), postgresql"
    )
    started = time.monotonic()
    log: list[Kill] = []
    try:
        workers.start(2)
        for _ in range(kills):
            wait_until(lambda: len(sink.messages) >= 50, 300, "the first sends", interval=0.1)
            time.sleep(3.0)
            owners = {workers.owner(p): p for p in workers.alive()}

            def busy(owners: dict = owners) -> str | None:
                return next((o for o in owners if in_doubt(sessions, o)), None)

            wait_until(
                lambda: busy() is not None, 120, "a worker in the middle of a send", interval=0.02
            )
            victim = busy()
            assert victim is not None
            workers.kill(owners[victim])
            kill = Kill(time.monotonic() - started, in_doubt(sessions, victim))
            log.append(kill)

            def watch(kill: Kill = kill, owner: str = victim) -> None:
                began = time.monotonic()
                wait_until(
                    lambda: claimed_by(sessions, owner) == 0, 300, "the takeover", interval=0.1
                )
                kill.recovery = time.monotonic() - began

            threading.Thread(target=watch, daemon=True).start()
            workers.start(1)  # as a supervisor would
        wait_until(
            lambda: set(addresses) <= set(relay.ids_by_recipient()),
            900,
            "every recipient",
            interval=0.5,
        )
        wait_until(
            lambda: all(k.recovery is not None for k in log), 300, "every takeover", interval=0.5
        )
        time.sleep(2.0)
        elapsed = time.monotonic() - started
    finally:
        workers.close()
        controller.stop()
        redis.close()
    lost, extra = report_copies(relay, addresses)
    print(
        f"delivered to {n - lost:,} of {n:,} in {elapsed:.0f} s; message states: "
        f"{dict(statuses(sessions))}"
    )
    print("kill   at s  in doubt  resent  taken over after")
    worst = 0
    for number, kill in enumerate(log, 1):
        resent = len(kill.in_doubt & set(extra))
        worst = max(worst, resent)
        print(
            f"{number:>4} {kill.at:>6.1f} {len(kill.in_doubt):>9} {resent:>7} "
            f"{kill.recovery or 0:>12.1f} s"
        )
    unexplained = set(extra) - set().union(*(k.in_doubt for k in log)) if log else set(extra)
    recoveries = [k.recovery or 0.0 for k in log]
    print(f"lost: {lost} (target 0) {verdict(lost == 0)}")
    print(
        f"extra copies: {len(extra)}, each of a message in doubt at a kill: "
        f"{verdict(not unexplained)}; most in one kill {worst} (target <= SEND_BATCH {batch}) "
        f"{verdict(worst <= batch)}"
    )
    for address, found in sorted(extra.items())[:10]:
        print(f"  {address} x{len(found)}, Message-IDs {sorted(set(found))}")
    if len(extra) > 10:
        print(f"  ... and {len(extra) - 10} more")
    print(
        f"recovery: max {max(recoveries):.1f} s, mean {sum(recoveries) / len(recoveries):.1f} s "
        f"(target < 60 s) {verdict(max(recoveries) < 60)}"
    )
    same_ids = all(len(set(found)) == 1 for found in extra.values())
    print(f"every resend under its first Message-ID: {verdict(same_ids)}")
    engine.dispose()
    drop(admin, url)
    return lost == 0 and not unexplained and worst <= batch and max(recoveries) < 60 and same_ids


def run_slow(n: int) -> bool:
    lease, batch, job_timeout = 3, 100, 20
    url, admin = database()
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    addresses = seed(sessions, n)
    sink = Sink(delay=0.04, every=500, pause=4.0)
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    relay = Relay(sink.messages)
    redis = PrivateRedis()
    redis.start()
    workers = Workers(
        url,
        redis.url,
        sink.url,
        {"LEASE_SECONDS": str(lease), "JOB_TIMEOUT": str(job_timeout), "SEND_BATCH": str(batch)},
    )
    print(
        f"run 2: {n:,} recipients, 4 workers, a relay slower than the lease: 40 ms a message (a "
        f"batch of {batch} takes 4 s), every 500th 4 s; LEASE_SECONDS={lease}, "
        f"JOB_TIMEOUT={job_timeout}, postgresql"
    )
    started = time.monotonic()
    try:
        workers.start(4)
        wait_until(
            lambda: set(addresses) <= set(relay.ids_by_recipient()),
            1800,
            "every recipient",
            interval=0.5,
        )
        time.sleep(3.0)
        elapsed = time.monotonic() - started
        log = workers.log()
    finally:
        workers.close()
        controller.stop()
        redis.close()
    lost, extra = report_copies(relay, addresses)
    with sessions() as s:
        failed = (
            s.scalar(
                select(func.count()).select_from(Enrollment).where(Enrollment.state == "failed")
            )
            or 0
        )
    timeouts = log.count("exceeded maximum timeout")
    print(
        f"delivered to {n - lost:,} of {n:,} in {elapsed:.0f} s = {n / elapsed:,.0f} msg/s; "
        f"message states: {dict(statuses(sessions))}; failed enrollments: {failed}"
    )
    print(f"lost: {lost} (target 0) {verdict(lost == 0)}")
    print(f"extra copies: {len(extra)} (target 0) {verdict(not extra)}")
    for address, found in sorted(extra.items())[:10]:
        print(f"  {address} x{len(found)}, Message-IDs {sorted(set(found))}")
    print(f"jobs stopped by RQ's timeout: {timeouts} (target 0) {verdict(timeouts == 0)}")
    engine.dispose()
    drop(admin, url)
    return lost == 0 and not extra and timeouts == 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--run", choices=["kills", "slow", "both"], default="both")
    args = parser.parse_args()
    ok = True
    if args.run in ("kills", "both"):
        ok = run_kills(args.recipients, args.kills) and ok
    if args.run in ("slow", "both"):
        ok = run_slow(args.recipients) and ok
    print("all targets met" if ok else "some targets missed")


if __name__ == "__main__":
    main()
