"""Benchmark: enrol 1M contacts into a contact journey, and their 250k accounts into an
account journey, set-based, on SQLite and PostgreSQL.

Generates accounts and contacts (bench/segments.py's generator) into a fresh database: a
SQLite file (WAL) and a private PostgreSQL database on the shared server (dropped at the end;
`--postgres-url` names the server, `--backends sqlite` skips it). Deploys two journeys over
the shipped journeys/segments.yaml and times one call of the engine's enrolment
(:func:`campaigns.engine.enrol.enrol`, one ``INSERT ... SELECT``) for each, with its commit:
  1. an account journey (``enrol: account``, segment trigger, all three tiers: every account);
  2. a contact journey (segment trigger, all three tiers: every contact);
then a second enrolment of each, which must enter nobody (the unique keys hold).

Usage: python bench/enrol.py [--contacts 1000000] [--per-account 4] [--backends sqlite,postgresql]
Target (issue 12): 250k accounts < 10 s; 1M contacts < 20 s; on both databases.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pgkit import postgres_database  # noqa: E402
from segments import generate  # noqa: E402

from campaigns.engine.deploy import deploy  # noqa: E402
from campaigns.engine.enrol import enrol  # noqa: E402
from campaigns.journeys import segments as seg  # noqa: E402
from campaigns.journeys.parse import parse_journey  # noqa: E402
from campaigns.store.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from campaigns.store.models import Enrollment  # noqa: E402
from campaigns.store.models import Journey as JourneyRow  # noqa: E402

ACCOUNT_JOURNEY = """\
journey: bench_accounts
name: Bench account journey
enrol: account
segments: [high_touch, low_touch, tech_touch]
entry: {trigger: segment}
steps:
  - id: plan
    task: {title: "Plan {{ account.name }}"}
"""

CONTACT_JOURNEY = """\
journey: bench_contacts
name: Bench contact journey
segments: [high_touch, low_touch, tech_touch]
entry: {trigger: segment}
steps:
  - id: hello
    email: {template: onboarding_welcome, subject: "Hello"}
"""

TARGETS = {"bench_accounts": 10.0, "bench_contacts": 20.0}


def run(url: str, backend: str, args: argparse.Namespace, segset: seg.SegmentSet) -> None:
    engine = make_engine(url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    today = date(2026, 11, 23)
    started = time.perf_counter()
    generate(sessions, args.contacts, args.per_account, today, random.Random(7))
    if backend == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    accounts = args.contacts // args.per_account
    print(
        f"[{backend}] generated {args.contacts:,} contacts, {accounts:,} accounts "
        f"in {time.perf_counter() - started:.1f} s"
    )
    now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    for source in (ACCOUNT_JOURNEY, CONTACT_JOURNEY):
        journey = parse_journey(source, "bench.yaml", segments=segset)
        with sessions() as s, s.begin():
            deploy(s, journey, source, "bench.yaml")
            row = s.scalars(select(JourneyRow).where(JourneyRow.key == journey.key)).one()
            journey_id, version_id = row.id, row.current_version_id
        for attempt in ("first", "again"):
            started = time.perf_counter()
            with sessions() as s, s.begin():
                result = enrol(s, journey, journey_id, version_id, segset, now)
            seconds = time.perf_counter() - started
            unit = "accounts" if journey.per_account else "contacts"
            line = f"[{backend}] {journey.key} ({unit}) {attempt}: {result.entered:,} entered"
            line += f" in {seconds:.2f} s"
            if attempt == "first":
                rate = result.entered / seconds if seconds else 0.0
                target = TARGETS[journey.key]
                verdict = "OK" if seconds < target else "MISSED"
                line += f" ({rate:,.0f}/s; target < {target:.0f} s: {verdict})"
            print(line)
        with sessions() as s:
            stored = s.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.journey_id == journey_id)
            )
        print(f"[{backend}] {journey.key}: {stored:,} enrollments stored")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--per-account", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--segments", type=Path, default=ROOT / "journeys" / "segments.yaml")
    args = parser.parse_args()
    segset = seg.load_segments(args.segments)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                run(f"sqlite:///{folder}/bench.db", backend, args, segset)
        elif backend == "postgresql":
            url, drop = postgres_database(args.postgres_url, "enrol")
            try:
                run(url, backend, args, segset)
            finally:
                drop()  # type: ignore[operator]
        else:
            parser.error(f"unknown backend {backend!r}: sqlite or postgresql")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
